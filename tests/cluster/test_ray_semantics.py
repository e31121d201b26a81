"""Ray's semantics where a running cluster is needed: per-method retries, cancel's keywords,
the runtime context, an actor ending itself, class attributes inside methods, ActorPool,
the log of errors nobody asked for."""

from __future__ import annotations

import logging
import threading

import pytest

import plait
from plait.exceptions import RayTaskError

pytestmark = pytest.mark.cluster


# -- @plait.method(max_task_retries=..., retry_exceptions=...) ------------------------------

@plait.remote
class Flaky:
    def __init__(self):
        self.calls = 0
        self.log = []

    @plait.method(max_task_retries=2, retry_exceptions=[ConnectionError])
    def connect(self, failures):
        """Fails ``failures`` times in a row (counted over the actor's life), then answers."""
        self.calls += 1
        self.log.append("connect")
        if self.calls <= failures:
            raise ConnectionError(f"attempt {self.calls} refused")
        return self.calls

    @plait.method(max_task_retries=5, retry_exceptions=[ConnectionError])
    def parse(self):
        self.calls += 1
        raise ValueError("not retried: not a ConnectionError")

    def note(self, word):
        self.log.append(word)
        return word

    def history(self):
        return self.calls, list(self.log)


def test_a_method_retried_on_the_exceptions_it_names_up_to_max_task_retries(cluster):
    assert plait.get(Flaky.remote().connect.remote(2), timeout=30) == 3
    with pytest.raises(ConnectionError, match="attempt 3 refused"):
        plait.get(Flaky.remote().connect.remote(3), timeout=30)


def test_other_exceptions_and_options_overrides_are_not_retried(cluster):
    flaky = Flaky.remote()
    with pytest.raises(ValueError):
        plait.get(flaky.parse.remote(), timeout=30)
    assert plait.get(flaky.history.remote(), timeout=30)[0] == 1
    with pytest.raises(ConnectionError):
        plait.get(flaky.connect.options(max_task_retries=0).remote(5), timeout=30)
    assert plait.get(flaky.history.remote(), timeout=30)[0] == 2


def test_a_retried_call_is_not_lost_behind_the_calls_queued_after_it(cluster):
    flaky = Flaky.remote()
    first = flaky.connect.remote(1)
    after = [flaky.note.remote(w) for w in ("a", "b")]
    assert plait.get(first, timeout=30) == 2
    assert plait.get(after, timeout=30) == ["a", "b"]
    calls, log = plait.get(flaky.history.remote(), timeout=30)
    assert calls == 2 and log.count("connect") == 2 and log.index("a") < log.index("b")


# -- plait.cancel(ref, force=..., recursive=...) -------------------------------------------

@plait.remote
def sleep_then(seconds, value):
    import time

    time.sleep(seconds)
    return value


@pytest.mark.parametrize("force", [False, True])
def test_cancel_takes_rays_keywords_and_stops_a_running_task_either_way(cluster, force):
    running = sleep_then.remote(60, "never")
    plait.wait([running], timeout=0.5)                    # submitted, and started by now
    plait.cancel(running, force=force, recursive=force)
    with pytest.raises(plait.TaskCancelledError) as raised:
        plait.get(running, timeout=30)
    if not force:       # stopped in its own code: Ray's RayTaskError(TaskCancelledError)
        assert isinstance(raised.value, RayTaskError)
        assert "time.sleep" in raised.value.remote_traceback     # where it was stopped
    assert plait.get(sleep_then.remote(0, "after"), timeout=30) == "after"


def started(path, timeout=30.0):
    """Wait until the task has created ``path`` (it runs: a cancel reaches its code)."""
    import os
    import time

    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} was never created"
        time.sleep(0.01)


@plait.remote(max_retries=3)
def interrupted(path, obey):
    """Runs until cancelled: returns what the interrupt let it see; or, not obeying,
    swallows every interrupt and loops on."""
    import time

    open(path, "w").close()
    while True:
        try:
            time.sleep(60)
        except KeyboardInterrupt:
            open(f"{path}.interrupted", "w").close()
            if obey:
                return ("interrupted", plait.get_runtime_context().is_canceled())


