"""What an open dashboard costs a run: W3 (10,000 no-op tasks, one get) with no dashboard,
then with one started and a page open on it (benchmarks/pageview.py polls as the page does).

    python benchmarks/dashboard_cost.py [--repeat 5] [--tasks 10000]

Each side is a fresh cluster of one node and 2 workers, a 200-task warm-up, then
``--repeat`` timed runs; it prints the medians, their ratio, and the dashboard process's
own CPU and peak memory over the open side.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import plait  # noqa: E402
from benchmarks.pageview import PageView  # noqa: E402


@plait.remote
def noop(i: int) -> int:
    return i


def rates(tasks: int, repeat: int) -> list[float]:
    plait.get([noop.remote(i) for i in range(200)])
    out = []
    for _ in range(repeat):
        began = time.perf_counter()
        plait.get([noop.remote(i) for i in range(tasks)], timeout=300)
        out.append(tasks / (time.perf_counter() - began))
    return out


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("--repeat", type=int, default=5)
    args.add_argument("--tasks", type=int, default=10_000)
    options = args.parse_args()
    plait.init(num_workers=2)
    closed = rates(options.tasks, options.repeat)
    plait.shutdown()
    plait.init(num_workers=2, dashboard=True)
    from plait import api

    page = PageView(api.dashboard_url, api._dashboard.pid)
    page.start()
    opened = rates(options.tasks, options.repeat)
    stats = page.stats()
    plait.shutdown()
    a, b = statistics.median(closed), statistics.median(opened)
    print(f"W3 {options.tasks:,} no-op tasks, median of {options.repeat}: no dashboard "
          f"{a:,.0f} tasks/s; dashboard open {b:,.0f} tasks/s ({b / a:.2f}x)")
    print(f"  samples without: {[round(r) for r in closed]}")
    print(f"  samples with:    {[round(r) for r in opened]}")
    print(f"  dashboard process over the open side: {stats}")


if __name__ == "__main__":
    main()
