"""Admission by memory: a node starts a task only when its store can hold the task's inputs
and its result beside what the tasks already started hold.

Data flow::

    ready queue --next--> fits? --yes--> dispatched: its inputs pinned (spilled ones restored
                            |                        now, when it is about to run, not when
                            |                        it was queued); its result promised
                            no --> held back; later tasks that fit may pass it
    worker's Alloc       --> the promise shrinks by the block it got
    task ends (release)  --> its promise and pins go; held-back tasks are looked at again

A task's need is ``inputs`` (the blocks of its stored inputs not pinned already) plus
``result``: the largest stored result this node has seen its function make (times its
outputs), or, for a function not seen yet, the size of its stored inputs. A map's result is
often as large as its input; guessing too high costs concurrency for one round, guessing too
low lets two running tasks each wait for room the other holds, and one of them is refused.

It fits when ``pinned + promised + need`` is within what the store can pin (``room``: its
capacity once everything unpinned has spilled). When nothing here can free room (no task
running that is not itself waiting), waiting would be for ever: the task goes. Its inputs
in memory are pinned where they are, and spilled ones are restored while there is room;
those left are mapped by the worker from their spill files (``OnDisk``), as Ray falls back
to disk, so a task whose inputs together exceed the store still runs. If drivers' views
pin part of the store, the task first waits for those views, VIEW_GRACE_SECONDS at most: a
view dies when its reader drops it (its pin comes back after ~10 ms of the reader's
quiet), and a driver reading results one by one holds a few at a time; reading from memory
beats reading from disk.

Pure bookkeeping over the store: no sockets, no workers (tests/executor/test_admission.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from plait.store.allocator import Allocator
from plait.store.store import ObjectStore

GO, WAIT = "go", "wait"
VIEW_GRACE_SECONDS = 10.0    # a task whose inputs only drivers' views keep out waits this long


@dataclass(frozen=True, slots=True)
class Need:
    """Store bytes a task would add if started now."""

    inputs: int        # blocks to pin: spilled inputs restored, unpinned ones kept
    result: int        # its result's estimated blocks


NOTHING = Need(0, 0)


class Admission:
    """What started tasks were promised, what functions' results weigh, who waits."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.promised: dict[str, int] = {}      # started task -> result bytes not yet allocated
        self.promised_total = 0
        self.result_bytes: dict[str, int] = {}  # function -> largest stored result seen here
        self.held: dict[str, None] = {}         # ready tasks that did not fit, oldest first
        self.view_waits: dict[str, float] = {}  # held task -> when it began to wait for views

    def need(self, reads: tuple[str, ...], function: str, outputs: int) -> Need:
        known = self.result_bytes.get(function)
        if known is not None and self.store.too_large(known):
            known = 0                                   # its results go to disk
        if not reads:                                   # the common case: keep it cheap
            return Need(0, known * outputs) if known else NOTHING
        if known is None:
            stored = (self.store.objects.get(oid) for oid in dict.fromkeys(reads))
            result = sum(Allocator.block_size(s.nbytes) for s in stored if s is not None)
        else:
            result = known * outputs
        return Need(self.store.hold_cost(list(reads)), result)

    def verdict(self, need: Need, may_free_room: Callable[[], bool],
                views_may_go: Callable[[], bool] = lambda: False) -> str:
        """GO now, or WAIT for running tasks (or, its inputs alone not fitting, drivers'
        views) to free room. With nothing to wait for it goes: what of its inputs cannot
        be brought into memory is read from disk."""
        room = self.store.room() - self.promised_total
        if need.inputs + need.result <= room:
            return GO
        if may_free_room():
            return WAIT
        if need.inputs <= self.store.room():
            return GO
        return WAIT if views_may_go() else GO

    def waits_for_views(self, task: str, now: float) -> bool:
        """Whether ``task``, kept out only by drivers' views, may wait for them still."""
        since = self.view_waits.setdefault(task, now)
        return now - since < VIEW_GRACE_SECONDS

    def started(self, task: str, need: Need) -> None:
        self.view_waits.pop(task, None)
        self.promised_total += need.result - self.promised.get(task, 0)
        self.promised[task] = need.result

    def allocated(self, task: str, nbytes: int) -> None:
        """Part of the promise is now a pinned block of the store (counted there)."""
        promise = self.promised.get(task)
        if promise:
            spent = min(promise, Allocator.block_size(nbytes))
            self.promised[task] = promise - spent
            self.promised_total -= spent

    def ended(self, task: str) -> None:
        self.promised_total -= self.promised.pop(task, 0)

    def learn(self, function: str, nbytes: int) -> None:
        """A result of ``function`` was made here (0 bytes: inline, not in the store): the
        estimate of later ones is the largest seen."""
        block = Allocator.block_size(nbytes) if nbytes else 0
        if block > self.result_bytes.get(function, -1):
            self.result_bytes[function] = block


def _mib(nbytes: int) -> str:
    return f"{nbytes / (1 << 20):.1f} MiB"
