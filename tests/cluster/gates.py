"""Gates: a task the test releases (it returns once a file exists, which the test creates
when it wants the task to end), and waiting for a process to exit; no test waits on a
timer."""

from __future__ import annotations

import os
import select
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


def wait_exit(pid: int, timeout: float = 30.0) -> bool:
    """True once process ``pid`` has exited (waits on a pidfd, not a sleep)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)
