"""The exception hierarchy: every class pickles with its fields; TaskError is also the cause."""

from __future__ import annotations

import inspect
import pickle
import queue
import typing

import pytest

import plait
from plait import errors, exceptions
from plait.errors import TaskError

TRACEBACK = 'Traceback (most recent call last):\n  File "job.py", line 3, in f\nValueError: bad\n'

SAMPLES: dict[type, BaseException] = {
    errors.PlaitError: errors.PlaitError("base"),
    # with no cause: a TaskError with one comes from TaskError.wrap (tested below)
    errors.TaskError: errors.TaskError("f", "f-1", "node-0", TRACEBACK),
    errors.WorkerCrashedError: errors.WorkerCrashedError("f", "f-2", ["node-0: SIGKILL",
                                                                      "node-1: exit 3"]),
    errors.GetTimeoutError: errors.GetTimeoutError("timed out after 5 s"),
    errors.SerializationError: errors.SerializationError("argument 0 of f() has type lock"),
    errors.DeserializationError: errors.DeserializationError("bad magic"),
    errors.ObjectLostError: errors.ObjectLostError("inc-3", "node-1 died"),
    errors.ObjectFreedError: errors.ObjectFreedError("put-4", "released early"),
    errors.ObjectCorruptedError: errors.ObjectCorruptedError("put-5", "bad checksum"),
    errors.TaskCancelledError: errors.TaskCancelledError("inc-7"),
    errors.ActorDiedError: errors.ActorDiedError("Counter-1", "killed with plait.kill"),
    errors.ActorUnavailableError: errors.ActorUnavailableError("Counter-1", "restarting"),
    errors.ActorNotFoundError: errors.ActorNotFoundError("no actor named 'bank'"),
    errors.ReconstructionFailedError: errors.ReconstructionFailedError("inc-8", "re-run twice"),
    errors.OutOfMemoryError: errors.OutOfMemoryError("grow", "grow-1", ["node-0 worker 0 killed"]),
    errors.ObjectStoreFullError: errors.ObjectStoreFullError("full"),
    errors.ObjectTooLargeError: errors.ObjectTooLargeError("too large"),
    errors.PlanError: errors.PlanError("pinned to node-9"),
    errors.InvalidOptionError: errors.InvalidOptionError("unknown option 'x'"),
    errors.InvalidArgumentError: errors.InvalidArgumentError("plait.get expects ObjectRefs"),
    errors.ActorAlreadyExistsError: errors.ActorAlreadyExistsError("'bank' is taken"),
    errors.QueueEmpty: errors.QueueEmpty("the queue stayed empty for 1 s"),
    errors.QueueFull: errors.QueueFull("the queue is full (2 items)"),
    errors.ClusterError: errors.ClusterError("could not start"),
    errors.ClusterNotFoundError: errors.ClusterNotFoundError("address='auto' found none"),
    errors.HeadUnavailableError: errors.HeadUnavailableError("head gone"),
    errors.NotInitializedError: errors.NotInitializedError("shut down"),
    errors.ActorExitRequest: errors.ActorExitRequest("exit_actor() called"),
}

BUILTIN_PARENTS = {
    errors.GetTimeoutError: TimeoutError, errors.SerializationError: TypeError,
    errors.ObjectStoreFullError: MemoryError, errors.ObjectTooLargeError: MemoryError,
    errors.PlanError: ValueError, errors.InvalidOptionError: ValueError,
    errors.InvalidArgumentError: TypeError,
    errors.ActorNotFoundError: ValueError, errors.ActorAlreadyExistsError: ValueError,
    errors.ClusterError: RuntimeError, errors.HeadUnavailableError: RuntimeError,
    errors.NotInitializedError: RuntimeError, errors.ObjectFreedError: errors.ObjectLostError,
    errors.ObjectTooLargeError: errors.ObjectStoreFullError,
    errors.ObjectCorruptedError: errors.ObjectLostError,
    errors.ReconstructionFailedError: errors.ObjectLostError,
    errors.HeadUnavailableError: errors.ClusterError,
    errors.ClusterNotFoundError: ConnectionError,
    errors.QueueEmpty: queue.Empty, errors.QueueFull: queue.Full,
}


def _fields(error: BaseException) -> dict:
    """Public attributes, with exceptions compared by type and args (they lack __eq__)."""
    return {key: (type(value), value.args) if isinstance(value, BaseException) else value
            for key, value in vars(error).items() if not key.startswith("_")}


def wrapped(cause: BaseException) -> TaskError:
    return TaskError.wrap("parse", "parse-7", "node-2", TRACEBACK, cause)


# -- every class ---------------------------------------------------------------------------

def test_every_exception_class_has_a_sample():
    classes = {value for _, value in inspect.getmembers(errors, inspect.isclass)
               if issubclass(value, BaseException) and value.__module__ == errors.__name__}
    assert set(SAMPLES) == classes
    assert {cls.__name__ for cls in classes} == set(errors.__all__)


@pytest.mark.parametrize("error", SAMPLES.values(), ids=lambda e: type(e).__name__)
def test_exceptions_pickle_with_their_fields(error):
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert _fields(copy) == _fields(error)
    assert len(copy.args) == len(error.args)


