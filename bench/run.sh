#!/usr/bin/env bash
# Builds rein's benchmark client and the shared peers, then measures them in
# one sitting. Usage: bench/run.sh [run_bench.py arguments]
# Default: raw floor, rein (SQLite journal; also committing every step, and
# with an in-memory journal) and rig; seq, conc and mem; 3 repetitions.
# Add the Python frameworks with --only raw,rein,rig,openai-agents,langgraph
# (the venv is created here on first use).
set -euo pipefail
cd "$(dirname "$0")"
# The table is built from every row of results/raw.jsonl, so a sitting starts
# with `--new-sitting`, which moves the previous sitting's rows to
# results/history/ (the runner would otherwise mix code versions and machine
# states in one median).
if [[ "${1:-}" == "--new-sitting" ]]; then
  shift
  if [ -s results/raw.jsonl ]; then
    mkdir -p results/history
    mv results/raw.jsonl "results/history/raw-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
  fi
fi
SHARED=../../shared/bench
[ -d "$SHARED" ] || { echo "bench: needs ../shared/bench beside the repository" >&2; exit 2; }
# The runner times each client with GNU time (Debian package `time`).
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time; }
export CARGO_TARGET_DIR="$PWD/target-peers"
(cd "$SHARED/mockllm" && cargo build --release -q)
(cd "$SHARED/rawfloor" && cargo build --release -q)
if [[ "$*" == *rig* || " $* " != *" --only "* ]]; then (cd "$SHARED/rig-bench" && cargo build --release -q); fi
unset CARGO_TARGET_DIR
(cd rein-bench && cargo build --release -q)
if [[ "$*" == *rein-postgres* ]]; then
  # A fresh database per sitting on the local server (trust auth).
  psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE IF EXISTS rein_bench" -c "CREATE DATABASE rein_bench"
fi
if [[ "$*" == *openai-agents* || "$*" == *langgraph* ]] && [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q -r "$SHARED/requirements.txt"
fi
# Defaults apply unless the caller names them.
[[ " $* " == *" --only "* ]] || set -- --only raw,rein,rein-every-step,rein-memory,rig "$@"
[[ " $* " == *" --modes "* ]] || set -- --modes seq,conc,mem "$@"
exec python3 compare.py --out "$PWD/results" "$@"
