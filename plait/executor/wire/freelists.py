"""CPython's free lists in a worker: emptied every SWEEP_EVERY_TASKS tasks by a full collection.

CPython keeps freed tuples (up to 2,000 of each length from 1 to 19), lists, dicts, floats
and a few more on free lists for reuse, and empties them only in a collection of the oldest
generation. A worker seldom has one: a forked worker freezes what it inherited
(``gc.freeze``, node/workers.py), so few objects of its own are long-lived, and CPython's
rule for a full collection (a quarter more long-lived objects than at the last one) is then
rarely met. Tuples of every length pass through a worker by the thousand (messages, their
fields, pickling), and each length's list keeps those freed and not made again, up to
2,000 (4.5 MiB for all lengths). In the long run of issue 11 a worker's Python blocks rose
~500 every 50k tasks (``sys.getallocatedblocks`` 153,492 -> 155,900 from 52k to 300k
tasks), tracemalloc naming where those tuples were first made (``tuple(self.unsent)``,
pickling's reduce tuples), and one ``gc.collect()`` gave them back. Its USS rose with
them (+11.6% over 400k tasks: node-0's first worker in ``benchmarks/longrun.py --tasks
400000 --report-every 50000``).

A full collection in a worker costs what its tracked objects do: ~4 us for a worker's own
few hundred (700 beside plait's frozen imports, median of 200, load 10), more in an actor
holding much state. So a sweep comes at most every SWEEP_EVERY_TASKS tasks, and never
before SWEEP_COST_RATIO times the last one's duration has passed: at most 1% of a
worker's time whatever it holds.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

SWEEP_EVERY_TASKS = 10_000
SWEEP_COST_RATIO = 100


class FreeListSweep:
    """Counts the tasks a worker ran; sweeps CPython's free lists when due."""

    def __init__(self, every: int = SWEEP_EVERY_TASKS, ratio: float = SWEEP_COST_RATIO,
                 collect: Callable[[], object] = gc.collect,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.every = every
        self.ratio = ratio
        self.collect = collect
        self.clock = clock
        self.tasks = 0                   # run since the last sweep
        self.not_before = 0.0            # the last sweep's duration times ``ratio``, after it

    def note(self, tasks: int) -> None:
        self.tasks += tasks

    def sweep_if_due(self) -> bool:
        """Sweep if enough tasks ran and the last sweep was cheap enough; whether it swept."""
        if self.tasks < self.every:
            return False
        started = self.clock()
        if started < self.not_before:
            return False
        self.tasks = 0
        self.collect()
        self.not_before = started + (self.clock() - started) * self.ratio
        return True
