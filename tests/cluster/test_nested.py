"""Tasks that submit tasks and wait for them, as Ray programs do: no deadlock on 1 worker."""

from __future__ import annotations

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


def test_the_cluster_is_still_usable_afterwards(one_worker):
    assert plait.get([square.remote(i) for i in range(5)]) == [0, 1, 4, 9, 16]
