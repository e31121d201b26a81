"""Every exception plait raises, in one place.

The tree (each class also subclasses the built-in a caller would naturally catch)::

    PlaitError
    ├── TaskError                     a task raised; also an instance of the user's exception
    ├── WorkerCrashedError            a worker died mid-task more often than max_retries allows
    │   └── OutOfMemoryError (MemoryError)  ... because plait killed it for its memory use
    ├── TaskCancelledError            plait.cancel stopped the task (or one it depends on)
    ├── ActorDiedError                the actor's process is gone and will not come back
    ├── ActorNotFoundError (ValueError)   no live actor has the name get_actor asked for
    ├── GetTimeoutError (TimeoutError)    get/wait ran out of time; the work goes on
    ├── SerializationError (TypeError)    a value could not be pickled at submission
    ├── DeserializationError          a value pickled but could not be rebuilt where it landed
    ├── ObjectLostError               no copy of an object is reachable any more
    │   ├── ObjectFreedError          ... because it was released with plait.free
    │   ├── ReconstructionFailedError ... and re-running its task failed or ran out of tries
    │   └── ObjectCorruptedError      ... because its spilled copy failed its checksum
    ├── ObjectStoreFullError (MemoryError)  the store cannot make room, nor the disk
    │   └── ObjectTooLargeError       ... the object exceeds the whole store, and no disk
    │                                     takes it (spilling off)
    ├── PlanError (ValueError)        the compiler refused a graph (unknown node, ...)
    ├── InvalidOptionError (TypeError, ValueError)   an unknown or ill-typed remote option
    │   └── ActorAlreadyExistsError   ... an actor's name taken by a live actor
    ├── InvalidArgumentError (TypeError, ValueError)  get, wait or kill given the wrong kind
    ├── QueueEmpty (queue.Empty)      plait.util.queue.Queue had no item in time
    ├── QueueFull (queue.Full)        ... had no room in time
    ├── ClusterError                  the local cluster could not start or stopped answering
    │   ├── ClusterNotFoundError (ConnectionError)  address="auto" found no running cluster
    │   └── HeadUnavailableError      the head node is gone
    └── NotInitializedError (RuntimeError)  plait is shut down / was used after shutdown

    ActorExitRequest (SystemExit)     not an error: exit_actor() ending its own actor

Exceptions cross process boundaries, so every field goes through ``super().__init__``
and each class pickles (tested). A task's failure is re-raised in the driver as a
``TaskError`` that is *also* an instance of the user's exception class, so
``except ValueError`` keeps working (as Ray's ``RayTaskError.as_instanceof_cause``).
"""

from __future__ import annotations

import builtins
import itertools
import queue
import types
from collections.abc import Callable, Iterable, Iterator

__all__ = [
    "ActorAlreadyExistsError",
    "ActorDiedError",
    "ActorExitRequest",
    "ActorNotFoundError",
    "ActorUnavailableError",
    "ClusterError",
    "ClusterNotFoundError",
    "DeserializationError",
    "GetTimeoutError",
    "HeadUnavailableError",
    "InvalidArgumentError",
    "InvalidOptionError",
    "NotInitializedError",
    "ObjectCorruptedError",
    "ObjectFreedError",
    "ObjectLostError",
    "ObjectStoreFullError",
    "ObjectTooLargeError",
    "OutOfMemoryError",
    "PlaitError",
    "ReconstructionFailedError",
    "PlanError",
    "QueueEmpty",
    "QueueFull",
    "SerializationError",
    "TaskCancelledError",
    "TaskError",
    "WorkerCrashedError",
]


class PlaitError(Exception):
    """Base class of every error plait raises itself."""