@plait.remote(max_retries=3, retry_exceptions=True)
def interrupts_itself(path):
    with open(path, "a") as f:
        f.write("ran\n")
    raise KeyboardInterrupt


def test_a_task_that_raises_keyboard_interrupt_is_cancelled_not_retried(cluster, tmp_path):
    """Ray's worker takes a KeyboardInterrupt from the task's code for a cancel."""
    with pytest.raises(plait.TaskCancelledError):
        plait.get(interrupts_itself.remote(str(tmp_path / "runs")), timeout=30)
    assert (tmp_path / "runs").read_text() == "ran\n"


@plait.remote
def parent_of(path, child_path):
    child = interrupted.remote(child_path, True)
    open(path, "w").close()
    return plait.get(child)


def test_a_cancel_without_force_interrupts_the_task_which_may_catch_it(cluster, tmp_path):
    ref = interrupted.remote(str(tmp_path / "a"), True)
    started(tmp_path / "a")
    plait.cancel(ref)
    assert plait.get(ref, timeout=30) == ("interrupted", True)


def test_a_task_that_ignores_the_interrupt_runs_on_until_a_forced_cancel(cluster, tmp_path):
    ref = interrupted.remote(str(tmp_path / "b"), False)
    started(tmp_path / "b")
    plait.cancel(ref)
    with pytest.raises(plait.GetTimeoutError):
        plait.get(ref, timeout=1)
    plait.cancel(ref, force=True)
    with pytest.raises(plait.TaskCancelledError):
        plait.get(ref, timeout=30)
    assert plait.get(sleep_then.remote(0, "after"), timeout=30) == "after"


def test_a_task_queued_behind_its_running_input_is_cancelled_at_once(cluster, tmp_path):
    """Its input's task runs on (its worker has both: a fused chain); as in Ray, the cancel
    does not wait for that task to end."""
    making = interrupted.remote(str(tmp_path / "m"), True)
    reading = sleep_then.remote(0, making)
    started(tmp_path / "m")
    plait.cancel(reading)
    assert plait.wait([reading], timeout=10) == ([reading], [])
    with pytest.raises(plait.TaskCancelledError):
        plait.get(reading, timeout=10)
    assert plait.wait([making], timeout=0) == ([], [making])          # still running
    plait.cancel(making)
    assert plait.get(making, timeout=30) == ("interrupted", True)


def test_a_recursive_cancel_without_force_interrupts_the_children_too(cluster, tmp_path):
    """The parent's get of its child is interrupted (TaskCancelledError, not retried), and
    so is the child."""
    ref = parent_of.remote(str(tmp_path / "p"), str(tmp_path / "c"))
    started(tmp_path / "p")
    started(tmp_path / "c")
    plait.cancel(ref)
    with pytest.raises(plait.TaskCancelledError):
        plait.get(ref, timeout=30)
    started(tmp_path / "c.interrupted")


# -- get_runtime_context() -----------------------------------------------------------------

@plait.remote
def context_in_task():
    context = plait.get_runtime_context()
    return context.get(), context.get_assigned_resources(), context.get_task_name()


@plait.remote
class Introspective:
    def __init__(self):
        self.rebuilt_at_start = plait.get_runtime_context().was_current_actor_reconstructed

    def context(self):
        context = plait.get_runtime_context()
        return (context.get(), context.get_assigned_resources(), context.get_task_name(),
                self.rebuilt_at_start, context.was_current_actor_reconstructed)

    def call_myself(self, word):
        return plait.get_runtime_context().current_actor.echo.remote(word)

    def echo(self, word):
        return word

    def crash(self):
        import os

        os._exit(1)


