"""What an open dashboard costs a run: W3 (10,000 no-op tasks, one get) with the dashboard's
page closed and open, alternately (benchmarks/pageview.py polls as the page does).

    python benchmarks/dashboard_cost.py [--repeat 7] [--tasks 10000] [--tab cluster|plan]

One cluster (one node, 2 workers) started with ``dashboard=True``; a closed page costs
nothing but the dashboard's idle connection (nothing asks the head), so the closed samples
stand for "no dashboard". Samples alternate closed, open, closed, ... so that a shared
machine's load swings hit both sides alike. Prints the medians, their ratio, the median of
each open sample's ratio to the closed sample just before it (a pair sees the same load,
so slow drifts of a shared machine cancel), every sample, and the dashboard process's own
CPU and peak memory while open.
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


def rate(tasks: int) -> float:
    began = time.perf_counter()
    plait.get([noop.remote(i) for i in range(tasks)], timeout=300)
    return tasks / (time.perf_counter() - began)


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("--repeat", type=int, default=7)
    args.add_argument("--tasks", type=int, default=10_000)
    args.add_argument("--tab", choices=("cluster", "plan"), default="cluster",
                      help="the page's tab: plan draws each new plan (a get submits one)")
    options = args.parse_args()
    plait.init(num_workers=2, dashboard=True)
    from plait import api

    plait.get([noop.remote(i) for i in range(200)])
    closed, opened = [], []
    page = PageView(api.dashboard_url, api._dashboard.pid, plan_shown=options.tab == "plan")
    page.start()                               # (its process starts before any sample)
    for _ in range(options.repeat):
        closed.append(rate(options.tasks))
        page.open()
        opened.append(rate(options.tasks))
        page.close()
    pages = [page.stats()]
    plait.shutdown()
    a, b = statistics.median(closed), statistics.median(opened)
    cpu = sum(p["dashboard_cpu_s"] for p in pages)
    wall = sum(p["wall_s"] for p in pages)
    print(f"W3 {options.tasks:,} no-op tasks, median of {options.repeat}, the page's "
          f"{options.tab} tab: page closed "
          f"{a:,.0f} tasks/s; page open {b:,.0f} tasks/s ({b / a:.2f}x)")
    pairs = sorted(o / c for c, o in zip(closed, opened, strict=True))
    quarter = len(pairs) // 4
    print(f"  each open sample against the closed one just before it: median "
          f"{statistics.median(pairs):.3f}x, middle half {pairs[quarter]:.3f}x-"
          f"{pairs[-1 - quarter]:.3f}x")
    print(f"  samples closed: {[round(r) for r in closed]}")
    print(f"  samples open:   {[round(r) for r in opened]}")
    print(f"  dashboard process while open: {100 * cpu / max(wall, 1e-9):.1f}% of a core, "
          f"peak RSS {max(p['dashboard_peak_rss_mib'] for p in pages)} MiB, "
          f"{sum(p['polls'] for p in pages)} polls, "
          f"slowest {max(p['slowest_poll_s'] for p in pages)} s")


if __name__ == "__main__":
    main()
