"""What runs inside an engine's worker: one plait task, as Ray or Dask calls it.

The engine has already resolved the task's top-level inputs (Ray and Dask both replace a
handle given as an argument by its value); ``run_call`` puts them where the call's ArgRefs
stand, calls the user's function, wraps its exception in plait's TaskError (so ``get`` raises
plait's type, which is also the user's), and says where it ran and what it read, which
``report`` makes the trace's report of (in the worker on Dask, in the driver on Ray).

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
from plait.graph.task import decode_call, split_returns

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
    """One task as the Dask engine's wrapper receives it (the Ray engine sends less: Ray
    charges for every argument, ray.py ``_runner``)."""

    task_id: str
    function_id: str
    function: bytes            # the pickled function (cached per worker by function_id)
    function_name: str
    node: str                  # the plait node the plan put it on
    deps: tuple[str, ...]      # its top-level inputs, in the order given
    outputs: tuple[str, ...]
    payload: bytes


def run_task(session: Any, here: str, spec: Spec, inputs: tuple, nested: dict[str, Any]
             ) -> tuple[list[Any], dict]:
    """Run one task; returns its results (as many as it has outputs) and its report.

    ``session``: the worker's engine session (None: the worker has none, so the task may
    not use refs); ``here``: the engine's id of the node running it."""
    function = Function(spec.function_id, spec.function, spec.function_name)
    results, ran = run_call(session, here, function, spec.task_id, spec.node, spec.payload,
                            len(spec.outputs), inputs, nested)
    return results, report(spec.task_id, spec.function_name, spec.outputs, spec.deps, ran)


@dataclass(frozen=True, slots=True)
class Function:
    """A user's function as a worker receives it: unpickled at its first call there."""

    function_id: str
    pickled: bytes
    name: str

    def load(self) -> Any:
        function = _functions.get(self.function_id)
        if function is None:
            function = _functions[self.function_id] = pickle.loads(self.pickled)
        return function


def run_call(session: Any, here: str, function: Function, task_id: str, node: str,
             payload: bytes, count: int, inputs: tuple, nested: dict[str, Any],
             measured: bool = True) -> tuple[list[Any], tuple]:
    """Call ``function`` as ``payload`` says, with the task's top-level ``inputs``; returns
    its ``count`` results and what ``report`` needs of the run: (node, pid, start, end,
    input sizes; none unless ``measured``: sizing an input may pickle it, and a Ray task
    that makes no report has no use for them). A user's exception (or a function that does
    not unpickle here) comes out as plait's TaskError, naming ``task_id`` and ``node``."""
    start = time.time()
    if session is not None:
        inputs = tuple(session.unpack(value) for value in inputs)
        session.learn(nested)
    inputs = tuple(read_only(value) for value in inputs)
    try:
        args, kwargs = decode_call(payload, list(inputs))
        value = function.load()(*args, **kwargs)
        if session is not None and session.unsubmitted:
            session.run([])                 # calls it made and did not wait for still run
        results = [value] if count == 1 else split_returns(function.name, value, count)
        if session is not None:
            results = [_carry(session, result) for result in results]
    except (KeyboardInterrupt, SystemExit):      # the engine's cancel, or an exit: its own
        raise
    except BaseException as error:              # the user's, a BaseException of theirs too
        raise TaskError.wrap(function.name, task_id, node, _user_traceback(error),
                             error) from None
    sizes = [_size(v) for v in inputs] if measured else []
    return results, (here, os.getpid(), start, time.time(), sizes)


def report(task_id: str, function_name: str, outputs: tuple[str, ...], deps: tuple[str, ...],
           ran: tuple) -> dict:
    """A task's report for the trace (base.py ``record``): who it was, and how it ran."""
    node, pid, start, end, sizes = ran
    return {"task": task_id, "function": function_name, "node": node, "pid": pid,
            "start": start, "end": end, "ok": True, "outputs": outputs,
            "inputs": list(zip(deps, sizes, strict=True))}


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
