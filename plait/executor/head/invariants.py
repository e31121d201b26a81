"""Invariants of the head's tables, checked on demand (dask's validate_state).

Why and how problems are reported: plait.executor.wire.checks.

A node checks its own (plait.executor.node.invariants). The head:
  - every unfinished task runs on a live node, and each node's queue count is its tasks;
  - every pending object has a producer: an unfinished task (a generator task's value
    lost with its copy: the task running again), or a task put announced; a generator
    task's stream is kept only while the task is unfinished;
  - every stored object has a live copy, and copies are only tracked for live objects;
  - every object's reader count is the number of unfinished tasks that read it;
  - the submitter is remembered of unfinished tasks only (for a recursive cancel), as is
    a cancel without force waiting for the task's result, and frees wait only for
    unfinished tasks' results;
  - a client request waits only on live nodes; lineage counts match its records.

The Head calls these checks, so they read it through ``HeadTables``, the part of it they
need, rather than importing it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping
from typing import Protocol

from plait.executor.head.assignments import Assignments
from plait.executor.head.directory import Directory
from plait.executor.head.lineage import Lineage, reads
from plait.executor.head.locations import Locations
from plait.executor.wire import protocol as p
from plait.executor.wire.checks import note_broken

class _NodeQueue(Protocol):
    queued: int


class _Gather(Protocol):
    waiting: set[str]


class HeadTables(Protocol):
    """What the checks read of the Head (head.py)."""

    assigned: Assignments
    directory: Directory
    locations: Locations
    cached: dict[str, set[str]]
    expected_puts: dict[str, Hashable]
    lineage: Lineage
    streams: Mapping[str, object]
    awaited: Mapping[str, set[str]]
    submitted_by: dict[str, tuple[str, int]]
    interrupting: set[str]
    frees_after: Mapping[str, object]

    @property
    def nodes(self) -> Mapping[str, _NodeQueue]: ...

    @property
    def gathers(self) -> Mapping[int, _Gather]: ...


def head_problems(head: HeadTables) -> list[str]:
    """Broken invariants of the head's tables (empty when all hold)."""
    problems = []
    live = set(head.nodes)
    orphans = sorted(t for t, spec in head.assigned.items() if spec.node not in live)
    note_broken(problems, "head: unfinished tasks on nodes that are gone", orphans)
    queued = Counter(spec.node for spec in head.assigned.values())
    wrong = sorted(f"{n} counts {r.queued}, runs {queued[n]}" for n, r in head.nodes.items()
                   if r.queued != queued[n])
    note_broken(problems, "head: queue counts differ from the tasks assigned", wrong)
    note_broken(problems, "head: the index of unfinished tasks is wrong", head.assigned.problems())
    note_broken(problems, "head: the index of copies by node is wrong", head.locations.problems())
    producing = {oid for spec in head.assigned.values() for oid in spec.outputs}
    producing |= {oid for task, oids in head.awaited.items() if task in head.assigned
                  for oid in oids}
    pending = sorted(oid for oid, entry in head.directory.entries.items()
                     if entry.value is None and oid not in producing
                     and oid not in head.expected_puts)
    note_broken(problems, "head: pending objects no task will make", pending)
    closed = sorted(task for task in head.streams if task not in head.assigned)
    note_broken(problems, "head: streams of generator tasks that are over", closed)
    uncopied = sorted(oid for oid, entry in head.directory.entries.items()
                      if isinstance(entry.value, p.Stored)
                      and not head.locations.get(oid, set()) & live)
    note_broken(problems, "head: stored objects with no copy on a live node", uncopied)
    stray = sorted(oid for oid in [*head.locations, *head.cached]
                   if oid not in head.directory.entries)
    note_broken(problems, "head: copies tracked for objects that are gone", stray)
    readers = Counter(oid for spec in head.assigned.values() for oid in reads(spec))
    miscounted = sorted(f"{oid} counts {e.readers}, read by {readers[oid]}"
                        for oid, e in head.directory.entries.items()
                        if e.readers != readers[oid])
    note_broken(problems, "head: reader counts differ from the tasks that read", miscounted)
    finished = sorted(t for t in head.submitted_by if t not in head.assigned)
    note_broken(problems, "head: submitters remembered of finished tasks", finished)
    interrupted = sorted(t for t in head.interrupting if t not in head.assigned)
    note_broken(problems, "head: cancels waited for on finished tasks", interrupted)
    stale = sorted(t for t in head.frees_after if t not in head.assigned)
    note_broken(problems, "head: frees waiting for tasks that finished", stale)
    stuck = sorted(f"request {r} waits on {sorted(g.waiting - live)}"
                   for r, g in head.gathers.items() if g.waiting - live)
    note_broken(problems, "head: requests waiting on nodes that are gone", stuck)
    return problems + [f"head: {problem}" for problem in head.lineage.problems()]
