"""What a quiet caller left behind is sent once it has been quiet a moment: calls made and
not yet requested, and refs it dropped.

A session keeps ``.remote()`` calls until the next get/wait so the compiler sees the
graph whole, but a Ray program may make calls only for their side effects and then sleep,
compute, or report progress from inside a task; Ray would have run them by then. This
thread submits them after ``delay`` seconds without a new call (a burst of calls in a loop
is never split, since each call restarts the clock). ``delay`` None keeps calls until a
get/wait (Dask-style laziness).

Dropped refs are queued by ``ObjectRef.__del__`` and turned into ``Free`` messages at the
session's next call; a program that drops its last handle to an actor and then only waits
(Ray's tests poll the actor's pid) makes no next call, so this thread frees them after
FREE_AFTER_IDLE_SECONDS of quiet too: the actor stops, and memory goes back, without a
call into plait. A zero-copy view that died goes the same way: its pin is sent back after
the same quiet, so the object may spill while its reader goes on writing (a generator
that reads one large value and yields the next). While all is quiet it also looks every
LOOK_SECONDS for what the head sent (``look``), which no call is there to take in.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger("plait.session")

FREE_AFTER_IDLE_SECONDS = 0.01    # refs dropped in a burst (a loop) go in one Free
# A quiet session looks this often for what the head sent meanwhile (``look``): the errors of
# tasks whose refs the program dropped are logged within about this long, as Ray logs them
# from a thread of its own.
LOOK_SECONDS = 0.5


class IdleFlusher:
    """One daemon thread per session; ``submit`` and ``free`` run under the session's lock."""

    def __init__(self, pending: deque[Any], frees_due: Callable[[], bool],
                 submit: Callable[[], None], free: Callable[[], None], lock: Any,
                 delay: float | None, look: Callable[[], None] | None = None) -> None:
        self.pending = pending
        self.frees_due = frees_due
        self.submit = submit
        self.free = free
        self.lock = lock
        self.delay = delay
        self.look = look
        self.quiet = FREE_AFTER_IDLE_SECONDS if delay is None else delay
        self.last = 0.0                       # monotonic time of the latest call or drop
        self.stopped = False
        self.idle = False                     # waiting with nothing to do (else it looks again)
        self.waking = threading.Condition()
        self.thread = threading.Thread(target=self.loop, name="plait-submit", daemon=True)
        self.thread.start()

    def made(self) -> None:
        """A call was just appended to ``pending`` (cheap: no lock unless it was the first)."""
        self.last = time.monotonic()
        if len(self.pending) == 1:
            self.wake_if_idle()

    def wake(self) -> None:
        """Frees became due (a ref died: from ``__del__``, on any thread)."""
        self.last = time.monotonic()
        self.wake_if_idle()

    def wake_if_idle(self) -> None:
        """Only a thread waiting for work needs waking: one counting down its quiet time
        looks again when it ends (a driver calling in a loop wakes it once per quiet
        period, not once per call)."""
        with self.waking:                     # (idle is set and read under the lock)
            if self.idle:
                self.waking.notify()

    def stop(self) -> None:
        with self.waking:
            self.stopped = True
            self.waking.notify()

    def has_work(self) -> bool:
        return self.frees_due() or (self.delay is not None and bool(self.pending))

    def loop(self) -> None:
        every = None if self.look is None else LOOK_SECONDS
        while True:
            with self.waking:
                looking = False
                while not self.has_work() and not self.stopped and not looking:
                    self.idle = True
                    looking = not self.waking.wait(every)    # (False: the time passed)
                    self.idle = False
                if self.stopped:
                    return
            if looking:
                self.look_quietly()
                continue
            with self.waking:
                left = self.quiet - (time.monotonic() - self.last)
                if left > 0:
                    self.waking.wait(left)          # a stop wakes it early
                    continue
            with self.lock:
                if self.stopped:
                    return
                if self.delay is not None and self.pending:
                    self.submit_quietly()         # frees what was dropped on the way
                elif self.frees_due():
                    self.free_quietly()

    def submit_quietly(self) -> None:
        """Errors belong to whoever gets the refs later (the calls stay unsubmitted)."""
        try:
            self.submit()
        except Exception as error:
            log.warning("plait could not submit calls made without a get: %r (a get of "
                        "their refs raises it)", error)

    def look_quietly(self) -> None:
        """A session whose connection is gone has nothing more to hear."""
        try:
            self.look()
        except Exception as error:
            self.stopped = True
            log.debug("plait could not look for news from the head: %r", error)

    def free_quietly(self) -> None:
        """A session whose connection is gone has nothing left to free."""
        try:
            self.free()
        except Exception as error:            # its connection is gone: stop trying
            self.stopped = True
            log.debug("plait could not free dropped refs: %r", error)