def test_the_context_dict_has_the_ids_ray_puts_in_it_where_ray_does(cluster):
    with pytest.warns(DeprecationWarning, match=r"Use get_xxx_id\(\) methods"):
        driver = plait.get_runtime_context().get()
    assert set(driver) == {"job_id", "node_id", "namespace"}
    in_task, resources, name = plait.get(context_in_task.remote(), timeout=30)
    assert set(in_task) == {"job_id", "node_id", "namespace", "task_id"}
    assert in_task["job_id"] == driver["job_id"] and in_task["task_id"].hex()
    assert (resources, name) == ({"CPU": 1.0}, "context_in_task")
    wide = context_in_task.options(num_cpus=2, name="wide").remote()
    assert plait.get(wide, timeout=30)[1:] == ({"CPU": 2.0}, "wide")
    in_actor, resources, name, _, _ = plait.get(Introspective.remote().context.remote(),
                                                timeout=30)
    assert set(in_actor) == {"job_id", "node_id", "namespace", "task_id", "actor_id"}
    assert (resources, name) == ({}, "Introspective.context")
    holding = Introspective.options(num_cpus=1).remote()
    assert plait.get(holding.context.remote(), timeout=30)[1] == {"CPU": 1.0}
    renamed = holding.context.options(name="looked").remote()      # a call's own name
    assert plait.get(renamed, timeout=30)[2] == "looked"


@plait.remote
def names_in_task():
    import warnings

    context = plait.get_runtime_context()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = context.task_id.hex()
    return (context.get_task_function_name(), context.get_actor_name(),
            old == context.get_task_id(), [str(w.message) for w in caught])


@plait.remote
class Named:
    def names(self):
        context = plait.get_runtime_context()
        return context.get_task_function_name(), context.get_actor_name()

    async def names_async(self):
        return plait.get_runtime_context().get_task_function_name()


def test_the_context_names_the_code_and_the_actor_and_old_ids_warn_as_in_ray(cluster):
    assert plait.get(names_in_task.remote(), timeout=30) == (
        f"{__name__}.names_in_task", None, True, ["Use get_task_id() instead"])
    named = Named.options(name="named-for-context").remote()
    assert plait.get(named.names.remote(), timeout=30) == (f"{__name__}.Named.names",
                                                           "named-for-context")
    assert plait.get(Named.remote().names.remote(), timeout=30)[1] == ""
    scoped = Named.options(name="in-a-namespace", namespace="ns").remote()
    assert plait.get(scoped.names.remote(), timeout=30)[1] == "in-a-namespace"  # as Ray's
    # Ray names an async method by its __qualname__ (here the same as class.method)
    assert plait.get(Named.remote().names_async.remote(), timeout=30) == \
        f"{__name__}.Named.names_async"
    driver = plait.get_runtime_context()
    assert driver.get_task_function_name() is None and driver.get_actor_name() is None
    with pytest.warns(DeprecationWarning, match=r"Use get_node_id\(\) instead"):
        assert driver.node_id == driver.get_node_id()


@plait.remote
def context_facts():
    context = plait.get_runtime_context()
    return (context.get_task_id(), context.get_worker_id(), context.get_node_labels(),
            context.get_runtime_env_string())


@plait.remote
class EnvReader:
    def facts(self):
        context = plait.get_runtime_context()
        return context.get_runtime_env_string(), context.get_worker_id()


def test_the_context_gives_rays_task_id_worker_id_labels_and_runtime_env(cluster):
    import json

    ref = context_facts.remote()
    task, worker, labels, env = plait.get(ref, timeout=30)
    assert ref.task_id().hex() == task                  # the task that made it, as in Ray
    assert labels == {"ray.io/node-id": "node-0"} and env == "{}"
    with_env = context_facts.options(runtime_env={"env_vars": {"PLAIT_CONTEXT": "1"}})
    assert json.loads(plait.get(with_env.remote(), timeout=30)[3]) == \
        {"env_vars": {"PLAIT_CONTEXT": "1"}}
    actor = EnvReader.options(runtime_env={"env_vars": {"PLAIT_CONTEXT": "2"}}).remote()
    env, actor_worker = plait.get(actor.facts.remote(), timeout=30)
    assert json.loads(env) == {"env_vars": {"PLAIT_CONTEXT": "2"}}   # the actor's, each call
    driver = plait.get_runtime_context()
    assert driver.get_worker_id() == plait.get_runtime_context().get_worker_id()
    assert driver.get_worker_id() not in (None, worker, actor_worker)
    assert driver.get_runtime_env_string() == "{}"
    assert driver.runtime_env == {} and not driver.should_capture_child_tasks_in_placement_group
    assert driver.get_node_labels() == {"ray.io/node-id": driver.get_node_id()}