@pytest.mark.parametrize("cls", SAMPLES, ids=lambda c: c.__name__)
def test_every_class_is_a_plait_error_and_the_builtin_a_caller_catches(cls):
    if cls is errors.ActorExitRequest:               # a request to end, never an error
        assert issubclass(cls, SystemExit) and not issubclass(cls, Exception)
        return
    assert issubclass(cls, errors.PlaitError)
    if cls in BUILTIN_PARENTS:
        assert issubclass(cls, BUILTIN_PARENTS[cls])


def test_messages_name_what_failed():
    assert str(SAMPLES[errors.ObjectLostError]) == "object inc-3 is lost: node-1 died"
    assert str(errors.ObjectLostError("x-1")) == "object x-1 is lost"
    crashed = str(SAMPLES[errors.WorkerCrashedError])
    assert "f-2 (f)" in crashed and "2 attempt(s)" in crashed and "max_retries" in crashed


# -- TaskError.wrap --------------------------------------------------------------------------

def test_wrapped_error_is_both_task_error_and_the_cause_type():
    cause = ValueError("bad")
    error = wrapped(cause)
    assert isinstance(error, TaskError) and isinstance(error, ValueError)
    assert error.__cause__ is cause and error.cause is cause
    assert (error.function_name, error.task_id, error.node) == ("parse", "parse-7", "node-2")


def test_wrapped_error_is_caught_by_except_cause_type():
    with pytest.raises(ValueError, match="bad"):
        raise wrapped(ValueError("bad"))


def test_wrapped_error_message_names_function_task_node_and_traceback():
    text = str(wrapped(ValueError("bad")))
    for part in ("parse", "parse-7", "node-2", "ValueError: bad", "Remote traceback",
                 'File "job.py", line 3'):
        assert part in text


def test_wrapped_error_survives_pickling_as_both():
    copy = pickle.loads(pickle.dumps(wrapped(KeyError("k"))))
    assert isinstance(copy, TaskError) and isinstance(copy, KeyError)
    assert (copy.function_name, copy.task_id, copy.node) == ("parse", "parse-7", "node-2")
    assert copy.remote_traceback == TRACEBACK
    assert type(copy.cause) is KeyError and copy.cause.args == ("k",)
    assert isinstance(copy.__cause__, KeyError)


class HTTPError(Exception):
    def __init__(self, message, status=0):
        super().__init__(message)
        self.status = status


def test_the_causes_own_attributes_and_args_are_read_on_the_wrapped_error_as_in_ray():
    """``except HTTPError as e: if e.status == 429`` works on Ray's wrapper, whose args are
    the cause; an attribute neither has is still an AttributeError."""
    for error in (wrapped(HTTPError("slow down", 429)),
                  pickle.loads(pickle.dumps(wrapped(HTTPError("slow down", 429))))):
        assert error.status == 429 and error.task_id == "parse-7"
        assert len(error.args) == 1 and isinstance(error.args[0], HTTPError)
        with pytest.raises(AttributeError):
            _ = error.nothing_here


def test_a_plait_error_raised_by_a_task_wraps_and_pickles_as_both():
    copy = pickle.loads(pickle.dumps(wrapped(errors.ObjectLostError("o-1", "gone"))))
    assert isinstance(copy, TaskError) and isinstance(copy, errors.ObjectLostError)
    assert copy.cause.object_id == "o-1"


def test_wrapping_reuses_one_class_per_cause_type():
    assert type(wrapped(ValueError("a"))) is type(wrapped(ValueError("b")))
    assert type(wrapped(ValueError("a"))) is not type(wrapped(TypeError("a")))


