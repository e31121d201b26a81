"""Task: one call of a remote function, a vertex of the lazy graph.

A call's arguments are pickled when ``.remote()`` is called, so an argument that cannot be
serialised fails at once, naming itself, before anything is sent. ObjectRefs passed as
top-level arguments become placeholders (``ArgRef``) and are listed as the task's
dependencies: the worker replaces each placeholder with the object's value before the call.
Refs nested deeper travel as refs, as in Ray.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any, Protocol

import cloudpickle

from plait.errors import ObjectLostError, SerializationError, unpicklable_part
from plait.graph import context
from plait.graph.ids import output_id
from plait.graph.options import TaskOptions, result_count
from plait.graph.refs import ObjectRef, collecting_refs

# Top-level arguments bigger than this are put into the store once instead of travelling
# inside every message that carries the call (Ray's max_direct_call_object_size, 100 KiB).
LARGE_ARGUMENT_BYTES = 100 * 1024
# A call without arguments, as ``encode_call`` writes it: an engine may pass it as no
# arguments at all (the worker decodes ``NO_ARGUMENTS`` itself).
NO_ARGUMENTS = pickle.dumps(((), {}), protocol=5)


class Callee(Protocol):
    """What a task needs of the function it calls: a ``RemoteFunction``, which builds tasks
    and so sits above this module (an actor's method call has none: ``None``)."""

    @property
    def name(self) -> str: ...

    def pickled(self) -> tuple[str, bytes]: ...


class ArgRef:
    """Placeholder for the ``index``-th dependency inside a pickled call."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self):
        return (ArgRef, (self.index,))


class Task:
    """One lazy call: function, pickled arguments, dependencies and result ids."""

    __slots__ = ("id", "function", "options", "payload", "deps", "nested", "output_ids",
                 "submitted", "actor", "method", "detached", "named", "if_exists", "concurrency")

    def __init__(self, task_id: str, function: Callee | None, options: TaskOptions,
                 payload: bytes, deps: tuple[ObjectRef, ...],
                 nested: tuple[ObjectRef, ...] = (), actor: str = "", method: str = "") -> None:
        self.id = task_id
        self.function = function
        self.options = options
        self.payload = payload
        self.deps = deps
        self.nested = nested
        count = result_count(options.num_returns)
        self.output_ids = (task_id,) if count == 1 else tuple(
            [output_id(task_id, i, count) for i in range(count)])
        self.submitted = False
        self.actor = actor           # the actor it runs on ("" for a plain task)
        self.method = method         # "__init__" creates the actor; else the method called
        self.detached = False        # an actor that outlives its handles (until shutdown)
        self.named = ("", b"")       # a named actor's (name, pickled handle), for get_actor
        self.if_exists = False       # ... made with get_if_exists (the head resolves a race)
        self.concurrency = 1         # an actor's creation: how many calls it runs at once

    @property
    def name(self) -> str:
        """What the task runs, as traces and plans show it (``inc``, ``Counter.incr``)."""
        return self.options.name or self.function.name

    @property
    def is_actor_call(self) -> bool:
        """A method call: it runs in its actor's process and ships no function of its own."""
        return bool(self.actor) and self.method != "__init__"

    @property
    def dep_ids(self) -> tuple[str, ...]:
        return tuple([ref.id for ref in self.deps]) if self.deps else ()

    @property
    def nested_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([ref.id for ref in self.nested])) if self.nested else ()

    def upstream(self) -> tuple[ObjectRef, ...]:
        """Every ref this task waits for: top-level arguments, then nested ones."""
        return self.deps + self.nested

    def forget_inputs(self) -> None:
        """Drop arguments once submitted: the executor holds what it needs from here on."""
        self.deps = ()
        self.nested = ()
        self.payload = b""

    def __repr__(self) -> str:
        return f"Task({self.id}, deps={list(self.dep_ids)})"