class TaskError(PlaitError):
    """A task raised an exception; ``cause`` is the user's exception.

    ``get`` raises ``TaskError.wrap(cause, ...)``: an instance of a class that derives from
    both TaskError and ``type(cause)``, so callers may catch either.
    """

    def __init__(self, function_name: str, task_id: str, node: str, remote_traceback: str,
                 cause: BaseException | None = None) -> None:
        # Exception's, not super()'s: in a class made by wrap() the next in line is the
        # cause's class (ObjectLostError, ...), whose __init__ takes other arguments
        Exception.__init__(self, function_name, task_id, node, remote_traceback, cause)
        self.function_name = function_name
        self.task_id = task_id
        self.node = node
        self.remote_traceback = remote_traceback
        self.cause = cause

    def __str__(self) -> str:
        what = f"{type(self.cause).__name__}: {self.cause}" if self.cause is not None else "error"
        return (f"task {self.task_id} ({self.function_name}) failed on {self.node}: {what}\n\n"
                f"Remote traceback:\n{self.remote_traceback.rstrip()}")

    @classmethod
    def wrap(cls, function_name: str, task_id: str, node: str, remote_traceback: str,
             cause: BaseException) -> TaskError:
        """A TaskError that is also an instance of ``type(cause)``, with cause as __cause__.

        A failure passed on (a task's ``get`` of another's, raised on) keeps the inner
        TaskError as ``__cause__``, so the traceback reads task by task, but its ``cause``
        is the user's exception at the root, as Ray's ``e.cause`` is."""
        root = cause.cause if isinstance(cause, TaskError) and cause.cause is not None \
            else cause
        kind = _task_error_class(type(root))
        error = kind.__new__(kind)
        TaskError.__init__(error, function_name, task_id, node, remote_traceback, root)
        if kind is not TaskError:
            error.args = (root,)        # as Ray's: its args are the cause, not plait's fields
        error.__cause__ = cause
        return error

    def as_instanceof_cause(self) -> TaskError:
        """This error as an instance of both TaskError and the cause's class (Ray's name for
        what ``wrap`` makes); itself if it is one already or the cause cannot be subclassed."""
        if self.cause is None or isinstance(self, type(self.cause)) or \
                _task_error_class(type(self.cause)) is TaskError:
            return self
        return TaskError.wrap(self.function_name, self.task_id, self.node,
                              self.remote_traceback, self.cause)

    def __reduce__(self):
        wrapped = type(self) is not TaskError
        return (_rebuild_task_error, (self.function_name, self.task_id, self.node,
                                      self.remote_traceback, self.cause, wrapped))


_TASK_ERROR_CLASSES: dict[type, type] = {}


def _task_error_class(cause_type: type) -> type:
    """The (cached) class deriving from TaskError and the user's exception class."""
    if cause_type in _TASK_ERROR_CLASSES:
        return _TASK_ERROR_CLASSES[cause_type]
    if issubclass(cause_type, TaskError):   # a failure passed on (a get inside a task):
        kind: type = cause_type             # still the root cause's type, never nested
    elif not _subclassable(cause_type):
        kind = TaskError
    else:
        kind = _both(TaskError, cause_type,
                     {"__str__": TaskError.__str__, "__reduce__": TaskError.__reduce__,
                      "__init__": TaskError.__init__, "__getattr__": _cause_attribute})
    _TASK_ERROR_CLASSES[cause_type] = kind
    return kind


def _both(ours: type, cause_type: type, namespace: dict[str, object]) -> type:
    """The class deriving from ``ours`` and the user's ``cause_type``, named for both, or
    ``ours`` when the two cannot be combined (incompatible layouts or ``__new__``:
    MemoryError, some C types)."""
    try:
        kind = type(f"{ours.__name__}({cause_type.__name__})", (ours, cause_type),
                    {**namespace, "__module__": __name__})
        kind.__new__(kind)
    except TypeError:
        return ours
    return kind


def _cause_attribute(error: TaskError, name: str) -> object:
    """An attribute the user's exception has and the wrapping error has not
    (``except HTTPError as e: e.status``), read from the cause, as Ray's wrapper does."""
    cause = error.__dict__.get("cause")
    if cause is None:
        raise AttributeError(name)
    return getattr(cause, name)


# BaseExceptions that steer the interpreter: a TaskError that was one would be caught where
# only a real Ctrl-C or exit should be, so a task's error is never one (it says the cause)
_STEERING = (KeyboardInterrupt, SystemExit, GeneratorExit)


