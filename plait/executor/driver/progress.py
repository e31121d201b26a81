"""A progress line for long waits in a terminal: ``plait: 120/1000 ready [###.....] 3.2 s``.

Shown only when stderr is a terminal, once a wait has lasted a second, and never when
``PLAIT_PROGRESS=0`` (or ``plait.init(progress=False)``). It redraws one line in place and
clears it when the wait ends, so logs and notebooks see nothing.
"""

from __future__ import annotations

import os
import sys
import time

DELAY_SECONDS = 1.0
REDRAW_SECONDS = 0.2
WIDTH = 24

enabled = os.environ.get("PLAIT_PROGRESS", "1") != "0"


class Progress:
    """Call ``update(done, total)`` while waiting and ``close()`` at the end."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.drawn = 0.0
        self.shown = False
        self.active = enabled and sys.stderr.isatty()

    def update(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.active or now - self.start < DELAY_SECONDS or now - self.drawn < REDRAW_SECONDS:
            return
        self.drawn, self.shown = now, True
        sys.stderr.write(f"\r{render(done, total, now - self.start)}")
        sys.stderr.flush()

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def render(done: int, total: int, seconds: float) -> str:
    """
    >>> render(3, 12, 2.5)
    'plait: 3/12 ready [######..................] 2.5 s'
    """
    filled = WIDTH * done // max(total, 1)
    return f"plait: {done}/{total} ready [{'#' * filled}{'.' * (WIDTH - filled)}] {seconds:.1f} s"
