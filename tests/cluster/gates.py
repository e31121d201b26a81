"""A task the test releases: it returns once a file exists (the test creates it when it
wants the task to end, so no test waits on a timer)."""

from __future__ import annotations

import os
import time

import plait


@plait.remote
def wait_for_file(path, value="done"):
    """``value`` once ``path`` exists; TimeoutError after 30 s, so a test never hangs."""
    deadline = time.monotonic() + 30
    while not os.path.exists(path):              # released by the test, not by a timer
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.005)
    return value