def _subclassable(cause_type: type) -> bool:
    """An error class of the user's that the raised TaskError may derive from: any of
    theirs, a BaseException of their own too (Ray's error is one of those as well)."""
    return (issubclass(cause_type, BaseException) and not issubclass(cause_type, _STEERING)
            and getattr(cause_type, "__final__", False) is not True)


def _rebuild_task_error(function_name: str, task_id: str, node: str, remote_traceback: str,
                        cause: BaseException | None, wrapped: bool = True) -> TaskError:
    if cause is None or not wrapped:
        return TaskError(function_name, task_id, node, remote_traceback, cause)
    return TaskError.wrap(function_name, task_id, node, remote_traceback, cause)


class WorkerCrashedError(PlaitError):
    """The worker running a task died (killed, segfault, os._exit) on every allowed attempt."""

    def __init__(self, function_name: str, task_id: str, attempts: list[str]) -> None:
        super().__init__(function_name, task_id, attempts)
        self.function_name = function_name
        self.task_id = task_id
        self.attempts = attempts

    def __str__(self) -> str:
        tries = "; ".join(self.attempts)
        return (f"task {self.task_id} ({self.function_name}) crashed its worker on all "
                f"{len(self.attempts)} attempt(s): {tries}. The task may call os._exit, crash "
                f"native code or exhaust memory; raise max_retries if the crash is transient.")


class OutOfMemoryError(builtins.MemoryError, WorkerCrashedError):
    """plait killed the task's worker for using too much memory, on every allowed attempt.

    (MemoryError first: its own ``__new__`` must be the class's, or ``cls.__new__(cls)``,
    which tblib's exception pickling calls once dask.distributed is imported, is refused
    as "not safe".)"""

    def __init__(self, function_name: str, task_id: str, attempts: list[str]) -> None:
        WorkerCrashedError.__init__(self, function_name, task_id, attempts)   # (not MemoryError's)

    def __str__(self) -> str:
        tries = "; ".join(self.attempts)
        return (f"task {self.task_id} ({self.function_name}) used too much memory on all "
                f"{len(self.attempts)} attempt(s): {tries}. Give it less data per task, or "
                f"raise plait.init(worker_memory_limit=...).")


class TaskCancelledError(PlaitError):
    """plait.cancel stopped the task producing this object, or a task it depends on."""

    def __init__(self, task_id: str) -> None:
        super().__init__(task_id)
        self.task_id = task_id

    def __str__(self) -> str:
        return f"task {self.task_id} was cancelled with plait.cancel"


class ActorDiedError(PlaitError):
    """The actor is dead: its process died past ``max_restarts``, ``plait.kill`` stopped it,
    or its constructor raised (then ``cause`` is that TaskError). Every call still pending
    and every later call raises it."""

    def __init__(self, actor_id: str, reason: str, cause: BaseException | None = None) -> None:
        super().__init__(actor_id, reason, cause)
        self.actor_id = actor_id
        self.reason = reason
        self.cause = cause

    @property
    def actor_init_failed(self) -> bool:
        """Whether the actor died because its constructor raised (Ray's attribute)."""
        return self.cause is not None

    @property
    def error_msg(self) -> str:
        """The message (Ray's attribute)."""
        return str(self)

    @property
    def preempted(self) -> bool:
        """Ray's: whether its node was preempted; plait's nodes never are."""
        return False

    def __str__(self) -> str:
        """``actor A-1 is dead: <reason>``; a reason that is a sentence of its own, as
        Ray's words for a kill are (code searches for them), follows ``actor A-1: ``."""
        text = (f"actor {self.actor_id}: {self.reason}" if self.reason[:1].isupper()
                else f"actor {self.actor_id} is dead: {self.reason}")
        return text + (f"\n\nIts constructor failed:\n{self.cause}" if self.cause else "")


class ActorUnavailableError(ActorDiedError):
    """The call was running when its actor's process died, it is out of retries
    (``max_task_retries``), and the actor is starting again: the call may have run in part;
    later calls run in the new process. As Ray's; an ActorDiedError, so code catching that
    catches this too. (Ray also raises it for an actor cut off for a while; plait's calls
    to a restarting or unreachable actor wait or fail with ActorDiedError.)"""


