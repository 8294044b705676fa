#!/usr/bin/env bash
# Runs rein's whole test suite. This is the README's test command, and
# .ci/run calls it too. It needs only cargo: every test starts its own local
# servers (OpenAI-compatible mock, HTTP tool endpoints) on 127.0.0.1 and
# creates its own SQLite files.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --workspace --locked "$@"
