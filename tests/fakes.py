"""Plain-data stand-ins for the pure tests (imported by them; no pytest fixtures live here).

``FakeRuntime`` implements the small protocol of ``plait.graph.context.Runtime`` with dicts,
so ObjectRefs and tasks can be built without a cluster. ``installed_runtime`` swaps it in
and always restores what was there before: ``context.runtime()`` would otherwise start a
real cluster the first time a test calls ``.remote``.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from plait.graph import context
from plait.graph.ids import IdGenerator
from plait.graph.refs import ObjectRef
from plait.store import serialization


class FakeRuntime:
    """A session without a cluster: puts go into a dict, ref counts into a Counter."""

    def __init__(self) -> None:
        self.ids = IdGenerator()
        self.values: dict[str, Any] = {}
        self.refs: Counter[str] = Counter()
        self.puts: list[str] = []
        self.created_tasks: list[Any] = []
        self.streams: dict[str, Any] = {}         # generator task -> its ObjectRefGenerator
        self.ended: dict[str, bool] = {}          # generator task -> whether it failed

    def incref(self, object_id: str, found: bool = True) -> None:
        self.refs[object_id] += 1

    def decref(self, object_id: str) -> None:
        self.refs[object_id] -= 1

    def put(self, value: Any) -> ObjectRef:
        object_id = self.new_id("put")
        self.values[object_id] = value
        self.puts.append(object_id)
        return ObjectRef(object_id)

    def get(self, refs: Any, timeout: float | None = None) -> Any:
        if isinstance(refs, (list, tuple)):
            return [self.values[ref.id] for ref in refs]
        return self.values[refs.id]

    def describe(self, object_id: str) -> str:
        return "ready" if object_id in self.values else "lazy"

    def new_id(self, stem: str) -> str:
        return self.ids.new(stem)

    def dumps(self, value: Any) -> bytes:
        return serialization.dumps(value)

    def created(self, task: Any) -> None:
        self.created_tasks.append(task.id)

    def stream_opened(self, generator: Any) -> None:
        self.streams[generator.task_id] = generator

    def await_yielded(self, generator: Any, timeout: float | None) -> bool:
        return bool(generator._arrived) or generator.task_id in self.ended

    def stream_failed(self, generator: Any) -> bool | None:
        return self.ended.get(generator.task_id)

    def yielded(self, task_id: str, object_id: str) -> None:
        """The head announced a value of the task's stream (as Session.take_yielded)."""
        generator = self.streams[task_id]
        generator._received += 1
        generator._arrived.append(ObjectRef(object_id))


@contextmanager
def installed_runtime() -> Iterator[FakeRuntime]:
    """Make a FakeRuntime the active session for the block, then restore the previous one."""
    previous = context.active()
    runtime = FakeRuntime()
    context.install(runtime)
    try:
        yield runtime
    finally:
        gc.collect()   # refs dying later must not report to whichever session comes next
        context.install(previous)
