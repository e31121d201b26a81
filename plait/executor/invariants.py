"""Invariants of the head's and a node's tables, checked on demand (dask's validate_state).

Each check reads one process's own tables and names what it finds broken, with the state
that broke it, so that a soak or a test teardown can say *what* went wrong rather than
only that a get hung. Only what one process knows is checked: whether a copy the head
counts on node-1 is really in node-1's store is a race by nature (a Delete may be on its
way) and is left to the results the soaks check.

The head:
  - every unfinished task runs on a live node, and each node's queue count is its tasks;
  - every pending object has a producer: an unfinished task, or a task put announced;
  - every stored object has a live copy, and copies are only tracked for live objects;
  - every object's reader count is the number of unfinished tasks that read it;
  - a client request waits only on live nodes; lineage counts match its records.
A node:
  - every task it holds is ready, with a worker, or waiting for inputs it asked the head
    for or is pulling (a task riding behind its producer is with a worker); every task a
    worker runs is one it holds;
  - no worker slot is held for a task that no longer runs;
  - no pin outlives its holder: an object's pins are those of the tasks reading it, the
    transfers serving it, the clients that pinned it and its writer.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from plait.executor import protocol as p
from plait.executor.lineage import reads
from plait.store.allocator import Allocator

if TYPE_CHECKING:
    from plait.executor.head import Head
    from plait.executor.node import Node

SHOWN = 5          # ids named per broken invariant


def head_problems(head: Head) -> list[str]:
    """Broken invariants of the head's tables (empty when all hold)."""
    problems = []
    live = set(head.nodes)
    orphans = sorted(t for t, spec in head.assigned.items() if spec.node not in live)
    _note(problems, "head: unfinished tasks on nodes that are gone", orphans)
    queued = Counter(spec.node for spec in head.assigned.values())
    wrong = sorted(f"{n} counts {r.queued}, runs {queued[n]}" for n, r in head.nodes.items()
                   if r.queued != queued[n])
    _note(problems, "head: queue counts differ from the tasks assigned", wrong)
    producing = {oid for spec in head.assigned.values() for oid in spec.outputs}
    pending = sorted(oid for oid, entry in head.directory.entries.items()
                     if entry.value is None and oid not in producing
                     and oid not in head.expected_puts)
    _note(problems, "head: pending objects no task will make", pending)
    uncopied = sorted(oid for oid, entry in head.directory.entries.items()
                      if isinstance(entry.value, p.Stored)
                      and not head.locations.get(oid, set()) & live)
    _note(problems, "head: stored objects with no copy on a live node", uncopied)
    stray = sorted(oid for oid in [*head.locations, *head.cached]
                   if oid not in head.directory.entries)
    _note(problems, "head: copies tracked for objects that are gone", stray)
    readers = Counter(oid for spec in head.assigned.values() for oid in reads(spec))
    miscounted = sorted(f"{oid} counts {e.readers}, read by {readers[oid]}"
                        for oid, e in head.directory.entries.items()
                        if e.readers != readers[oid])
    _note(problems, "head: reader counts differ from the tasks that read", miscounted)
    stuck = sorted(f"request {r} waits on {sorted(g.waiting - live)}"
                   for r, g in head.gathers.items() if g.waiting - live)
    _note(problems, "head: requests waiting on nodes that are gone", stuck)
    return problems + [f"head: {problem}" for problem in head.lineage.problems()]


def node_problems(node: Node) -> list[str]:
    """Broken invariants of one node's tables (empty when all hold)."""
    problems = []
    running = {t for w in node.workers.values() for t in w.inflight}
    ready = node.table.ready.ids() | set(node.table.actor_ready) | set(node.admission.held)
    pulling = set(node.transfers.pulls) if node.transfers is not None else set()
    idle = []
    for task_id, state in node.table.tasks.items():
        if task_id in running or task_id in ready or state.spec.actor:
            continue                    # an actor's calls wait in its own queue, in order
        if state.riding:                # sent behind its producer: a worker must have it
            idle.append(f"{task_id} rides with no worker")
            continue
        unasked = state.waiting - node.asked - pulling - set(node.values)
        if not state.waiting or unasked:
            idle.append(f"{task_id} waits for {sorted(state.waiting)[:3]}")
    _note(problems, f"{node.id}: tasks that nothing will start", idle)
    unknown = sorted(t for w in node.workers.values() if not w.actor for t in w.inflight
                     if t not in node.table.tasks)
    _note(problems, f"{node.id}: workers running tasks the node does not hold", unknown)
    slots = sorted(t for t in node.held_slots if t not in running)
    _note(problems, f"{node.id}: slots held for tasks that no longer run", slots)
    pins = sorted(f"{oid} has {stored.pins}, holders {held}"
                  for oid, stored in node.store.objects.items()
                  if stored.pins != (held := node.pin_holders(oid)))
    _note(problems, f"{node.id}: pins that differ from their holders", pins)
    promised = sorted(t for t in node.admission.promised if t not in running)
    _note(problems, f"{node.id}: room promised to tasks that no longer run", promised)
    if node.admission.promised_total != sum(node.admission.promised.values()):
        problems.append(f"{node.id}: promised bytes {node.admission.promised_total} differ "
                        f"from the promises' sum {sum(node.admission.promised.values())}")
    counted = sum(Allocator.block_size(s.nbytes) for s in node.store.objects.values()
                  if s.pins and s.offset is not None)
    if node.store.pinned_bytes != counted:
        problems.append(f"{node.id}: the store counts {node.store.pinned_bytes} pinned bytes, "
                        f"its objects {counted}")
    return problems


def _note(problems: list[str], what: str, found: list[str]) -> None:
    if found:
        problems.append(f"{what} ({len(found)}): {', '.join(found[:SHOWN])}")
