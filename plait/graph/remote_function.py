"""RemoteFunction: a function whose ``.remote(...)`` calls build the lazy graph.

The ``@plait.remote`` decorator that makes one lives in ``plait.graph.decorator``, above
both this module and ``plait.graph.actor`` (a class becomes an actor class instead).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
from collections import deque
from collections.abc import Callable
from typing import Any

import cloudpickle

from plait.errors import InvalidOptionError, SerializationError
from plait.graph import context
from plait.graph.options import GENERATOR_RETURNS, TaskOptions
from plait.graph.refs import ObjectRef
from plait.graph.signature import check_call, signature_of
from plait.graph.task import Task, encode_call


FITTING_KEPT = 64         # call shapes a function remembers as fitting its signature


class RemoteFunction:
    """A function whose ``.remote(...)`` calls return ObjectRefs and run later, elsewhere."""

    def __init__(self, function: Callable, options: TaskOptions,
                 _pickled: list[bytes] | None = None, _signature: Any = None,
                 _fitting: set[Any] | None = None) -> None:
        self._function = function
        self._options = with_generator_default(options, function)
        self._name = self._options.name or getattr(function, "__name__", "task")
        # [(function_id, bytes)] once pickled; shared by the copies .options() makes
        self._pickled = _pickled if _pickled is not None else []
        # what calls are checked against; made once, shared by the copies too
        self._signature = _signature if _signature is not None else signature_of(function)
        # shapes of calls (positional count, keyword names) that fit it: whether a call
        # binds depends on nothing else, and Signature.bind costs ~2 us a call
        self._fitting = _fitting if _fitting is not None else set()
        functools.update_wrapper(self, function)

    @property
    def name(self) -> str:
        return self._name

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
                              self._signature, self._fitting)

    def remote(self, *args: Any, **kwargs: Any) -> ObjectRef | list[ObjectRef]:
        """Add one call to the graph; returns its result ref(s) at once, runs nothing."""
        name = self._name
        shape = (len(args), *kwargs) if kwargs else len(args)
        if shape not in self._fitting:                      # here, not when it runs
            check_call(self._signature, name, args, kwargs)
            if len(self._fitting) < FITTING_KEPT:
                self._fitting.add(shape)
        runtime = context.runtime()
        if not self._pickled:   # now, as Ray does: later changes to globals are not seen
            self.pickled()
        payload, deps, nested = encode_call(name, args, kwargs, runtime.put, runtime.dumps)
        task = Task(runtime.new_id(name), self, self._options, payload, deps, nested)
        refs = [ObjectRef(object_id, task) for object_id in task.output_ids]
        runtime.created(task)           # counted first: another thread may submit it at once
        return returned(task.id, refs, self._options.num_returns)

    def _remote(self, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        return remote_with(self, args, kwargs, options)

    def pickled(self) -> tuple[str, bytes]:
        """``(function_id, bytes)``: pickled once, identified by name and content."""
        if not self._pickled:
            try:
                data = cloudpickle.dumps(_Traceable(self._function), protocol=5)
            except Exception as error:
                raise SerializationError(
                    f"remote function {self.name} cannot be serialised: {error}") from error
            check_function_size(self._function, len(data))
            digest = hashlib.sha1(data, usedforsecurity=False).hexdigest()[:10]
            self._pickled.append((f"{self.name}@{digest}", data))
        return self._pickled[0]

    def __repr__(self) -> str:
        return f"RemoteFunction({self.name})"


# A function (or actor class) pickles with what its code captures, and is sent to every
# node that runs it and kept there: past this many bytes it almost surely captured a large
# array by mistake. Ray's FUNCTION_SIZE_ERROR_THRESHOLD, its message and its ValueError.
FUNCTION_SIZE_LIMIT = 10**8


def check_function_size(target: Any, nbytes: int) -> None:
    """Refuse a function or class whose pickle is over FUNCTION_SIZE_LIMIT, at ``.remote()``."""
    if nbytes <= FUNCTION_SIZE_LIMIT:
        return
    if isinstance(target, type):
        kind, name = "actor", target.__name__
    else:
        kind = "remote function"
        name = f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', target)}"
    raise ValueError(f"The {kind} {name} is too large ({nbytes >> 20} MiB > "
                     f"FUNCTION_SIZE_LIMIT={FUNCTION_SIZE_LIMIT >> 20} MiB). Check that its "
                     f"definition is not implicitly capturing a large array or other object "
                     f"in scope. Tip: use plait.put() to put large objects in the object store "
                     f"and pass the ref.")


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


def remote_with(target: Any, args: Any, kwargs: Any, options: dict[str, Any]) -> Any:
    """Ray's older spelling of a call, ``x._remote(args=[...], kwargs={...}, **options)``,
    for remote functions, actor classes and actor methods: ``x.options(...).remote(...)``."""
    target = target.options(**options) if options else target
    return target.remote(*(args or ()), **(kwargs or {}))


def returned(task_id: str, refs: list[ObjectRef], num_returns: int | str | None) -> Any:
    """What ``.remote()`` gives back: the one ref, a list of them, a generator of them
    ("streaming"), or None for ``num_returns=0`` (the task runs for its side effects)."""
    if num_returns == "streaming":
        return ObjectRefGenerator(task_id, refs[0])
    if num_returns == 0:
        return None
    return refs[0] if len(refs) == 1 else refs


def is_generator_function(function: Any) -> bool:
    """Whether calling ``function`` makes a generator (``yield`` in a def or an async def)."""
    return inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function)


def with_generator_default(options: TaskOptions, function: Any) -> TaskOptions:
    """``num_returns`` not given on a generator function means "streaming" (Ray's default
    since 2.8); anything else keeps its options. "streaming" on a function that returns
    rather than yields is refused here, at the decorator or ``.options``, as Ray refuses
    it (its get would otherwise fail, far from the mistake), and so is "dynamic"."""
    generator = is_generator_function(function)
    if options.num_returns is None and generator:
        return dataclasses.replace(options, num_returns="streaming")
    if options.num_returns in GENERATOR_RETURNS and not generator:
        name = getattr(function, "__name__", "the function")
        raise InvalidOptionError(f"num_returns={options.num_returns!r} needs a generator "
                                 f"function (one that yields); {name} returns its result")
    return options


# How often ``async for`` over an ObjectRefGenerator looks for its next ref. The session's
# socket is not an asyncio one (nor, in a task, may any thread but the worker's own touch
# its sockets), so the coroutine asks without waiting and yields to the loop in between.
ASYNC_POLL_SECONDS = 0.002


class ObjectRefGenerator:
    """What ``.remote()`` of a generator task returns (``num_returns="streaming"``, the
    default for a generator function): an iterator of ObjectRefs, one per value the task
    yields, in order, each handed out as soon as the task has yielded it, while it runs.

    The caller's session puts each ref in ``_arrived`` as the head announces it, so the
    generator holds the values it has not handed out yet; ``next`` takes the oldest, or
    waits for the next. An exception the task raises after k values is value k, a ref
    whose get raises it, and the task ends there (``completed()`` is None). Once the task
    has ended and every ref was taken, a task that failed (its worker or node gone, a
    cancel, retries spent) gives one more ref, ``completed()``, whose get raises its
    error; then StopIteration, as in Ray. Dropped
    early, it frees the values it holds; the task runs on (as in Ray) and its later values
    are freed as they come. ``async for`` works too. It cannot be passed to a task.
    """

    def __init__(self, task_id: str, completion: ObjectRef) -> None:
        self.task_id = task_id
        self._completion = completion
        self._arrived: deque[ObjectRef] = deque()    # announced, not handed out yet
        self._received = 0                           # values announced so far
        self._raised = False                         # the failed end was handed out
        context.runtime().stream_opened(self)

    def __iter__(self) -> ObjectRefGenerator:
        return self

    def __next__(self) -> ObjectRef:
        ref = self._next(None)
        assert ref is not None                       # no timeout: it waited
        return ref

    def __aiter__(self) -> ObjectRefGenerator:
        return self

    async def __anext__(self) -> ObjectRef:
        import asyncio

        while True:
            try:
                ref = self._next(0)
            except StopIteration:
                raise StopAsyncIteration from None
            if ref is not None:
                return ref
            await asyncio.sleep(ASYNC_POLL_SECONDS)

    def _next(self, timeout: float | None) -> ObjectRef | None:
        """The next ref (None if none came within ``timeout``); StopIteration at the end."""
        runtime = context.runtime()
        if not runtime.await_yielded(self, timeout):
            return None
        if self._arrived:
            return self._arrived.popleft()
        if runtime.stream_failed(self) and not self._raised:
            self._raised = True
            return self._completion
        raise StopIteration

    def completed(self) -> ObjectRef:
        """A ref ready once the task has ended: None, or the error of a task that failed
        (not of an exception it raised: that is a value; Ray's name)."""
        return self._completion

    _generator_ref = property(completed)            # Ray's private name, used by its tests

    def next_ready(self) -> bool:
        """Whether ``next`` would return a ref at once (without waiting, or raising
        StopIteration)."""
        return context.runtime().await_yielded(self, 0) and not self.is_finished()

    def is_finished(self) -> bool:
        """Whether the task has ended and every ref, its error included, was taken."""
        runtime = context.runtime()
        runtime.await_yielded(self, 0)
        failed = runtime.stream_failed(self)
        return not self._arrived and failed is not None and (self._raised or not failed)

    def __reduce__(self):
        raise SerializationError(
            "an ObjectRefGenerator cannot be passed to a task or returned by one (as in "
            "Ray); pass the refs it gives, or make the generator task's call in that task")

    def __repr__(self) -> str:
        return f"ObjectRefGenerator({self.task_id})"