class ActorExitRequest(builtins.SystemExit):
    """Raised by ``plait.actor.exit_actor()`` in an actor's method (Ray raises SystemExit):
    the actor ends on purpose. A SystemExit, so ``except Exception`` in the method does not
    stop it; its worker catches it, runs the atexit handlers and ends the actor. The call
    and every call queued behind it raise ActorDiedError; it is never restarted."""


class ActorNotFoundError(PlaitError, builtins.ValueError):
    """``plait.get_actor(name)``: no live actor has that name (a ValueError, as in Ray)."""


class GetTimeoutError(PlaitError, builtins.TimeoutError):
    """get/wait gave up waiting; the tasks keep running and a later get can succeed."""


class SerializationError(PlaitError, builtins.TypeError):
    """A value could not be pickled; raised at submission, before anything is sent.

    Made by ``of``, it is also an instance of the class of the error pickling raised
    (``except RuntimeError`` catches one a ``__reduce__`` raised), as Ray re-raises that
    error where it is not a TypeError; it names what could not be pickled besides."""

    @classmethod
    def of(cls, message: str, cause: BaseException) -> SerializationError:
        kind = _serialization_error_class(type(cause))
        error = kind.__new__(kind)
        BaseException.__init__(error, message)
        error.__cause__ = cause
        return error

    def __reduce__(self):
        cause = self.__cause__ if type(self) is not SerializationError else None
        return (_rebuild_serialization_error, (str(self), cause))


_SERIALIZATION_ERROR_CLASSES: dict[type, type] = {}


def _serialization_error_class(cause_type: type) -> type:
    """The (cached) class deriving from SerializationError and ``cause_type``; just
    SerializationError for a TypeError (it is one) or a class it cannot derive from."""
    kind = _SERIALIZATION_ERROR_CLASSES.get(cause_type)
    if kind is not None:
        return kind
    kind = SerializationError
    if not issubclass(cause_type, builtins.TypeError) and _subclassable(cause_type):
        kind = _both(SerializationError, cause_type,
                     {"__str__": BaseException.__str__, "__init__": BaseException.__init__})
    _SERIALIZATION_ERROR_CLASSES[cause_type] = kind
    return kind


def _rebuild_serialization_error(message: str, cause: BaseException | None
                                 ) -> SerializationError:
    return SerializationError(message) if cause is None else SerializationError.of(message,
                                                                                   cause)


# How far ``unpicklable_part`` looks: levels down, and parts of one container tried.
_CULPRIT_DEPTH = 16
_CULPRIT_BREADTH = 1000


def unpicklable_part(value: object, dumps: Callable[[object], bytes]) -> tuple[str, object]:
    """The innermost part of ``value`` that ``dumps`` refuses, and its path from ``value``
    (``[2]['k'].lock``; "" for ``value`` itself), for a SerializationError to name what to
    fix, as Ray's ``inspect_serializability`` does. It looks into lists, tuples, sets, dict
    values, objects' attributes and functions' closure variables; only on the error path."""
    path, part = "", value
    for _ in range(_CULPRIT_DEPTH):
        for step, child in _parts(part):
            try:
                dumps(child)
            except Exception:
                path, part = path + step, child
                break
        else:
            break
    return path, part


def _parts(value: object) -> Iterator[tuple[str, object]]:
    """(path step, part) of what ``value`` holds, for ``unpicklable_part``."""
    if isinstance(value, (list, tuple)):
        found: Iterable[tuple[str, object]] = ((f"[{i}]", v) for i, v in enumerate(value))
    elif isinstance(value, (set, frozenset)):
        found = (("{...}", v) for v in value)
    elif isinstance(value, dict):
        found = ((f"[{k!r}]", v) for k, v in value.items())
    elif isinstance(value, types.FunctionType):
        found = ((f" (its variable {name!r})", cell.cell_contents) for name, cell in
                 zip(value.__code__.co_freevars, value.__closure__ or (), strict=True))
    elif isinstance(getattr(value, "__dict__", None), dict) and not isinstance(
            value, (type, types.ModuleType)):
        found = ((f".{k}", v) for k, v in vars(value).items())
    else:
        return
    yield from itertools.islice(found, _CULPRIT_BREADTH)