def test_an_actor_calls_itself_through_current_actor(cluster):
    actor = Introspective.remote()
    assert plait.get(plait.get(actor.call_myself.remote("hello"), timeout=30), timeout=30) \
        == "hello"


def test_a_restarted_actor_knows_it_was_reconstructed(cluster):
    actor = Introspective.options(max_restarts=1).remote()
    assert plait.get(actor.context.remote(), timeout=30)[3:] == (False, False)
    with pytest.raises(plait.ActorDiedError):
        plait.get(actor.crash.remote(), timeout=30)
    assert plait.get(actor.context.remote(), timeout=30)[3:] == (True, True)


# -- an actor ending itself: exit_actor() and __ray_terminate__ ----------------------------

@plait.remote(max_restarts=3, max_task_retries=3)
class Closing:
    def __init__(self, path):
        import atexit

        self.path = path
        atexit.register(self.write, "atexit ran")

    def write(self, text):
        with open(self.path, "a") as f:
            f.write(text + "\n")
        return text

    def leave(self):
        try:
            plait.actor.exit_actor()
        except Exception:                   # a SystemExit: the method cannot swallow it
            return "swallowed"

    def pid(self):
        import os

        return os.getpid()

    def __del__(self):              # after atexit: its handler (a bound method) held self
        self.write("__del__ ran")


def test_exit_actor_ends_the_actor_cleanly_for_good(cluster, tmp_path):
    from tests.cluster.test_actors import wait_exit

    log = tmp_path / "log"
    actor = Closing.remote(str(log))
    pid = plait.get(actor.pid.remote(), timeout=30)
    before = actor.write.remote("before")
    leaving = actor.leave.remote()
    after = actor.write.remote("after")
    assert plait.get(before, timeout=30) == "before"
    for ref in (leaving, after, actor.write.remote("later")):
        with pytest.raises(plait.ActorDiedError, match="exit_actor"):
            plait.get(ref, timeout=30)
    assert wait_exit(pid)
    assert log.read_text().splitlines() == ["before", "atexit ran",   # no restart, no retry
                                            "__del__ ran"]


def test_ray_terminate_ends_the_actor_after_the_calls_before_it(cluster, tmp_path):
    log = tmp_path / "log"
    actor = Closing.remote(str(log))
    first = actor.write.remote("first")
    plait.wait([actor.__ray_terminate__.remote()], timeout=30)
    assert plait.get(first, timeout=30) == "first"
    with pytest.raises(plait.ActorDiedError):
        plait.get(actor.write.remote("later"), timeout=30)
    assert log.read_text().splitlines() == ["first", "atexit ran", "__del__ ran"]


def test_exit_actor_outside_an_actor_is_a_type_error(cluster):
    with pytest.raises(TypeError, match="inside an actor"):
        plait.actor.exit_actor()

    @plait.remote
    def in_a_task():
        plait.actor.exit_actor()

    with pytest.raises(TypeError, match="inside an actor"):
        plait.get(in_a_task.remote(), timeout=30)


# -- class attributes inside an actor's methods --------------------------------------------

class Shelf:
    WIDTH = 80

    @staticmethod
    def fits(width):
        return width <= Shelf.WIDTH


@plait.remote
class Library(Shelf):
    BOOKS = 3

    @classmethod
    def capacity(cls):
        return cls.BOOKS * cls.WIDTH

    def check(self):
        return (Library.BOOKS, Library.WIDTH, Library.fits(10), Library.capacity(),
                self.__class__.BOOKS, type(self).capacity())


def test_class_and_static_attributes_are_reachable_inside_methods(cluster):
    assert plait.get(Library.remote().check.remote(), timeout=30) == (3, 80, True, 240, 3, 240)

    @plait.remote
    class Local:                           # its methods see Local through a closure
        X = 5

        @staticmethod
        def twice():
            return 2 * Local.X

        def check(self):
            return Local.X, Local.twice()

    assert plait.get(Local.remote().check.remote(), timeout=30) == (5, 10)
    assert (Library.BOOKS, Library.capacity(), Local.twice()) == (3, 240, 10)  # driver side


