#!/usr/bin/env bash
# The embedded model against llama.cpp itself, in one sitting, on the same
# GGUF, prompt and settings (BENCHMARKS.md, "Local model"):
#   scripts/bench-local.sh [MODEL.gguf]
# Builds the rein-local bench in release, installs llama-cpp-python (pinned;
# pip compiles llama.cpp from source, ~5-15 min the first time) into
# bench/.venv-llama, and prints one JSON line per engine and thread count.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-build.sh
scripts/fetch-model.sh
model="${1:-${REIN_MODEL_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/rein/models}/SmolLM2-135M-Instruct.Q4_1.gguf}"
venv=bench/.venv-llama
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import llama_cpp" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "llama-cpp-python==0.3.36"
fi
cargo build --release --locked -q -p rein-local --example bench
cores="$(nproc)"
for threads in 1 "$cores"; do
  args=(--threads "$threads" --prompt-tokens 256 --gen-tokens 128 --reps 3)
  target/release/examples/bench "$model" "${args[@]}"
  "$venv/bin/python" bench/llama_cpp_bench.py "$model" "${args[@]}"
done
# The same generation under the tool-call grammar (llguidance's mask per token).
target/release/examples/bench "$model" --threads "$cores" --prompt-tokens 256 --gen-tokens 128 --reps 3 --tools
