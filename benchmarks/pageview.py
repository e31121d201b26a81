"""An open dashboard page, without a browser: what a tab costs the cluster, and the
dashboard process's own CPU and memory meanwhile (for dashboard_cost.py and chaos.py).

The page's own script asks GET /api/state once a second, and GET /api/plan when the plan
changes while its Plan tab is shown (``plan_shown``); ``PageView`` does the same from a
process of its own, after trading the URL's token for the cookie as a browser does.
``stats()`` reads the dashboard process's CPU seconds and peak RSS from /proc.
"""

from __future__ import annotations

import http.cookiejar
import json
import multiprocessing
import os
import time
import urllib.request
from typing import Any

POLL_SECONDS = 1.0
BIG_PLAN_TASKS, BIG_PLAN_SECONDS = 1000, 5.0     # as the page's script (static/app.js)


class PageView:
    """One page on the dashboard at ``url`` (token included), polling as the page's script
    does while it is open (``open``/``close``), from a process of its own as a browser tab
    is: a thread in the driver's process would take the driver's GIL to read the answers,
    a cost no real page puts on the driver. The process starts once (``start``), so that
    its own start-up is not counted against the samples taken while the page is open."""

    def __init__(self, url: str, pid: int, plan_shown: bool = False) -> None:
        context = multiprocessing.get_context("spawn")      # (the driver has threads)
        self.pid = pid
        self.shown = context.Event()                        # the page is open
        self.done = context.Event()
        self.counts = context.Array("d", 3)                 # polls, failures, slowest
        self.process = context.Process(target=poll, args=(url, self.shown, self.done,
                                                          self.counts, plan_shown),
                                       name="dashboard-page", daemon=True)
        self.cpu = self.wall = 0.0                          # while open, summed
        self.opened: tuple[float, float] | None = None

    def start(self) -> None:
        self.process.start()

    def open(self) -> None:
        self.opened = (cpu_seconds(self.pid), time.monotonic())
        self.shown.set()

    def close(self) -> None:
        self.shown.clear()
        if self.opened is not None:
            cpu, wall = self.opened
            self.cpu += cpu_seconds(self.pid) - cpu
            self.wall += time.monotonic() - wall
            self.opened = None

    def stats(self) -> dict:
        """Polls and the dashboard's CPU while the page was open; ends the page."""
        self.close()
        self.done.set()
        self.process.join(60)
        polls, failures, slowest = self.counts[:]
        return {"polls": int(polls), "failed_polls": int(failures),
                "slowest_poll_s": round(slowest, 3), "wall_s": round(self.wall, 1),
                "dashboard_cpu_s": round(self.cpu, 2),
                "dashboard_cpu_percent": round(100 * self.cpu / max(self.wall, 1e-9), 1),
                "dashboard_peak_rss_mib": round(peak_rss(self.pid) / (1 << 20), 1)}


def poll(url: str, shown: Any, done: Any, counts: Any, plan_shown: bool) -> None:
    """The page's loop: trade the URL's token for the cookie; then, while the page is
    open, GET /api/state at once and once a second, and (its Plan tab shown) /api/plan
    when the plan changes, a plan over BIG_PLAN_TASKS at most every BIG_PLAN_SECONDS."""
    base = url.split("/?", 1)[0]
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    opener.open(url, timeout=10).read()                     # the token becomes a cookie
    plan, tasks, drawn = None, 0, 0.0
    while not done.is_set():
        if not shown.wait(0.1):
            continue
        began = time.monotonic()
        try:
            state = json.loads(opener.open(base + "/api/state", timeout=30).read())
            if plan_shown and state["plan"]["number"] != plan and (
                    tasks <= BIG_PLAN_TASKS or time.monotonic() - drawn >= BIG_PLAN_SECONDS):
                plan = state["plan"]["number"]
                tasks = json.loads(opener.open(base + "/api/plan", timeout=30).read()).get(
                    "tasks", 0)
                drawn = time.monotonic()
            counts[0] += 1
        except OSError:
            counts[1] += 1
        counts[2] = max(counts[2], time.monotonic() - began)
        done.wait(max(0.0, POLL_SECONDS - (time.monotonic() - began)))


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0
