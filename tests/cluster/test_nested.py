"""Tasks that submit tasks and wait for them, as Ray programs do: no deadlock on 1 worker."""

from __future__ import annotations

import os

import pytest

import plait

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def one_worker():
    plait.shutdown()
    plait.init(num_workers=1)
    yield
    plait.shutdown()
    from tests.conftest import assert_nothing_leaked

    assert_nothing_leaked()


@plait.remote
def fib(n):
    if n < 2:
        return n
    return sum(plait.get([fib.remote(n - 1), fib.remote(n - 2)]))


@plait.remote
def square(x):
    return x * x


@plait.remote
def fan_out_and_gather(n):
    refs = [square.remote(i) for i in range(n)]
    ready, pending = plait.wait(refs, num_returns=n, timeout=30)
    assert pending == []
    return sum(plait.get(ready))


@plait.remote
def make_tree(depth):
    if depth == 0:
        return [plait.put(depth)]
    children = [make_tree.remote(depth - 1) for _ in range(2)]
    return [ref for child in plait.get(children) for ref in child]


def test_recursion_on_a_single_worker_does_not_deadlock(one_worker):
    assert plait.get(fib.remote(5), timeout=120) == 5


def test_a_task_fans_out_and_gathers(one_worker):
    assert plait.get(fan_out_and_gather.remote(12), timeout=60) == sum(i * i for i in range(12))


def test_refs_made_inside_tasks_reach_the_driver(one_worker):
    leaves = plait.get(make_tree.remote(2), timeout=60)
    assert len(leaves) == 4 and plait.get(leaves) == [0, 0, 0, 0]


@plait.remote
class Squares:
    def square(self, x):
        return x * x


@plait.remote
def get_in_a_loop(marks, squares, times):
    """Block on an actor's call again and again, leaving a file for each run of this task."""
    open(os.path.join(marks, str(os.getpid()) + os.urandom(4).hex()), "w").close()
    return sum(plait.get(squares.square.remote(k)) for k in range(times))


def test_tasks_that_block_again_and_again_each_run_once(one_worker, tmp_path):
    """Ray's test_actor_max_concurrency pattern: many tasks on one worker, each a loop of
    gets. Tasks queued behind a blocked one are handed back at every block; a task handed
    back twice from one worker ran twice there (and copies ran on after the driver had
    every result)."""
    squares = Squares.remote()
    refs = [get_in_a_loop.remote(str(tmp_path), squares, 50) for _ in range(20)]
    assert plait.get(refs, timeout=120) == [sum(k * k for k in range(50))] * 20
    assert len(os.listdir(tmp_path)) == 20


@plait.remote
def refuses(word):
    raise KeyError(word)


@plait.remote
def passes_on(word):
    return plait.get(refuses.remote(word))


def test_a_failure_passed_up_through_a_task_names_the_users_exception_as_its_cause(one_worker):
    """As Ray's: ``e.cause`` is the exception the innermost task raised, not the TaskError
    of the task between, which stays in the chain (``__cause__``) for the traceback."""
    with pytest.raises(KeyError) as caught:
        plait.get(passes_on.remote("k"), timeout=60)
    error = caught.value
    assert isinstance(error, plait.TaskError) and error.function_name == "passes_on"
    assert type(error.cause) is KeyError and error.cause.args == ("k",)
    assert "refuses" in str(error)


def test_the_cluster_is_still_usable_afterwards(one_worker):
    assert plait.get([square.remote(i) for i in range(5)]) == [0, 1, 4, 9, 16]


@plait.remote
def nested_session_shares_the_workers_context():
    """Run a nested get, then say whether the worker's session rides the worker's own ZeroMQ
    context (a context of its own starts two more threads in the worker)."""
    from plait.graph import context

    assert plait.get(square.remote(3)) == 9
    runtime = context.active()
    return runtime.session.conn.ctx is runtime.sock.context


@plait.remote
def pid_after(value):
    return os.getpid(), value


def test_a_workers_nested_session_uses_the_workers_own_zeromq_context(one_worker):
    assert plait.get(nested_session_shares_the_workers_context.remote(), timeout=60) is True


def test_a_worker_that_ran_nested_tasks_goes_on_running_plain_ones(one_worker):
    first = plait.get(fib.remote(4), timeout=60)
    pids = {pid for pid, _ in plait.get([pid_after.remote(i) for i in range(20)], timeout=60)}
    again = plait.get([pid_after.remote(fib.remote(3)) for _ in range(3)], timeout=60)
    assert first == 3 and [value for _, value in again] == [2, 2, 2]
    assert len(pids) == 1                   # one worker, still the same process


@plait.remote
def driver_session_already_imported():
    import sys

    return "plait.executor.driver.session" in sys.modules


def test_workers_start_with_the_nested_session_code_shared_with_their_node(fresh):
    """The node imports the session's modules before it forks: a worker's first nested task
    then uses pages it shares with the node instead of importing its own copies (0.75 MiB
    of the ~2.3 MiB step a worker took at its first nested task, measured on one worker)."""
    plait.init(num_workers=1)
    assert plait.get(driver_session_already_imported.remote(), timeout=60) is True