def encode_call(function_name: str, args: tuple, kwargs: dict, put: Callable[[Any], ObjectRef],
                dumps: Callable[[Any], bytes]) -> tuple[bytes, tuple[ObjectRef, ...],
                                                        tuple[ObjectRef, ...]]:
    """Pickle a call, turning top-level refs (and large values, via ``put``) into ArgRefs.

    ``dumps`` is the runtime's pickler (the store's: small arrays travel inside the call,
    and must come back read-only as the ones put do). Returns the payload, the top-level
    dependencies and the refs nested deeper.
    """
    if not args and not kwargs:        # a call without arguments (W3): written once
        return NO_ARGUMENTS, (), ()
    if _all_plain(args, kwargs):       # nothing to look into: no ref, no array, no closure
        return pickle.dumps((args, kwargs), protocol=5), (), ()
    deps: list[ObjectRef] = []

    def placeholder(value: Any) -> Any:
        if not isinstance(value, ObjectRef) and _is_large(value):
            value = put(value)
        if isinstance(value, ObjectRef):
            if value.owner is not None and value.owner is not context.active():
                raise ObjectLostError(value.id, "it belongs to a plait session that was shut "
                                                "down; put the value again")
            deps.append(value)
            return ArgRef(len(deps) - 1)
        return value

    call = (tuple(placeholder(a) for a in args), {k: placeholder(v) for k, v in kwargs.items()})
    try:
        with collecting_refs() as nested:
            payload = dumps(call)
    except Exception as error:
        raise _serialization_error(function_name, args, kwargs, error) from error
    return payload, tuple(deps), tuple(nested)


_PLAIN = frozenset({type(None), bool, int, float, str})


def _all_plain(args: tuple, kwargs: dict) -> bool:
    """Whether every argument is a plain scalar or string, which the standard pickler writes
    as cloudpickle would (~3 us a call, where a cloudpickle pickler costs ~20 us to make).

    >>> _all_plain((1, "a", None), {"b": 2.5}), _all_plain(([1],), {})
    (True, False)
    """
    return all(type(a) in _PLAIN for a in args) and all(type(v) in _PLAIN
                                                        for v in kwargs.values())


def decode_call(payload: bytes, values: list[Any]) -> tuple[tuple, dict]:
    """Unpickle a call and put each dependency's value where its ArgRef stands."""
    if payload == NO_ARGUMENTS:
        return (), {}
    args, kwargs = pickle.loads(payload)

    def resolve(value: Any) -> Any:
        return values[value.index] if isinstance(value, ArgRef) else value

    return tuple(resolve(a) for a in args), {k: resolve(v) for k, v in kwargs.items()}


def split_returns(function_name: str, value: Any, count: int) -> list[Any]:
    """A function's value as its ``count`` results (``num_returns=count``, more than one):
    any sequence of that length, as Ray takes it. A value without a length is a TypeError
    and one of another length a ValueError, as Ray's are."""
    if not hasattr(value, "__len__"):
        raise TypeError(f"{function_name} was declared with num_returns={count} but "
                        f"returned {type(value).__name__}: object of type "
                        f"'{type(value).__name__}' has no len()")
    if len(value) != count:
        raise ValueError(f"{function_name} returned {len(value)} objects, but "
                         f"num_returns={count}")
    return list(value)


def _is_large(value: Any) -> bool:
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int) and not isinstance(value, (bytes, bytearray, memoryview)):
        return nbytes > LARGE_ARGUMENT_BYTES and hasattr(value, "__array_interface__")
    return isinstance(value, (bytes, bytearray)) and len(value) > LARGE_ARGUMENT_BYTES


def _serialization_error(function_name: str, args: tuple, kwargs: dict,
                         error: Exception) -> SerializationError:
    """Name the first argument that does not pickle, so the user knows what to fix."""
    named = [(f"argument {i}", a) for i, a in enumerate(args)]
    named += [(f"keyword argument {k!r}", v) for k, v in kwargs.items()]
    for label, value in named:
        try:
            _dumps(value)
        except Exception as cause:
            path, part = unpicklable_part(value, _dumps)
            what = (f"holds a {type(part).__name__} at {path}" if path else
                    f"has type {type(value).__name__}")
            return SerializationError.of(
                f"{label} of {function_name}() {what}, which cannot be serialised: {cause}. "
                f"Nothing was sent; pass a picklable value, or create the object inside the "
                f"task.", cause)
    return SerializationError.of(
        f"the arguments of {function_name}() cannot be serialised: {error}", error)


def _dumps(value: Any) -> bytes:
    return cloudpickle.dumps(value, protocol=5)
