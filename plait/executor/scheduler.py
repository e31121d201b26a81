"""The node's task table: which submitted tasks wait for what, which are ready, retries.

Plain state, no sockets: the node loop feeds it events (tasks submitted, objects ready,
results, worker deaths) and acts on what it returns.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from plait.executor import protocol as p


@dataclass
class TaskState:
    spec: p.TaskSpec
    waiting: set[str]
    attempt: int = 0
    crashes: list[str] = field(default_factory=list)
    done: bool = False
    riding: bool = False           # sent behind its producer in a fused chain

class TaskTable:
    """Submitted tasks until they finish; ``ready`` holds those whose inputs all exist."""

    def __init__(self) -> None:
        self.tasks: dict[str, TaskState] = {}
        self.dependents: dict[str, list[str]] = {}
        self.ready: deque[str] = deque()
        self.followers: dict[str, str] = {}      # task -> the task fused behind it

    def add(self, spec: p.TaskSpec, is_ready: Callable[[str], bool]) -> None:
        if spec.id in self.tasks:                 # resubmitted by mistake: first wins
            return
        reads = set(spec.deps) | set(spec.nested)
        waiting = {oid for oid in reads if not is_ready(oid)}
        self.tasks[spec.id] = TaskState(spec, waiting)
        if spec.follows:
            self.followers[spec.follows] = spec.id
        for oid in waiting:
            self.dependents.setdefault(oid, []).append(spec.id)
        if not waiting:
            self.ready.append(spec.id)

    def object_ready(self, object_id: str, failed: bool) -> list[str]:
        """Mark an object as existing; returns tasks that must now fail with it.

        A task fails with its input's error when that input is a top-level argument (it
        cannot run without the value); a nested ref's failure is left for the task's own
        ``get`` to raise.
        """
        doomed = []
        for task_id in self.dependents.pop(object_id, ()):
            state = self.tasks.get(task_id)
            if state is None or state.done:
                continue
            state.waiting.discard(object_id)
            if state.riding:
                continue                  # already with a worker, behind its producer
            if failed and object_id in state.spec.deps:
                doomed.append(task_id)
            elif not state.waiting:
                self.ready.append(task_id)
        return doomed

    def finish(self, task_id: str, attempt: int) -> TaskState | None:
        """Accept a result: the first for the current attempt wins, later ones are ignored."""
        state = self.tasks.get(task_id)
        if state is None or state.done or state.attempt != attempt:
            return None
        state.done = True
        del self.tasks[task_id]
        return state

    def fail(self, task_id: str) -> TaskState | None:
        state = self.tasks.pop(task_id, None)
        if state is not None:
            state.done = True
        return state

    def chain_after(self, task_id: str) -> list[str]:
        """Tasks fused behind ``task_id`` that wait for nothing but their chain: they ride
        along in the same message to the same worker, each marked as riding."""
        chain, producer = [], self.tasks[task_id]
        while (follower := self.followers.get(producer.spec.id)) is not None:
            state = self.tasks.get(follower)
            if state is None or state.done or state.riding:
                break
            if not state.waiting <= set(producer.spec.outputs) | _outputs(self, chain):
                break
            state.riding = True
            chain.append(follower)
            producer = state
        return chain

    def crashed(self, task_id: str, attempt: int, how: str) -> bool:
        """A worker died running the task: True to retry it, False when out of retries."""
        state = self.tasks.get(task_id)
        if state is None or state.done or state.attempt != attempt:
            return False
        state.crashes.append(how)
        limit = state.spec.max_retries
        if limit >= 0 and len(state.crashes) > limit:
            return False
        state.attempt += 1
        self.ready.appendleft(task_id)
        return True

    def requeue(self, task_id: str, attempt: int) -> None:
        """Put back a task that was sent to a worker that died before starting it."""
        state = self.tasks.get(task_id)
        if state is not None and not state.done and state.attempt == attempt:
            state.attempt += 1
            state.riding = False
            if not state.waiting:
                self.ready.appendleft(task_id)
            for oid in state.waiting:             # its producer has not finished either
                self.dependents.setdefault(oid, []).append(task_id)


def _outputs(table: TaskTable, task_ids: list[str]) -> set[str]:
    return {oid for tid in task_ids for oid in table.tasks[tid].spec.outputs}
