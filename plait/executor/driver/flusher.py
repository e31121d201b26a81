"""Calls made and not yet requested are submitted once their caller has been quiet a moment.

A session keeps ``.remote()`` calls until the next get/wait so the compiler sees the
graph whole, but a Ray program may make calls only for their side effects and then sleep,
compute, or report progress from inside a task; Ray would have run them by then. This
thread submits them after ``delay`` seconds without a new call (a burst of calls in a loop
is never split, since each call restarts the clock).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger("plait.session")


class IdleFlusher:
    """One daemon thread per session; ``submit`` runs under the session's lock."""

    def __init__(self, pending: deque[Any], submit: Callable[[], None], lock: Any,
                 delay: float) -> None:
        self.pending = pending
        self.submit = submit
        self.lock = lock
        self.delay = delay
        self.last = 0.0                       # monotonic time of the latest call made
        self.stopped = False
        self.wake = threading.Condition()
        self.thread = threading.Thread(target=self.loop, name="plait-submit", daemon=True)
        self.thread.start()

    def made(self) -> None:
        """A call was just appended to ``pending`` (cheap: no lock unless it was the first)."""
        self.last = time.monotonic()
        if len(self.pending) == 1:
            with self.wake:
                self.wake.notify()

    def stop(self) -> None:
        with self.wake:
            self.stopped = True
            self.wake.notify()

    def loop(self) -> None:
        while True:
            with self.wake:
                while not self.pending and not self.stopped:
                    self.wake.wait()
                if self.stopped:
                    return
                left = self.delay - (time.monotonic() - self.last)
                if left > 0:
                    self.wake.wait(left)          # a stop wakes it early
                    continue
            with self.lock:
                if self.stopped:
                    return
                if self.pending:
                    self.submit_quietly()

    def submit_quietly(self) -> None:
        """Errors belong to whoever gets the refs later (the calls stay unsubmitted)."""
        try:
            self.submit()
        except Exception as error:
            log.warning("plait could not submit calls made without a get: %r (a get of "
                        "their refs raises it)", error)