# -- ActorPool -----------------------------------------------------------------------------

@plait.remote
class Doubler:
    def double(self, x):
        return 2 * x

    @plait.method(num_returns=2)
    def halves(self, x):
        return x // 2, x - x // 2

    def slow(self, seconds):
        import time

        time.sleep(seconds)
        return "slow"


def test_a_pool_refuses_an_actor_it_has_and_takes_a_new_one(cluster):
    from plait.util import ActorPool

    first, second = Doubler.remote(), Doubler.remote()
    pool = ActorPool([first])
    pool.submit(lambda actor, v: actor.double.remote(v), 1)
    with pytest.raises(ValueError, match="already"):
        pool.push(first)                                # busy
    pool.push(second)
    with pytest.raises(ValueError, match="already"):
        pool.push(second)                               # idle
    assert pool.has_free() and pool.get_next(timeout=30) == 2


def test_a_pool_carries_methods_with_several_results(cluster):
    from plait.util import ActorPool

    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    for value in (3, 4, 5):
        pool.submit(lambda actor, v: actor.halves.remote(v), value)
    assert [pool.get_next(timeout=30) for _ in range(3)] == [[1, 2], [2, 2], [2, 3]]
    assert sorted(pool.map_unordered(lambda actor, v: actor.halves.remote(v), [6, 8])) == [
        [3, 3], [4, 4]]


def test_map_submits_at_once_and_returns_only_its_own_values(cluster):
    from plait.util import ActorPool

    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    pool.submit(lambda actor, v: actor.slow.remote(v), 0.5)     # never read
    pool.submit(lambda actor, v: actor.double.remote(v), 100)   # never read either
    results = pool.map(lambda actor, v: actor.double.remote(v), [1, 2, 3])
    assert pool.has_next()                             # submitted before the first next()
    assert list(results) == [2, 4, 6]
    pool.submit(lambda actor, v: actor.slow.remote(v), 5)
    with pytest.raises(TimeoutError):
        pool.get_next(timeout=0.1, ignore_if_timedout=True)
    assert not pool.has_next() and pool.has_free()     # dropped; its actor is free again


@plait.remote
class Quitter:
    def __init__(self):
        self.calls = 0

    @plait.method(max_task_retries=2)
    def quit_once(self, code, flag):
        import os
        import sys

        if not os.path.exists(flag):
            open(flag, "w").close()
            sys.exit(code)
        return "came back"


def test_sys_exit_with_an_error_code_is_a_crash_and_zero_an_end(cluster, tmp_path):
    crashed = Quitter.options(max_restarts=1).remote()
    assert plait.get(crashed.quit_once.remote(3, str(tmp_path / "a")), timeout=30) == \
        "came back"                                     # restarted, the call retried
    ended = Quitter.options(max_restarts=1).remote()
    with pytest.raises(plait.ActorDiedError, match="exit_actor"):
        plait.get(ended.quit_once.remote(0, str(tmp_path / "b")), timeout=30)


# -- a BaseException of the user's -----------------------------------------------------------

class Abort(BaseException):
    """A user's error class that is not an Exception (as some libraries' are)."""


@plait.remote
def aborts(path):
    with open(path, "a") as log:
        log.write("ran ")
    raise Abort("stop here")


@plait.remote
class Aborter:
    def now(self):
        raise Abort("sync")

    async def later(self):
        raise Abort("async")


def test_a_users_base_exception_is_a_task_error_run_once_not_a_crash(cluster, tmp_path):
    """Ray: one attempt, an error that is the user's class too. Before, the worker died with
    it and the task ran 4 times (a crash's retries), then WorkerCrashedError."""
    log = tmp_path / "log"
    with pytest.raises(Abort, match="stop here") as raised:
        plait.get(aborts.remote(str(log)), timeout=60)
    assert isinstance(raised.value, plait.TaskError) and log.read_text() == "ran "
    aborter = Aborter.remote()
    for call, words in ((aborter.now, "sync"), (aborter.later, "async")):
        with pytest.raises(Abort, match=words):
            plait.get(call.remote(), timeout=60)


