#!/usr/bin/env bash
# Quick start: build rein, fetch the embedded model, (re)create the example
# databases, and run the order-status agent on rein's local model
# (SmolLM2-135M-Instruct, in process: no API key, no network).
#   scripts/quickstart.sh
#   scripts/quickstart.sh "Where is order 1043?"                 # another question
#   REIN_MODEL=local:./models/bigger.gguf scripts/quickstart.sh  # any llama-family GGUF
#   REIN_MODEL=openai:gpt-4o-mini OPENAI_API_KEY=sk-... scripts/quickstart.sh
#   REIN_MODEL=ollama:llama3.2 scripts/quickstart.sh              # any OpenAI-compatible server
# The larger support-triage example needs a capable model:
#   REIN_EXAMPLE=support-triage REIN_MODEL=openai:gpt-4o-mini scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
example="${REIN_EXAMPLE:-order-status}"
scripts/setup-build.sh
cargo build --release --locked -q -p rein-cli
scripts/fetch-model.sh
python3 examples/setup.py
case "$example" in
  order-status) input="${1:-Where is order 1042?}" ;;
  support-triage) input="${1:-@examples/support-triage/inbound.txt}" ;;
  *) echo "unknown REIN_EXAMPLE $example (order-status or support-triage)" >&2; exit 2 ;;
esac
args=(run "examples/$example/agent.toml" --input "$input")
if [ -n "${REIN_MODEL:-}" ]; then args+=(--model "$REIN_MODEL"); fi
exec target/release/rein "${args[@]}"
