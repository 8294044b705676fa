#!/usr/bin/env bash
# Quick start: build rein, (re)create the example databases, and run the
# support-triage agent on an inbound support email.
#   OPENAI_API_KEY=sk-... scripts/quickstart.sh
#   REIN_MODEL=ollama:llama3.2 scripts/quickstart.sh        # any OpenAI-compatible server
#   REIN_MODEL=openai-compatible:my-model REIN_BASE_URL=http://127.0.0.1:8000/v1 scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q -p rein-cli
python3 examples/setup.py
args=(run examples/support-triage/agent.toml --input @examples/support-triage/inbound.txt)
if [ -n "${REIN_MODEL:-}" ]; then args+=(--model "$REIN_MODEL"); fi
exec target/release/rein "${args[@]}"
