"""RemoteFunction: a function whose ``.remote(...)`` calls build the lazy graph.

The ``@plait.remote`` decorator that makes one lives in ``plait.graph.decorator``, above
both this module and ``plait.graph.actor`` (a class becomes an actor class instead).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Any

import cloudpickle

from plait.errors import SerializationError
from plait.graph import context
from plait.graph.options import TaskOptions
from plait.graph.refs import ObjectRef
from plait.graph.signature import check_call, signature_of
from plait.graph.task import Task, encode_call


class RemoteFunction:
    """A function whose ``.remote(...)`` calls return ObjectRefs and run later, elsewhere."""

    def __init__(self, function: Callable, options: TaskOptions,
                 _pickled: list[bytes] | None = None, _signature: Any = None) -> None:
        self._function = function
        self._options = options
        # [(function_id, bytes)] once pickled; shared by the copies .options() makes
        self._pickled = _pickled if _pickled is not None else []
        # what calls are checked against; made once, shared by the copies too
        self._signature = _signature if _signature is not None else signature_of(function)
        functools.update_wrapper(self, function)

    @property
    def name(self) -> str:
        return self._options.name or getattr(self._function, "__name__", "task")

    @property
    def default_options(self) -> TaskOptions:
        return self._options

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"remote function {self.name}() cannot be called directly; use "
            f"{self.name}.remote(...) to create a task, then plait.get(ref) for its result")

    def options(self, **changes: Any) -> RemoteFunction:
        """A copy of this function whose calls use ``changes`` (checked now)."""
        return RemoteFunction(self._function, self._options.merged(**changes), self._pickled,
                              self._signature)

    def remote(self, *args: Any, **kwargs: Any) -> ObjectRef | list[ObjectRef]:
        """Add one call to the graph; returns its result ref(s) at once, runs nothing."""
        check_call(self._signature, self.name, args, kwargs)    # here, not when it runs
        runtime = context.runtime()
        self.pickled()          # now, as Ray does: later changes to globals are not seen
        payload, deps, nested = encode_call(self.name, args, kwargs, runtime.put, runtime.dumps)
        task = Task(runtime.new_id(self.name), self, self._options, payload, deps, nested)
        runtime.created(task)
        refs = [ObjectRef(object_id, task) for object_id in task.output_ids]
        if self._options.num_returns == "streaming":
            return ObjectRefGenerator(refs[0])
        return refs[0] if len(refs) == 1 else refs

    def pickled(self) -> tuple[str, bytes]:
        """``(function_id, bytes)``: pickled once, identified by name and content."""
        if not self._pickled:
            try:
                data = cloudpickle.dumps(_Traceable(self._function), protocol=5)
            except Exception as error:
                raise SerializationError(
                    f"remote function {self.name} cannot be serialised: {error}") from error
            digest = hashlib.sha1(data, usedforsecurity=False).hexdigest()[:10]
            self._pickled.append((f"{self.name}@{digest}", data))
        return self._pickled[0]

    def __repr__(self) -> str:
        return f"RemoteFunction({self.name})"


class _Traceable:
    """A function or class pickled with the file it came from: cloudpickle names the code of
    functions it pickles by value ``<dynamic-code>``, so a task's traceback would not say
    where the user's code is nor show its lines. Unpickled, it is the function or class
    itself, its code objects named after their file again."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def __reduce__(self):
        code = getattr(self.target, "__code__", None)
        if code is None:                        # a class: the file of its first method
            code = next((m.__code__ for m in vars(self.target).values()
                         if hasattr(m, "__code__")), None)
        return (_named_after_its_file, (self.target, code.co_filename if code else ""))


def _named_after_its_file(target: Any, filename: str) -> Any:
    if not filename or filename.startswith("<"):
        return target
    functions = [target] if hasattr(target, "__code__") else [
        m for m in vars(target).values() if hasattr(m, "__code__")]
    helpers = [g for f in functions for g in getattr(f, "__globals__", {}).values()
               if getattr(getattr(g, "__code__", None), "co_filename", "") == "<dynamic-code>"]
    for function in functions + helpers:         # helpers came by value from the same file
        function.__code__ = _renamed(function.__code__, filename)
    return target


def _renamed(code: Any, filename: str) -> Any:
    """``code`` and the code objects nested in it (inner functions, comprehensions)."""
    consts = tuple(_renamed(c, filename) if isinstance(c, type(code)) else c
                   for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


class ObjectRefGenerator:
    """What ``.remote()`` of a ``num_returns="streaming"`` task returns: an iterator of
    ObjectRefs, one per value the task yielded, in order. The task runs to its end before
    the first ref is handed out (its values are stored as it yields them)."""

    def __init__(self, refs_of_results: ObjectRef) -> None:
        self._list = refs_of_results
        self._refs: Any = None

    def __iter__(self) -> ObjectRefGenerator:
        return self

    def __next__(self) -> ObjectRef:
        if self._refs is None:
            self._refs = iter(context.runtime().get(self._list))
        return next(self._refs)

    def completed(self) -> ObjectRef:
        """The ref of the list of all the refs (Ray's name for the same)."""
        return self._list
