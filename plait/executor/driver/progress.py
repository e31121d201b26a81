"""A progress line for long waits in a terminal: ``plait: 120/1000 ready [###.....] 3.2 s``,
and in a notebook, the notebook's own progress bar (``tqdm.auto``, when tqdm is installed).

Shown once a wait has lasted a second, and never when ``PLAIT_PROGRESS=0``. In a terminal
(stderr a tty) it redraws one line in place and clears it when the wait ends, so logs see
nothing; in a Jupyter kernel it is a tqdm bar (a widget where ipywidgets is installed),
which tqdm.auto picks, rather than code of our own.
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
        self.notebook = enabled and not self.active and in_notebook()
        self.bar = None                             # the notebook's tqdm bar, once shown

    def update(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not (self.active or self.notebook) or now - self.start < DELAY_SECONDS \
                or now - self.drawn < REDRAW_SECONDS:
            return
        self.drawn, self.shown = now, True
        if self.notebook:
            self.update_bar(done, total)
            return
        sys.stderr.write(f"\r{render(done, total, now - self.start)}")
        sys.stderr.flush()

    def update_bar(self, done: int, total: int) -> None:
        if self.bar is None:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                self.notebook = False               # no tqdm: no bar (nothing of our own)
                return
            self.bar = tqdm(total=total, desc="plait", unit="task", leave=False)
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def in_notebook() -> bool:
    """Whether this is a Jupyter kernel (IPython with a kernel; not a terminal IPython)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and hasattr(shell, "kernel")


def render(done: int, total: int, seconds: float) -> str:
    """
    >>> render(3, 12, 2.5)
    'plait: 3/12 ready [######..................] 2.5 s'
    """
    filled = WIDTH * done // max(total, 1)
    return f"plait: {done}/{total} ready [{'#' * filled}{'.' * (WIDTH - filled)}] {seconds:.1f} s"