class DeserializationError(PlaitError):
    """A value was pickled but could not be unpickled where it arrived."""


class ObjectLostError(PlaitError):
    """No reachable copy of the object exists (its node died, or it was released)."""

    def __init__(self, object_id: str, reason: str = "") -> None:
        super().__init__(object_id, reason)
        self.object_id = object_id
        self.reason = reason

    def __str__(self) -> str:
        return f"object {self.object_id} is lost" + (f": {self.reason}" if self.reason else "")


class ObjectFreedError(ObjectLostError):
    """The object was released early with plait.free and cannot be read again."""


class ReconstructionFailedError(ObjectLostError):
    """The object was lost and rebuilding it from its task's lineage ran out of tries."""


class ObjectCorruptedError(ObjectLostError):
    """The object's spilled bytes no longer match their checksum: never returned as data."""


class ObjectStoreFullError(builtins.MemoryError, PlaitError):
    """The node's store cannot make room for an object right now, and its disk cannot take
    it either: spilling is off, or the spill directory cannot be written (MemoryError first:
    see OutOfMemoryError). With spilling on, what the store cannot hold goes to disk."""


class ObjectTooLargeError(ObjectStoreFullError):
    """The object is larger than the node's whole store, and no file can take it here
    (spilling is off)."""


class PlanError(PlaitError, builtins.ValueError):
    """The compiler refused the graph: the message names the task and the broken rule
    (``task_id``: the task that cannot be placed, when one task is to blame;
    ``infeasible``: it asks for resources no node has, so a node that joins may run it)."""

    def __init__(self, message: str, task_id: str | None = None,
                 infeasible: bool = False) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.infeasible = infeasible

    def __reduce__(self):
        return (type(self), (self.args[0], self.task_id, self.infeasible))


class InvalidOptionError(PlaitError, builtins.TypeError, builtins.ValueError):
    """A remote option is unknown or has a value of the wrong kind: a ValueError, and a
    TypeError too because Ray raises that for a value of the wrong type (``num_cpus="a"``,
    ``resources=[1]``), so either ``except`` catches it."""


class InvalidArgumentError(PlaitError, builtins.TypeError, builtins.ValueError):
    """``get``, ``wait``, ``cancel`` or ``kill`` was given something that is not a ref (an
    actor handle), or ``get_actor`` no name: a TypeError, and a ValueError too because Ray
    raises that for some of them (``ray.get(5)``, ``ray.kill("x")``, ``ray.get_actor("")``),
    so either ``except`` catches it."""


class ActorAlreadyExistsError(InvalidOptionError):
    """A named actor's name is taken by a live actor (Ray's name; a ValueError)."""


class QueueEmpty(PlaitError, queue.Empty):
    """``plait.util.queue.Queue`` had no item to give in time (Ray's
    ``ray.util.queue.Empty``; also the standard library's ``queue.Empty``)."""


class QueueFull(PlaitError, queue.Full):
    """``plait.util.queue.Queue`` had no room for an item in time (Ray's
    ``ray.util.queue.Full``; also ``queue.Full``)."""


class ClusterError(PlaitError, builtins.RuntimeError):
    """The cluster could not start, or a node stopped answering."""


class ClusterNotFoundError(builtins.ConnectionError, ClusterError):
    """``init(address="auto")`` found no cluster running on this host: a ConnectionError, as
    Ray's is, so ``except ConnectionError: init()`` starts one instead (ConnectionError
    first: its own ``__new__`` must be the class's, see OutOfMemoryError)."""


class HeadUnavailableError(ClusterError):
    """The head node is gone; the session cannot continue."""


class NotInitializedError(PlaitError, builtins.RuntimeError):
    """plait was used where no session can exist (for example after shutdown in a worker)."""
