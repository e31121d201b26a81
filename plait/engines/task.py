"""What runs inside an engine's worker: one plait task, as Ray or Dask calls it.

The engine has already resolved the task's top-level inputs (Ray and Dask both replace a
handle given as an argument by its value); ``run_task`` puts them where the call's ArgRefs
stand, calls the user's function, wraps its exception in plait's TaskError (so ``get`` raises
plait's type, which is also the user's), and reports where it ran and what it read.

Refs nested in the arguments arrive as plait ObjectRefs; the worker's own session (made once
per worker process by the engine) is told their handles, so the task may ``plait.get`` them,
and may submit tasks of its own. A result that holds refs made inside the task travels as
``Carrying``: the value and the handles of those refs, which the reader learns.
"""

from __future__ import annotations

import os
import pickle
import time
import traceback
from dataclasses import dataclass
from typing import Any

from plait.errors import TaskError
from plait.graph.refs import collecting_refs
from plait.graph.task import decode_call

_functions: dict[str, Any] = {}
_PLAIN = (type(None), bool, int, float, complex, str, bytes)


class Carrying:
    """A task's result that holds refs made in the task, with their engine handles."""

    __slots__ = ("value", "handles")

    def __init__(self, value: Any, handles: dict[str, Any]) -> None:
        self.value = value
        self.handles = handles

    def __reduce__(self):
        return (Carrying, (self.value, self.handles))


@dataclass(frozen=True, slots=True)
class Spec:
    """One task as its engine wrapper receives it."""

    task_id: str
    function_id: str
    function: bytes            # the pickled function (cached per worker by function_id)
    function_name: str
    node: str                  # the plait node the plan put it on
    deps: tuple[str, ...]      # its top-level inputs, in the order given
    outputs: tuple[str, ...]
    payload: bytes

    def to_bytes(self) -> bytes:
        """The spec as one bytes argument. Ray passes bytes through untouched (~4 us a
        task here, pickling included ~10 us) where it runs its own serialiser over a
        dataclass (~200 us: msgpack, then cloudpickle): the largest part of what plait
        cost per task on Ray's W3."""
        return pickle.dumps(tuple(getattr(self, name) for name in self.__slots__), protocol=5)

    @classmethod
    def from_bytes(cls, data: bytes) -> Spec:
        return cls(*pickle.loads(data))


def run_task(session: Any, here: str, spec: Spec, inputs: tuple, nested: dict[str, Any]
             ) -> tuple[list[Any], dict]:
    """Run one task; returns its results (as many as it has outputs) and its report.

    ``session``: the worker's engine session (None: the worker has none, so the task may
    not use refs); ``here``: the engine's id of the node running it."""
    start = time.time()
    if session is not None:
        inputs = tuple(session.unpack(value) for value in inputs)
        session.learn(nested)
    inputs = tuple(read_only(value) for value in inputs)
    try:
        function = _functions.get(spec.function_id)
        if function is None:
            function = _functions[spec.function_id] = pickle.loads(spec.function)
        args, kwargs = decode_call(spec.payload, list(inputs))
        value = function(*args, **kwargs)
        if session is not None and session.unsubmitted:
            session.run([])                 # calls it made and did not wait for still run
        results = _split(value, len(spec.outputs))
        if session is not None:
            results = [_carry(session, result) for result in results]
    except Exception as error:
        raise TaskError.wrap(spec.function_name, spec.task_id, spec.node,
                             _user_traceback(error), error) from None
    report = {"task": spec.task_id, "function": spec.function_name, "node": here,
              "pid": os.getpid(), "start": start, "end": time.time(), "ok": True,
              "outputs": spec.outputs,
              "inputs": [(oid, _size(value)) for oid, value in zip(spec.deps, inputs,
                                                                   strict=True)]}
    return results, report


def _split(value: Any, count: int) -> list[Any]:
    """A function's value as its ``count`` results (num_returns, as in Ray)."""
    if count == 1:
        return [value]
    values = list(value)
    if len(values) != count:
        raise ValueError(f"the task returned {len(values)} values; num_returns={count}")
    return values


def _carry(session: Any, value: Any) -> Any:
    """``value``, or a Carrying of it when it holds refs this worker knows the handles of."""
    import cloudpickle

    if isinstance(value, _PLAIN) or getattr(getattr(value, "dtype", None), "hasobject", True) \
            is False:
        return value                      # no ref can hide in it: skip pickling it to look
    with collecting_refs() as found:
        cloudpickle.dumps(value, protocol=5, buffer_callback=lambda buffer: None)
    if not found:
        return value
    if not session.nested_refs:
        raise NotImplementedError(f"the {session.name} engine does not pass refs inside a "
                                  f"task's result; return values, or use the native engine")
    session.run(found)
    return Carrying(value, {ref.id: session.portable(session.handles[ref.id]) for ref in found
                            if ref.id in session.handles})


def read_only(value: Any) -> Any:
    """A numpy array as a read-only view (an engine may hand a task, or a get, the very
    array it stores: plait's objects never change); anything else as it is."""
    if getattr(value, "flags", None) is not None and hasattr(value, "view") \
            and getattr(value.flags, "writeable", False):
        value = value.view()
        value.flags.writeable = False
    return value


def _size(value: Any) -> int:
    """Bytes of an input as the engine moved it (arrays: their buffer; else pickled)."""
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    try:
        return len(pickle.dumps(value, protocol=5))
    except Exception:
        return 0


def _user_traceback(error: BaseException) -> str:
    """The traceback from the user's function down, without this module's frames."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(error), error, tb))
