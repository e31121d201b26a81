"""Two checkouts of plait, interleaved finely: which is faster on the hot paths, on a busy
machine.

``run.py`` runs every workload of one checkout, then the other's; on a shared machine a
burst of someone else's work lands on one side and moves a ratio by 20-40%. This takes
turns every few seconds instead: each run starts a fresh one-node cluster from one
checkout (PYTHONPATH), times three things, and stops; the checkouts alternate ``--runs``
times each, and the medians of the runs are compared.

    sync actor calls   a call, then its get, 900 times (ms per round trip)
    async actor calls  3,000 calls, then one get (calls per second)
    no-op tasks        3,000 tasks, then one get (tasks per second)

    python benchmarks/ab.py OLD_CHECKOUT NEW_CHECKOUT [--runs 6]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SYNC_CALLS = 900
BATCH = 3000


def measure() -> dict[str, float]:
    """In the child: one cluster, the three figures."""
    import plait
    from bench_tasks import Counter, noop       # the workloads' own (W3, W13)

    noop_task = plait.remote(noop)
    plait.init(num_workers=2)
    try:
        counter = plait.remote(Counter).remote()
        plait.get([counter.incr.remote() for _ in range(200)], timeout=60)      # warm-up
        start = time.perf_counter()
        for _ in range(SYNC_CALLS):
            plait.get(counter.incr.remote(), timeout=30)
        sync_ms = (time.perf_counter() - start) / SYNC_CALLS * 1e3
        start = time.perf_counter()
        plait.get([counter.incr.remote() for _ in range(BATCH)], timeout=60)
        calls = BATCH / (time.perf_counter() - start)
        start = time.perf_counter()
        plait.get([noop_task.remote(i) for i in range(BATCH)], timeout=60)
        tasks = BATCH / (time.perf_counter() - start)
    finally:
        plait.shutdown()
    return {"sync actor call (ms)": sync_ms, "async actor calls (/s)": calls,
            "no-op tasks (/s)": tasks}


def run_in(checkout: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": os.path.abspath(checkout)}
    out = subprocess.run([sys.executable, __file__, "--child"], env=env, check=True,
                         capture_output=True, text=True, timeout=300).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", nargs="?")
    parser.add_argument("new", nargs="?")
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure()))
        return 0
    old_runs: list[dict[str, float]] = []
    new_runs: list[dict[str, float]] = []       # (apart: the two may be one checkout)
    for _ in range(args.runs):
        old_runs.append(run_in(args.old))
        new_runs.append(run_in(args.new))
    print(f"| figure | {args.old} | {args.new} | new / old (time; >1 = slower) |")
    print("|---|---|---|---|")
    for figure in old_runs[0]:
        old = statistics.median(r[figure] for r in old_runs)
        new = statistics.median(r[figure] for r in new_runs)
        ratio = new / old if figure.endswith("(ms)") else old / new
        print(f"| {figure} | {old:,.4g} | {new:,.4g} | {ratio:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
