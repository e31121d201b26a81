"""ObjectRef: the handle of an object, ready (stored somewhere) or pending (its task has not run).

A ref to a task's result keeps that task alive (``ref.task``), and the task keeps the refs of
its arguments alive, so the lazy graph is simply the Python objects reachable from the refs
the user holds: drop the refs and the unrequested graph is garbage-collected with them.

Every live ObjectRef counts towards its object's lifetime: it reports its birth and death to
the running session, which frees the object's memory when the count reaches zero. A ref
made for a task the session creates is counted when the task is submitted; any other (one
unpickled from an argument or a result, or a put) is *found*, and the session tells the
head it holds the object.

A ref only carries its task (``plait.graph.task``, which sits above this module and builds
refs), so the task is typed ``Any`` here rather than imported back.
"""

from __future__ import annotations

import threading
from typing import Any

from plait.graph import context
from plait.graph.ids import task_of


_pickling = threading.local()


class collecting_refs:
    """``with collecting_refs() as found:`` lists every ObjectRef pickled inside the block.

    A task's arguments may hold refs deep inside lists or dicts; the submitter must know
    them so the tasks producing them run too, and so the task waits for them.
    """

    def __enter__(self) -> list[ObjectRef]:
        self._outer = getattr(_pickling, "found", None)
        _pickling.found = []
        return _pickling.found

    def __exit__(self, *exc: object) -> None:
        _pickling.found = self._outer


def unsubmitted(refs: list[ObjectRef]) -> list[ObjectRef]:
    """Those of ``refs`` whose calls were not submitted yet (an actor's creation too). A
    value stored with them inside (a put, a result) must submit them first: the head
    holds what a value contains only if it knows of it, and a call dropped by every
    other holder before its submission would never run."""
    return [ref for ref in refs if ref.task is not None and not ref.task.submitted]


class TaskID(context.Id):
    """The id of the task that made an object (``ref.task_id()``): Ray's TaskID is an
    object read with ``.hex()``; this is plait's readable id, answering Ray's methods."""

    __slots__ = ()

    def binary(self) -> bytes:
        return self.encode()

    def __repr__(self) -> str:
        return f"TaskID({self})"


class ObjectRef:
    """A handle to an immutable object; pass it to tasks or ``plait.get`` it."""

    __slots__ = ("id", "task", "owner", "__weakref__")

    def __init__(self, object_id: str, task: Any = None) -> None:   # task: a Task or None
        self.id = object_id
        self.task = task
        self.owner = context.active()      # the session this ref counts in (ids are per session)
        if self.owner is not None:
            self.owner.incref(object_id, task is None)

    def __del__(self) -> None:
        owner = self.owner
        if owner is not None and owner is context.active():
            try:
                owner.decref(self.id)
            except Exception:  # interpreter shutdown: the session is already gone
                pass

    @classmethod
    def nil(cls) -> ObjectRef:
        """Ray's ref to no object (``is_nil()``), counted in no session."""
        ref = cls.__new__(cls)
        ref.id, ref.task, ref.owner = "", None, None
        return ref

    def is_nil(self) -> bool:
        return not self.id

    def hex(self) -> str:
        """The object's id (Ray's name for it; plait's ids are readable, not hex)."""
        return self.id

    def binary(self) -> bytes:
        """The object's id as bytes (Ray's, to key a dict or store it; ``hex`` as text)."""
        return self.id.encode()

    def task_id(self) -> TaskID:
        """The task that made the object (Ray's): every result of one task answers the
        same; a put answers for the process that put it (``ids.task_of``)."""
        return TaskID(self.task.id if self.task is not None else task_of(self.id))

    def compute(self, timeout: float | None = None) -> Any:
        """Run what this ref needs and return its value (Dask's ``.compute()``)."""
        return context.runtime().get(self, timeout=timeout)

    def visualize(self, filename: str | None = None) -> str:
        """Picture the plan that would compute this ref (``.svg``/``.html``/``.dot``)."""
        return context.runtime().visualize([self], filename)

    def __reduce__(self):
        # Only the id travels: the task and its arguments stay with the submitter.
        found = getattr(_pickling, "found", None)
        if found is not None:
            found.append(self)
        return (ObjectRef, (self.id,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        runtime = context.active()
        status = runtime.describe(self.id) if runtime is not None else "no session"
        return f"ObjectRef({self.id}, {status})"

    def _repr_html_(self) -> str:
        return f"<code>{self!r}</code>"

    # -- in asyncio code (as Ray's ObjectRef) ---------------------------------------------

    def future(self) -> Any:
        """A ``concurrent.futures.Future`` of the value (its exception: the get's error)."""
        return context.runtime().future(self)

    def as_future(self) -> Any:
        """An ``asyncio.Future`` of the value, on the running (or current) event loop."""
        import asyncio

        return asyncio.wrap_future(self.future())

    def __await__(self):
        """``await ref`` in a coroutine: its value, without blocking the event loop."""
        return self.as_future().__await__()

    def _on_completed(self, callback: Any) -> None:
        """Call ``callback(value)`` (or with the exception) once the object is known (Ray's
        private hook, used by some libraries)."""
        def done(future: Any) -> None:
            error = future.exception()
            callback(error if error is not None else future.result())

        self.future().add_done_callback(done)
