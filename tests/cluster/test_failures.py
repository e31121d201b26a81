"""Task errors, timeouts, bad arguments and crashing workers: errors, never hangs."""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time

import pytest

import plait
from tests.cluster.gates import wait_for_file

pytestmark = pytest.mark.cluster


class CustomError(Exception):
    pass


@plait.remote
def fail(message):
    raise CustomError(message)


@plait.remote
def inc(x):
    return x + 1


def crash_with(how: str) -> None:
    if how == "exit":
        os._exit(3)
    if how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    ctypes.string_at(0)                          # segfault


@plait.remote
def crash_and_count(path, how):
    with open(path, "a") as f:
        f.write("attempt\n")
    crash_with(how)


@plait.remote
def crash_first_time(path):
    if not os.path.exists(path):
        open(path, "w").close()
        crash_with("sigkill")
    return "recovered"


def test_task_error_is_also_the_users_exception(cluster):
    with pytest.raises(CustomError) as caught:
        plait.get(fail.remote("boom"))
    error = caught.value
    assert isinstance(error, plait.TaskError)
    assert error.function_name == "fail" and error.node == "node-0"
    assert "boom" in str(error) and "in fail" in error.remote_traceback
    assert isinstance(error.cause, CustomError)


def test_dependents_of_a_failed_task_fail_with_its_error(cluster):
    downstream = inc.remote(inc.remote(fail.remote("root cause")))
    with pytest.raises(plait.TaskError, match="root cause"):
        plait.get(downstream)
    assert plait.get(inc.remote(1)) == 2                 # the cluster goes on


def test_get_timeout_raises_and_the_task_goes_on(cluster, tmp_path):
    release = tmp_path / "go"
    ref = wait_for_file.remote(str(release))
    with pytest.raises(plait.GetTimeoutError) as caught:
        plait.get(ref, timeout=0.1)
    assert isinstance(caught.value, TimeoutError)
    release.touch()
    assert plait.get(ref, timeout=30) == "done"


def test_wait_with_timeout_returns_what_is_ready(cluster, tmp_path):
    release = tmp_path / "go"
    slow, quick = wait_for_file.remote(str(release)), inc.remote(1)
    ready, pending = plait.wait([slow, quick], num_returns=2, timeout=5)
    assert ready == [quick] and pending == [slow]
    release.touch()
    assert plait.get(slow) == "done"


def test_unserialisable_argument_fails_at_submission(cluster):
    with pytest.raises(plait.SerializationError, match=r"argument 0 of inc\(\).*lock"):
        inc.remote(threading.Lock())
    with pytest.raises(TypeError):                        # SerializationError is a TypeError
        inc.remote(x=threading.Lock())


@pytest.mark.parametrize("how", ["exit", "sigkill", "segfault"])
def test_crashing_task_is_retried_then_fails(cluster, tmp_path, how):
    path = tmp_path / "attempts"
    ref = crash_and_count.options(max_retries=1).remote(str(path), how)
    with pytest.raises(plait.WorkerCrashedError) as caught:
        plait.get(ref, timeout=60)
    assert path.read_text().count("attempt") == 2
    assert len(caught.value.attempts) == 2 and "node-0 worker" in str(caught.value)
    assert plait.get(inc.remote(1), timeout=30) == 2      # workers were replaced


def test_crash_with_no_retries_fails_at_once(cluster, tmp_path):
    path = tmp_path / "attempts"
    with pytest.raises(plait.WorkerCrashedError):
        plait.get(crash_and_count.options(max_retries=0).remote(str(path), "sigkill"), timeout=60)
    assert path.read_text().count("attempt") == 1


def test_tasks_two_levels_below_a_crash_out_of_retries_fail_with_it(cluster, tmp_path):
    """The chain runs fused on one worker; its last task was left waiting for ever."""
    crashed = crash_and_count.options(max_retries=0).remote(str(tmp_path / "n"), "exit")
    with pytest.raises(plait.WorkerCrashedError):
        plait.get(inc.remote(inc.remote(inc.remote(crashed))), timeout=30)


def test_transient_crash_is_retried_transparently(cluster, tmp_path):
    assert plait.get(crash_first_time.remote(str(tmp_path / "once")), timeout=60) == "recovered"


def test_unknown_node_pin_is_a_plan_error(cluster):
    with pytest.raises(plait.PlanError, match="node-7"):
        plait.get(inc.options(node="node-7").remote(1))


@plait.remote
def flaky(path, fail_times, kind):
    with open(path, "a") as f:
        f.write("x")
    with open(path) as f:
        attempts = len(f.read())
    if attempts <= fail_times:
        raise kind(f"attempt {attempts}")
    return attempts


