"""The node's task table: which submitted tasks wait for what, which are ready, retries.

A task waits for its top-level arguments (``TaskSpec.deps``) only. Refs nested in its
arguments do not hold it back, as in Ray: it starts with the values of those already here
and ``plait.get``s the others itself, so a task may wait on, cancel or hand on a ref whose
producer waits on something the task does first, and an actor call whose nested refs are
pending does not hold back the calls behind it.

Plain state, no sockets: the node loop feeds it events (tasks submitted, objects ready,
results, worker deaths) and acts on what it returns.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from plait.executor.wire import protocol as p


class ReadyQueue:
    """Ready tasks, longest remaining critical path first; retries go to the very front.

    >>> q = ReadyQueue()
    >>> q.push("short", 0.001); q.push("long", 0.5); q.push_front("retry")
    >>> [q.popleft() for _ in range(len(q))]
    ['retry', 'long', 'short']
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str]] = []
        self._count = itertools.count()

    def push(self, task_id: str, priority: float) -> None:
        heapq.heappush(self._heap, (-priority, next(self._count), task_id))

    def push_front(self, task_id: str) -> None:
        heapq.heappush(self._heap, (-math.inf, next(self._count), task_id))

    def popleft(self) -> str:
        return heapq.heappop(self._heap)[2]

    def ids(self) -> set[str]:
        """Every task id in the queue (stale entries of revoked tasks included)."""
        return {task_id for _, _, task_id in self._heap}

    def __getitem__(self, index: int) -> str:
        assert index == 0, "only the head of the queue can be looked at"
        return self._heap[0][2]

    def __len__(self) -> int:
        return len(self._heap)


@dataclass
class TaskState:
    spec: p.TaskSpec
    waiting: set[str]
    attempt: int = 0
    crashes: list[str] = field(default_factory=list)
    raised: int = 0                # retries after an exception it may be retried on
    done: bool = False
    riding: bool = False           # sent behind its producer in a fused chain
    room_reruns: int = 0           # times run again because its result found no room
    cancel_asked: bool = False     # interrupted by plait.cancel: never retried