@plait.remote
def fails_when(path):
    import os
    import time

    while not os.path.exists(path):
        time.sleep(0.005)
    raise ValueError("unrelated")


@plait.remote
def after_failure_of(refs, path):
    """Ends after the failure of ``refs[0]`` is known: the head tells the driver of that
    failure before it tells it of this result."""
    open(path, "w").close()
    plait.wait(refs, timeout=30)
    return "mine"


def test_a_failure_a_get_did_not_ask_for_does_not_end_it(cluster, tmp_path):
    """The driver hears of a failure it subscribed to earlier while a get waits for other
    refs: that get still returns its own values (it raised KeyError)."""
    failing = fails_when.remote(str(tmp_path / "go"))
    plait.wait([failing], timeout=0.1)             # the driver now follows it
    assert plait.get(after_failure_of.remote([failing], str(tmp_path / "go")),
                     timeout=30) == "mine"
    with pytest.raises(ValueError, match="unrelated"):
        plait.get(failing, timeout=30)


# -- "Unhandled error" ---------------------------------------------------------------------

@plait.remote
def fails(word):
    raise ValueError(f"failed: {word}")


@plait.remote
def echo(word):
    return word


class Heard(logging.Handler):
    """The messages plait logs; ``arrived[n]`` is set once ``n + 1`` came."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages: list[str] = []
        self.arrived = [threading.Event() for _ in range(3)]

    def emit(self, record):
        self.messages.append(record.getMessage())
        if len(self.messages) <= len(self.arrived):
            self.arrived[len(self.messages) - 1].set()


def test_a_failed_task_whose_refs_went_without_a_get_is_logged_as_ray_logs_it(cluster):
    heard = Heard()
    logger = logging.getLogger("plait.session")
    logger.addHandler(heard)
    try:
        fails.remote("dropped")                  # its ref goes at once; no call follows
        assert heard.arrived[0].wait(timeout=30)  # the session looks in while all is quiet
        assert len(heard.messages) == 1
        assert heard.messages[0].startswith("Unhandled error (suppress with "
                                            "'RAY_IGNORE_UNHANDLED_ERRORS=1'): task ")
        assert "failed: dropped" in heard.messages[0]
        asked = fails.remote("asked")
        with pytest.raises(ValueError, match="failed: asked"):
            plait.get(asked, timeout=30)
        del asked
        read = echo.remote(fails.remote("read"))  # its error goes on into echo's, logged once
        del read
        # (the head hears of asked's Free before read's failure: its report would come first)
        assert heard.arrived[1].wait(timeout=30)
        assert "failed: read" in heard.messages[1]
        assert plait.get(echo.remote("after"), timeout=30) == "after"
        assert len(heard.messages) == 2
        waited = fails.remote("waited")           # a wait sees it fail, nothing raises it
        ready, _ = plait.wait([waited], timeout=30)
        assert ready == [waited]
        del waited, ready
        assert heard.arrived[2].wait(timeout=30)
        assert "failed: waited" in heard.messages[2] and len(heard.messages) == 3
    finally:
        logger.removeHandler(heard)


# -- one of plait's errors as a value ----------------------------------------------------

@plait.remote
def returns_an_error(message):
    return plait.exceptions.GetTimeoutError(message)


@plait.remote
def kind_of(value):
    return type(value).__name__


def test_a_value_that_is_one_of_plaits_errors_is_raised_by_get_as_rays_get_raises_it(cluster):
    for ref in (returns_an_error.remote("returned"),
                plait.put(plait.exceptions.GetTimeoutError("put"))):
        with pytest.raises(plait.exceptions.GetTimeoutError):
            plait.get(ref, timeout=30)
        with pytest.raises(plait.TaskError) as caught:       # as an argument: the task fails
            plait.get(kind_of.remote(ref), timeout=30)
        assert isinstance(caught.value, plait.exceptions.GetTimeoutError)
    assert plait.get(kind_of.remote(ValueError("an exception of the user's")),
                     timeout=30) == "ValueError"              # only plait's errors are raised
