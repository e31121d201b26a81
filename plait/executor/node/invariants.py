"""Invariants of one node's tables, checked on demand (dask's validate_state).

Why and how problems are reported: plait.executor.wire.checks.

The head checks its own (plait.executor.head.invariants). A node:
  - every task it holds is ready, with a worker, or waiting for inputs it asked the head
    for or is pulling (a task riding behind its producer is with a worker); every task a
    worker runs is one it holds;
  - no worker slot is held for a task that no longer runs;
  - no pin outlives its holder: an object's pins are those of the tasks reading it, the
    transfers serving it, the clients that pinned it and its writer.

The Node calls these checks, so they read it through ``NodeTables``, the part of it they
need, rather than importing it.
"""

from __future__ import annotations

from typing import Protocol

from plait.executor.node.admission import Admission
from plait.executor.node.resources import Ledger
from plait.executor.node.tasks import TaskTable
from plait.executor.node.transfers import Transfers
from plait.executor.node.workers import WorkerHandle
from plait.executor.wire import protocol as p
from plait.executor.wire.checks import note_broken
from plait.store.allocator import Allocator
from plait.store.store import ObjectStore

class NodeTables(Protocol):
    """What the checks read of the Node (node.py)."""

    id: str
    store: ObjectStore
    workers: dict[bytes, WorkerHandle]
    table: TaskTable
    admission: Admission
    transfers: Transfers
    values: dict[str, p.ObjectValue]
    asked: set[str]
    held_slots: dict[str, float]
    ledger: Ledger
    resource_waiting: list[str]

    def pin_holders(self, object_id: str) -> int: ...


def node_problems(node: NodeTables) -> list[str]:
    """Broken invariants of one node's tables (empty when all hold)."""
    problems = []
    running = {t for w in node.workers.values() for t in w.inflight}
    ready = node.table.ready.ids() | set(node.table.actor_ready) | set(node.admission.held) \
        | set(node.resource_waiting)
    pulling = set(node.transfers.pulls)
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
    note_broken(problems, f"{node.id}: tasks that nothing will start", idle)
    unknown = sorted(t for w in node.workers.values() if not w.actor for t in w.inflight
                     if t not in node.table.tasks)
    note_broken(problems, f"{node.id}: workers running tasks the node does not hold", unknown)
    slots = sorted(t for t in node.held_slots if t not in running and not t.startswith("actor "))
    note_broken(problems, f"{node.id}: slots held for tasks that no longer run", slots)
    held = sorted(t for t in node.ledger.held if t not in running and not t.startswith("actor "))
    note_broken(problems, f"{node.id}: resources held for tasks that no longer run", held)
    pins = sorted(f"{oid} has {stored.pins}, holders {held}"
                  for oid, stored in node.store.objects.items()
                  if stored.pins != (held := node.pin_holders(oid)))
    note_broken(problems, f"{node.id}: pins that differ from their holders", pins)
    promised = sorted(t for t in node.admission.promised if t not in running)
    note_broken(problems, f"{node.id}: room promised to tasks that no longer run", promised)
    if node.admission.promised_total != sum(node.admission.promised.values()):
        problems.append(f"{node.id}: promised bytes {node.admission.promised_total} differ "
                        f"from the promises' sum {sum(node.admission.promised.values())}")
    counted = sum(Allocator.block_size(s.nbytes) for s in node.store.objects.values()
                  if s.pins and s.offset is not None)
    if node.store.pinned_bytes != counted:
        problems.append(f"{node.id}: the store counts {node.store.pinned_bytes} pinned bytes, "
                        f"its objects {counted}")
    return problems
