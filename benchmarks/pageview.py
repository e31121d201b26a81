"""An open dashboard page, without a browser: what a tab costs the cluster, and the
dashboard process's own CPU and memory meanwhile (for dashboard_cost.py and chaos.py).

The page's own script asks GET /api/state once a second and GET /api/plan when the plan
changes; ``PageView`` does the same from a thread, after trading the URL's token for the
cookie as a browser does. ``stats()`` reads the dashboard process's CPU seconds and peak
RSS from /proc.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import threading
import time
import urllib.request

POLL_SECONDS = 1.0


class PageView(threading.Thread):
    """Polls the dashboard at ``url`` (token included) as one open page does."""

    def __init__(self, url: str, pid: int) -> None:
        super().__init__(name="dashboard-page", daemon=True)
        self.base = url.split("/?", 1)[0]
        self.pid = pid
        jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        self.opener.open(url, timeout=10).read()            # the token becomes a cookie
        self.done = threading.Event()
        self.polls = self.failures = 0
        self.slowest = 0.0
        self.cpu_start, self.wall_start = cpu_seconds(pid), time.monotonic()

    def run(self) -> None:
        plan = None
        while not self.done.wait(POLL_SECONDS):
            began = time.monotonic()
            try:
                state = json.loads(self.opener.open(self.base + "/api/state", timeout=30).read())
                if state["plan"]["number"] != plan:
                    plan = state["plan"]["number"]
                    self.opener.open(self.base + "/api/plan", timeout=30).read()
                self.polls += 1
            except OSError:
                self.failures += 1
            self.slowest = max(self.slowest, time.monotonic() - began)

    def stats(self) -> dict:
        self.done.set()
        self.join(60)
        wall = time.monotonic() - self.wall_start
        cpu = cpu_seconds(self.pid) - self.cpu_start
        return {"polls": self.polls, "failed_polls": self.failures,
                "slowest_poll_s": round(self.slowest, 3), "wall_s": round(wall, 1),
                "dashboard_cpu_s": round(cpu, 2),
                "dashboard_cpu_percent": round(100 * cpu / max(wall, 1e-9), 1),
                "dashboard_peak_rss_mib": round(peak_rss(self.pid) / (1 << 20), 1)}


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
