"""The session's lock: a holder waiting for the head lets other threads in, except where
it holds throughout (a run half-way through its submission)."""

from __future__ import annotations

import threading
import time

from plait.executor.driver.futures import SessionLock


def contender(lock: SessionLock, entered: threading.Event) -> threading.Thread:
    """A thread that wants the lock (it takes it, notes that, and lets go)."""
    def take() -> None:
        with lock:
            entered.set()

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while lock.contenders == 0:                  # it is queued for the lock
        assert time.monotonic() < deadline, "the contender never asked for the lock"
        time.sleep(0.001)
    return thread


def test_a_holder_steps_aside_only_outside_what_it_holds_throughout():
    lock = SessionLock()
    entered = threading.Event()
    try:
        with lock:
            thread = contender(lock, entered)
            with lock.held_throughout():
                assert lock.step_aside() is False       # a run half-way: nobody enters
                assert not entered.is_set()
            assert lock.step_aside() is True            # waiting for the head: it may
            assert entered.is_set()
        thread.join(10)
        assert not thread.is_alive()
    finally:
        lock.close()
