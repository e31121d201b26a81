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


def test_the_cluster_is_still_usable_afterwards(one_worker):
    assert plait.get([square.remote(i) for i in range(5)]) == [0, 1, 4, 9, 16]