class Sealed(Exception):
    """An exception class that refuses subclasses."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        raise TypeError("Sealed cannot be subclassed")


@typing.final
class Final(Exception):
    pass


@pytest.mark.parametrize("cause", [Sealed("s"), Final("f"), KeyboardInterrupt()],
                         ids=["refuses-subclasses", "typing-final", "base-exception"])
def test_cause_that_cannot_be_subclassed_falls_back_to_plain_task_error(cause):
    error = wrapped(cause)
    assert type(error) is TaskError
    assert error.cause is cause and error.__cause__ is cause
    assert type(cause).__name__ in str(error)


def test_wrapping_a_task_error_does_not_nest_classes_and_keeps_the_root_cause_type():
    inner = wrapped(ValueError("bad"))
    outer = TaskError.wrap("g", "g-1", "node-0", "tb", inner)
    assert type(outer) is type(inner) and isinstance(outer, ValueError)   # as in Ray
    assert outer.cause is inner.cause and outer.__cause__ is inner       # Ray's e.cause
    again = pickle.loads(pickle.dumps(outer))
    assert type(again.cause) is ValueError and again.cause.args == ("bad",)
    plain = TaskError.wrap("h", "h-1", "node-0", "tb", TaskError("g", "g-1", "node-0", "tb"))
    assert type(plain) is TaskError


def test_task_error_without_cause_still_reads_well():
    error = TaskError("f", "f-1", "node-0", "tb\n")
    assert str(error).startswith("task f-1 (f) failed on node-0: error")
    assert type(pickle.loads(pickle.dumps(error))) is TaskError


# -- plait.exceptions ------------------------------------------------------------------------

def test_ray_names_are_plait_classes():
    assert exceptions.RayTaskError is plait.TaskError
    assert exceptions.RayError is plait.PlaitError
    assert exceptions.GetTimeoutError is plait.GetTimeoutError
    assert exceptions.ObjectLostError is plait.ObjectLostError
    assert exceptions.WorkerCrashedError is plait.WorkerCrashedError
    assert exceptions.RayActorError is exceptions.ActorDiedError is plait.ActorDiedError


def test_exceptions_all_is_sorted_and_complete():
    assert exceptions.__all__ == sorted(set(exceptions.__all__))
    ray_names = {"RayActorError", "RayError", "RayTaskError", "ObjectReconstructionFailedError"}
    assert set(errors.__all__) | ray_names <= set(exceptions.__all__)
    for name in set(exceptions.__all__) - set(errors.__all__) - ray_names:   # never raised
        assert getattr(exceptions, name).__doc__.endswith("plait never raises it."), name
    for name in exceptions.__all__:
        assert getattr(exceptions, name) is not None


def test_as_instanceof_cause_gives_the_dual_type_as_rays_does():
    plain = TaskError("parse", "parse-7", "node-2", TRACEBACK, KeyError("k"))
    dual = plain.as_instanceof_cause()
    assert isinstance(dual, TaskError) and isinstance(dual, KeyError)
    assert str(dual) == str(plain) and dual.cause is plain.cause
    assert dual.as_instanceof_cause() is dual
    already = wrapped(ValueError("bad"))
    assert already.as_instanceof_cause() is already
    no_cause = TaskError("f", "f-1", "node-0", TRACEBACK)
    assert no_cause.as_instanceof_cause() is no_cause


def test_actor_unavailable_error_is_an_actor_died_error_under_rays_name():
    """Ray programs catch it by name (a call lost with its process while the actor
    restarts); catching ActorDiedError covers it too."""
    import plait.exceptions

    assert issubclass(plait.exceptions.ActorUnavailableError, plait.ActorDiedError)
    assert "ActorUnavailableError" in plait.exceptions.__all__


def test_an_actor_death_reads_as_a_sentence_either_way():
    assert str(plait.ActorDiedError("A-1", "its node died")) == "actor A-1 is dead: its node died"
    assert str(plait.ActorDiedError("A-1", "The actor is dead because it was killed")) == \
        "actor A-1: The actor is dead because it was killed"


@pytest.mark.parametrize("cls", [errors.ObjectStoreFullError, errors.ObjectTooLargeError,
                                 errors.OutOfMemoryError, errors.ClusterNotFoundError])
def test_memory_errors_can_be_made_with_their_own_new(cls):
    """tblib (which dask.distributed installs for every exception class on import) rebuilds
    an exception with ``cls.__new__(cls)``: with PlaitError as the first base, Python refused
    it as "MemoryError.__new__(...) is not safe", and plait's own tests failed after the
    engine suite had imported distributed."""
    assert isinstance(cls.__new__(cls), cls)


def test_actor_died_error_has_rays_attributes():
    constructor = errors.ActorDiedError("A-1", "its constructor raised", ValueError("x"))
    killed = errors.ActorDiedError("A-2", "The actor was killed by plait.kill")
    assert constructor.actor_init_failed and not killed.actor_init_failed
    assert killed.error_msg == str(killed) and not killed.preempted
    assert pickle.loads(pickle.dumps(constructor)).actor_init_failed


def test_an_ill_typed_option_is_the_type_error_ray_raises_and_still_a_value_error():
    @plait.remote
    def f():
        return 1

    for options in ({"num_cpus": "a"}, {"resources": [1]}, {"max_retries": "3"}):
        with pytest.raises(TypeError):
            f.options(**options)
        with pytest.raises(ValueError):
            f.options(**options)


class _Refuses:
    def __reduce__(self):
        raise RuntimeError("no pickling me")


def test_a_serialization_error_is_also_the_class_of_what_pickling_raised_as_in_ray():
    with pytest.raises(RuntimeError, match="no pickling me") as caught:
        plait.store.serialization.serialize([1, _Refuses()])
    error = caught.value
    assert isinstance(error, errors.SerializationError) and "holds a _Refuses" in str(error)
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and str(again) == str(error)
    assert isinstance(again.__cause__, RuntimeError)
    wrapped = TaskError.wrap("f", "f-1", "node-0", "", error)     # a task's result
    assert isinstance(pickle.loads(pickle.dumps(wrapped)), RuntimeError)


def test_a_type_error_of_pickling_stays_a_plain_serialization_error():
    error = errors.SerializationError.of("lock", TypeError("cannot pickle '_thread.lock'"))
    assert type(error) is errors.SerializationError and isinstance(error, TypeError)
    assert type(errors.SerializationError.of("x", KeyboardInterrupt())) is \
        errors.SerializationError                  # never one that steers the interpreter
