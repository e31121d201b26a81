"""A node's live state for the dashboard (``NodeSnapshot``): its workers, store, CPU, RSS.

What flows in: the node's own tables and /proc (read only when the head asks, about once
a second while a dashboard page is open). What flows out: one plain NodeSnapshot. Reading
/proc/PID/stat and /statm costs ~20 us per process here, so a node of 8 workers answers in
well under a millisecond.
"""

from __future__ import annotations

import os
from typing import Protocol

from plait.executor.node.tasks import TaskTable
from plait.executor.node.workers import Processes, WorkerHandle
from plait.executor.wire import protocol as p
from plait.store.store import ObjectStore

_TICKS = os.sysconf("SC_CLK_TCK")


class Observed(Protocol):
    """What a snapshot reads of a Node (named here rather than imported: node.py calls us)."""

    id: str
    store: ObjectStore
    workers: dict[bytes, WorkerHandle]
    table: TaskTable
    processes: Processes


def node_snapshot(node: Observed, request: int) -> p.NodeSnapshot:
    """The node's NodeSnapshot: each worker's state and tasks, store summary, CPU and RSS."""
    workers, running = [], []
    for worker in sorted(node.workers.values(), key=lambda w: w.index):
        names = []
        for task_id in worker.inflight:
            state = node.table.tasks.get(task_id)
            if state is not None:
                names.append(state.spec.function_name)
                running.append((task_id, state.spec.function_name))
        workers.append(p.WorkerState(worker.index, worker.pid, worker_state(worker),
                                     worker.extra, tuple(names), node.processes.rss(worker)))
    pids = [os.getpid(), *(w.pid for w in node.workers.values())]
    return p.NodeSnapshot(request, node.id, node.store.summary(), tuple(workers),
                          tuple(running), sum(map(cpu_seconds, pids)),
                          rss_of(os.getpid()) + sum(w.rss for w in workers),
                          tuple(sorted(node.table.retried.items())))


def worker_state(worker: WorkerHandle) -> str:
    """One word for what a worker is doing, as the Cluster page shows it."""
    if not worker.ready:
        return "starting"
    if worker.actor:
        return "actor"
    if worker.blocked:
        return "blocked"
    return "busy" if worker.inflight else "idle"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


def rss_of(pid: int) -> int:
    """Resident bytes of a process (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0
