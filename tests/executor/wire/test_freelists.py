"""A worker empties CPython's free lists now and then (freelists.py): the tuples its
messages passed through stayed there for good, and its memory rose with them."""

from __future__ import annotations

import subprocess
import sys

from plait.executor.wire.freelists import FreeListSweep


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_worker_sweeps_once_it_ran_enough_tasks_and_then_counts_afresh():
    sweeps = []
    sweep = FreeListSweep(every=100, collect=lambda: sweeps.append(1), clock=FakeClock())
    sweep.note(60)
    assert sweep.sweep_if_due() is False and sweeps == []
    sweep.note(40)
    assert sweep.sweep_if_due() is True and sweeps == [1]
    sweep.note(99)
    assert sweep.sweep_if_due() is False and sweeps == [1]


def test_a_costly_sweep_waits_a_hundred_times_its_duration_before_the_next():
    """An actor holding millions of objects pays for a full collection: at most 1% of
    its time goes to sweeping, however many tasks it runs."""
    clock = FakeClock()

    def collect() -> None:            # a collection that takes 0.5 s
        clock.now += 0.5

    sweep = FreeListSweep(every=10, ratio=100, collect=collect, clock=clock)
    sweep.note(10)
    assert sweep.sweep_if_due() is True
    clock.now = 49.0
    sweep.note(1000)
    assert sweep.sweep_if_due() is False             # 50 s after the last one started
    clock.now = 50.0
    assert sweep.sweep_if_due() is True


# Tuples of every length from 1 to 19 made and dropped, as a worker's messages do; prints
# the Python blocks still allocated after they are gone, then after a sweep.
FREED_TUPLES = """
import sys
from plait.executor.wire.freelists import FreeListSweep
before = sys.getallocatedblocks()
made = [tuple(range(n % 19 + 1)) for n in range(19_000)]
del made
kept = sys.getallocatedblocks() - before
sweep = FreeListSweep(every=1)
sweep.note(1)
assert sweep.sweep_if_due()
print(kept, sys.getallocatedblocks() - before)
"""


def test_a_sweep_gives_back_the_tuples_freed_since_the_last():
    done = subprocess.run([sys.executable, "-c", FREED_TUPLES], capture_output=True,
                          text=True, timeout=60, check=True)
    kept, swept = map(int, done.stdout.split())
    assert kept > 15_000                    # freed, and still on the free lists
    assert swept < 1_000