@pytest.mark.parametrize("option", [True, [ConnectionError]])
def test_retry_exceptions_retries_named_user_errors(cluster, tmp_path, option):
    path = tmp_path / "n"
    ref = flaky.options(retry_exceptions=option, max_retries=3).remote(str(path), 2,
                                                                        ConnectionError)
    assert plait.get(ref) == 3


def test_user_errors_are_not_retried_by_default_nor_when_not_named(cluster, tmp_path):
    with pytest.raises(ValueError):
        plait.get(flaky.remote(str(tmp_path / "a"), 1, ValueError))
    assert (tmp_path / "a").read_text() == "x"
    named = flaky.options(retry_exceptions=[ConnectionError], max_retries=3)
    with pytest.raises(ValueError):
        plait.get(named.remote(str(tmp_path / "b"), 1, ValueError))
    assert (tmp_path / "b").read_text() == "x"


def test_retry_exceptions_gives_up_after_max_retries(cluster, tmp_path):
    path = tmp_path / "n"
    with pytest.raises(ConnectionError, match="attempt 2"):
        plait.get(flaky.options(retry_exceptions=True, max_retries=1).remote(
            str(path), 5, ConnectionError))
    assert path.read_text() == "xx"


def test_cancel_stops_running_and_pending_tasks(cluster, tmp_path):
    running = wait_for_file.remote(str(tmp_path / "never"))
    downstream = inc.remote(running)
    lazy = inc.remote(running)          # pending behind running, so it cannot finish first
    plait.wait([running], timeout=0)                    # submitted; it blocks its worker
    plait.cancel([running, lazy])
    with pytest.raises(plait.TaskCancelledError):
        plait.get(running, timeout=30)
    with pytest.raises(plait.TaskCancelledError):
        plait.get(downstream, timeout=30)
    with pytest.raises(plait.TaskCancelledError):
        plait.get(lazy, timeout=30)
    assert plait.get([inc.remote(i) for i in range(4)], timeout=30) == [1, 2, 3, 4]


def test_cancel_of_a_finished_task_changes_nothing(cluster):
    done = inc.remote(1)
    assert plait.get(done) == 2
    plait.cancel(done)
    assert plait.get(done) == 2


@plait.remote
def hog(mib, count_path):
    with open(count_path, "a") as f:
        f.write("x")
    block = bytearray(mib << 20)              # touched, so it is resident
    for i in range(0, len(block), 4096):
        block[i] = 1
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:        # hold it until the monitor acts
        time.sleep(0.01)
    return len(block)


def test_memory_monitor_kills_a_worker_over_its_limit_then_fails_the_task(fresh, tmp_path):
    plait.init(num_workers=1, worker_memory_limit=300 << 20)
    path = tmp_path / "attempts"
    with pytest.raises(plait.OutOfMemoryError) as caught:
        plait.get(hog.options(max_retries=1).remote(400, str(path)), timeout=60)
    assert isinstance(caught.value, MemoryError) and "too much memory" in str(caught.value)
    assert path.read_text() == "xx"                     # tried twice, under its own budget
    assert plait.get(inc.remote(1), timeout=30) == 2     # the node and a new worker go on


@plait.remote
def stop_first_time(path):
    if not os.path.exists(path):
        open(path, "w").close()
        os.kill(os.getpid(), signal.SIGSTOP)      # hangs here until the node gives up on it
    return "resumed elsewhere"


def test_a_stopped_worker_is_taken_for_dead_and_its_task_retried(cluster, tmp_path):
    ref = stop_first_time.remote(str(tmp_path / "stopped"))
    assert plait.get(ref, timeout=60) == "resumed elsewhere"


@plait.remote
def its_pid():
    return os.getpid()


def test_a_killed_forker_is_reaped_once_the_node_finds_it_gone(fresh):
    """The node then spawns its workers; the forker does not stay a zombie till shutdown."""
    import psutil

    plait.init(num_workers=1)
    plait.get(its_pid.remote(), timeout=30)
    node = next(c for c in psutil.Process().children() if "plait.executor" in
                " ".join(c.cmdline()))
    named = {child.name(): child for child in node.children()}
    os.kill(named["plait-forker"].pid, signal.SIGKILL)
    os.kill(named["plait-worker"].pid, signal.SIGKILL)          # a new worker is asked for
    assert plait.get(its_pid.remote(), timeout=30) != named["plait-worker"].pid
    assert not psutil.pid_exists(named["plait-forker"].pid)      # reaped, not a zombie
