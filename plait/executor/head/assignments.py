"""Assignments: the head's unfinished tasks, indexed by node and by the objects they make.

Besides "what is task t", the head asks three things of its unfinished tasks: which run on
node n (n died: retry them; validate_state asks n about them), which task makes object o
(a cancel names objects), and which live node has the fewest per worker (where a task goes
when its node is gone). Answered by a scan, each costs O(unfinished tasks): a cancel of
100k pending objects was 10^10 steps, and a node lost with 100k tasks in flight on a
1,000-node cluster picked each task's new node by a scan of all nodes. So the answers are
kept as tasks come and go: ``Assignments`` is the dict of task -> spec that keeps its own
indexes on every set and delete, and tells ``NodeLoads`` whose count changed.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from plait.executor.wire import protocol as p


class Assignments(dict[str, p.TaskSpec]):
    """Unfinished task -> its spec (a dict), with ``on(node)``, ``count(node)`` and
    ``producer`` (object -> the task making it) kept up to date; ``changed(node)`` is
    called after a node's count changes. Only item assignment, ``del`` and ``pop`` may
    change it (the other dict mutators would bypass the indexes, and are refused)."""

    def __init__(self, changed: Callable[[str], None] = lambda node: None) -> None:
        super().__init__()
        self.by_node: dict[str, dict[str, None]] = {}
        self.producer: dict[str, str] = {}
        self.changed = changed

    def __setitem__(self, task_id: str, spec: p.TaskSpec) -> None:
        old = self.get(task_id)
        if old is not None:
            self._forget(task_id, old)
        super().__setitem__(task_id, spec)
        self.by_node.setdefault(spec.node, {})[task_id] = None
        for oid in spec.outputs:
            self.producer[oid] = task_id
        self.changed(spec.node)

    def __delitem__(self, task_id: str) -> None:
        spec = self[task_id]
        super().__delitem__(task_id)
        self._forget(task_id, spec)

    _MISSING = object()

    def pop(self, task_id: str, default=_MISSING):        # type: ignore[override]
        if task_id not in self:
            if default is self._MISSING:
                raise KeyError(task_id)
            return default
        spec = self[task_id]
        del self[task_id]
        return spec

    def _forget(self, task_id: str, spec: p.TaskSpec) -> None:
        on = self.by_node[spec.node]
        del on[task_id]
        if not on:
            del self.by_node[spec.node]
        for oid in spec.outputs:
            if self.producer.get(oid) == task_id:
                del self.producer[oid]
        self.changed(spec.node)

    def _refused(self, *args, **kwargs):
        raise TypeError("Assignments change by item assignment, del and pop only")

    setdefault = update = popitem = clear = __ior__ = _refused      # type: ignore[assignment]

    def on(self, node: str) -> list[str]:
        """The unfinished tasks assigned to ``node``, oldest first."""
        return list(self.by_node.get(node, ()))

    def count(self, node: str) -> int:
        return len(self.by_node.get(node, ()))

    def problems(self) -> list[str]:
        """Where the indexes disagree with the tasks (validate_state)."""
        wrong = [f"{t} indexed on {n}" for n, tasks in self.by_node.items() for t in tasks
                 if t not in self or self[t].node != n]
        wrong += [f"{t} not indexed" for t, s in self.items() if t not in self.by_node.get(
            s.node, ())]
        wrong += [f"{o} made by {t}" for o, t in self.producer.items()
                  if t not in self or o not in self[t].outputs]
        return wrong


class NodeLoads:
    """The node with the fewest unfinished tasks per worker (ties: the earlier node), of
    the nodes that run tasks: a heap with an entry pushed at every change of a node's count,
    stale entries dropped when they reach the top, rebuilt when they pile up.

    >>> tasks = Assignments()
    >>> loads = NodeLoads(tasks.count)
    >>> tasks.changed = loads.changed
    >>> loads.reset({"node-0": 2, "node-1": 1})
    >>> tasks["t1"] = p.TaskSpec("t1", "f@1", "f", b"", (), (), ("t1",), 3, "node-0")
    >>> loads.least(), loads.reset({"node-1": 1}), loads.least()
    ('node-1', None, 'node-1')
    """

    def __init__(self, count: Callable[[str], int]) -> None:
        self.count = count
        self.workers: dict[str, int] = {}
        self.rank: dict[str, int] = {}
        self.heap: list[tuple[float, int, str]] = []

    def reset(self, workers: dict[str, int]) -> None:
        """The nodes that run tasks, in the head's order, and their workers."""
        self.workers = dict(workers)
        self.rank = {node: i for i, node in enumerate(workers)}
        self.heap = [self.entry(node) for node in workers]
        heapq.heapify(self.heap)

    def entry(self, node: str) -> tuple[float, int, str]:
        return (self.count(node) / self.workers[node], self.rank[node], node)

    def changed(self, node: str) -> None:
        if node in self.workers:
            heapq.heappush(self.heap, self.entry(node))
            if len(self.heap) > 4 * len(self.workers) + 64:
                self.reset(self.workers)           # bounded: a long run's heap stays small

    def least(self) -> str | None:
        heap = self.heap
        while heap and (heap[0][2] not in self.workers or heap[0] != self.entry(heap[0][2])):
            heapq.heappop(heap)
        return heap[0][2] if heap else None
