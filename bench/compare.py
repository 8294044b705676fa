#!/usr/bin/env python3
"""rein side by side with the raw HTTP floor and the peer frameworks.

Drives the shared benchmark runner (../../shared/bench/run_bench.py) with rein
added to its frameworks, so every row comes from the same sitting on the same
machine. Binaries and the Python venv live under bench/ in this repository
(see run.sh), never inside shared/. Arguments are passed to run_bench.py, e.g.

    python3 bench/compare.py --only raw,rein,rig --modes seq,conc,mem --reps 3 --out "$PWD/bench/results"
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "bench"
PEERS = HERE / "target-peers"
sys.path.insert(0, str(SHARED))

import run_bench  # noqa: E402  (path set above)

run_bench.MOCK_BIN = PEERS / "release" / "mockllm"
run_bench.VENV_PY = HERE / ".venv" / "bin" / "python"
run_bench.FRAMEWORKS.update({
    "raw": [str(PEERS / "release" / "rawfloor")],
    "rig": [str(PEERS / "release" / "rig-bench")],
    "openai-agents": [str(run_bench.VENV_PY), str(SHARED / "py" / "bench_openai_agents.py")],
    "langgraph": [str(run_bench.VENV_PY), str(SHARED / "py" / "bench_langgraph.py")],
    "rein": [str(HERE / "rein-bench" / "target" / "release" / "rein-bench")],
    # The same client with every transition committed before it is acted on.
    "rein-every-step": ["/usr/bin/env", "REIN_BENCH_DURABILITY=every-step",
                        str(HERE / "rein-bench" / "target" / "release" / "rein-bench")],
    # The same client with the journal in PostgreSQL (database rein_bench on
    # the local server; run.sh creates it).
    "rein-postgres": ["/usr/bin/env", "REIN_BENCH_JOURNAL=postgres",
                      "REIN_BENCH_PG=postgres://postgres@127.0.0.1:5432/rein_bench",
                      str(HERE / "rein-bench" / "target" / "release" / "rein-bench")],
    # The same client with the journal in memory: the loop's own cost.
    "rein-memory": ["/usr/bin/env", "REIN_BENCH_JOURNAL=memory",
                    str(HERE / "rein-bench" / "target" / "release" / "rein-bench")],
})
ORDER = ["raw", "rein", "rein-every-step", "rein-postgres", "rein-memory", "rig", "openai-agents", "langgraph"]


def write_summary(outdir: Path, rows: list, reps: int) -> None:
    import json
    summary = run_bench.summarize(rows, reps)
    (outdir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    present = {s["framework_key"] for s in summary.values()}
    md = run_bench.table(summary, [f for f in ORDER if f in present])
    (outdir / "table.md").write_text(md)
    print()
    print(md)


run_bench.write_summary = write_summary

if __name__ == "__main__":
    run_bench.main()