class TaskTable:
    """Submitted tasks until they finish; ``ready`` holds those whose inputs all exist."""

    def __init__(self) -> None:
        self.tasks: dict[str, TaskState] = {}
        self.dependents: dict[str, list[str]] = {}
        self.ready = ReadyQueue()
        self.followers: dict[str, str] = {}      # task -> the task fused behind it
        self.actor_ready: list[str] = []         # ready tasks of actors (not for the pool)
        self.retried: Counter[str] = Counter()   # function -> attempts after the first

    def add(self, spec: p.TaskSpec, is_ready: Callable[[str], bool]) -> None:
        if spec.id in self.tasks:                 # resubmitted by mistake: first wins
            return
        waiting = {oid for oid in spec.deps if not is_ready(oid)}
        self.tasks[spec.id] = TaskState(spec, waiting)
        if spec.follows in self.tasks:           # (a producer already gone has no chain)
            self.followers[spec.follows] = spec.id
        for oid in waiting:
            self.dependents.setdefault(oid, []).append(spec.id)
        if not waiting:
            self.push(spec.id, spec, front=False)

    def push(self, task_id: str, spec: p.TaskSpec, front: bool) -> None:
        """Make a task ready: for the pool's queue, or for its actor (which keeps order)."""
        if spec.actor:
            self.actor_ready.append(task_id)
        elif front:
            self.ready.push_front(task_id)
        else:
            self.ready.push(task_id, spec.priority)

    def wait_for(self, task_id: str, object_ids: list[str]) -> None:
        """A task taken off the ready queue waits again for these objects (lost copies)."""
        state = self.tasks[task_id]
        for oid in object_ids:
            if oid not in state.waiting:
                state.waiting.add(oid)
                self.dependents.setdefault(oid, []).append(task_id)

    def object_ready(self, object_id: str, failed: bool) -> list[str]:
        """Mark an object as existing; returns tasks that must now fail with it: a task
        cannot run without a top-level argument's value (a nested ref's failure is left
        for the task's own ``get`` to raise)."""
        doomed = []
        for task_id in self.dependents.pop(object_id, ()):
            state = self.tasks.get(task_id)
            if state is None or state.done or object_id not in state.waiting:
                continue                  # gone, or listed twice and already seen to
            state.waiting.discard(object_id)
            if state.riding:
                continue                  # already with a worker, behind its producer
            if failed:
                doomed.append(task_id)
            elif not state.waiting:
                self.push(task_id, state.spec, front=False)
        return doomed

    def finish(self, task_id: str, attempt: int) -> TaskState | None:
        """Accept a result: the first for the current attempt wins, later ones are ignored."""
        state = self.tasks.get(task_id)
        if state is None or state.done or state.attempt != attempt:
            return None
        state.done = True
        self.remove(task_id)
        return state

    def fail(self, task_id: str) -> TaskState | None:
        state = self.remove(task_id)
        if state is not None:
            state.done = True
        return state

    def remove(self, task_id: str) -> TaskState | None:
        """Forget a task that leaves this node (finished, failed, cancelled, moved): stale
        queue entries are skipped, and no table keeps a line for it."""
        self.followers.pop(task_id, None)
        return self.tasks.pop(task_id, None)

    def wanted(self, object_id: str) -> bool:
        """Whether a task here still waits for the object (else there is no need to pull it)."""
        return any(task_id in self.tasks for task_id in self.dependents.get(object_id, ()))

    def chain_after(self, task_id: str) -> list[str]:
        """Tasks fused behind ``task_id`` that wait for nothing but their chain: they ride
        along in the same message to the same worker, each marked as riding. One that
        reads the chain only through nested refs does not wait for it, so it runs on its
        own rather than behind it."""
        chain, producer = [], self.tasks[task_id]
        made = set(producer.spec.outputs)            # what the chain so far will make
        while (follower := self.followers.get(producer.spec.id)) is not None:
            state = self.tasks.get(follower)
            if state is None or state.done or state.riding:
                break
            if not state.waiting <= made or made.isdisjoint(state.spec.deps):
                break
            state.riding = True
            chain.append(follower)
            made.update(state.spec.outputs)
            producer = state
        return chain

    def crashed(self, task_id: str, attempt: int, how: str) -> bool:
        """A worker died running the task: True to retry it, False when out of retries."""
        state = self.tasks.get(task_id)
        if state is None or state.done or state.attempt != attempt:
            return False
        state.crashes.append(how)
        limit = state.spec.max_retries
        if limit >= 0 and len(state.crashes) + state.raised > limit:
            return False
        self.again(task_id, state)
        return True

    def retry(self, task_id: str, attempt: int) -> bool:
        """A user exception the task may be retried on: True if it runs again. Crashes
        and exceptions share one budget of retries, ``max_retries``, as in Ray."""
        state = self.tasks.get(task_id)
        if state is None or state.done or state.attempt != attempt:
            return False
        limit = state.spec.max_retries
        if 0 <= limit <= len(state.crashes) + state.raised:
            return False
        state.raised += 1
        self.again(task_id, state)
        return True

    def again(self, task_id: str, state: TaskState) -> None:
        """A new attempt, first in the queue. A task that rode behind its producer is on its
        own now: one still marked riding would never be sent again (the chaos soak's
        consumer that never finished: its fused chain's worker died while running it)."""
        state.attempt += 1
        state.riding = False
        self.retried[state.spec.function_name] += 1
        self.push(task_id, state.spec, front=True)

    def requeue(self, task_id: str, attempt: int) -> None:
        """Put back a task handed to a worker that will not finish it there (the worker
        died before starting it, it was taken back, or its result was refused room): a new
        attempt, ready again, or waiting for a producer that has not finished either."""
        state = self.tasks.get(task_id)
        if state is not None and not state.done and state.attempt == attempt:
            state.attempt += 1
            state.riding = False
            if not state.waiting:
                self.push(task_id, state.spec, front=True)
            for oid in state.waiting:             # its producer has not finished either
                listed = self.dependents.setdefault(oid, [])
                if task_id not in listed:         # a rider is listed already
                    listed.append(task_id)
