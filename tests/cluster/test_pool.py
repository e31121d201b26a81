"""plait.util.multiprocessing.Pool, Ray's ray.util.multiprocessing.Pool: multiprocessing's
Pool over plait actors."""

from __future__ import annotations

import os
import threading

import pytest

import plait
from plait.util.multiprocessing import Pool

pytestmark = pytest.mark.cluster

SEEN: list[str] = []


def square(x):
    return x * x


def power(x, y):
    return x ** y


def fails_on_three(x):
    if x == 3:
        raise ValueError(f"no {x}")
    return x


def remember(word):
    SEEN.append(word)


def seen_and(x):
    return (list(SEEN), x)


def pid(_):
    return os.getpid()


def test_map_starmap_and_apply_give_multiprocessings_results(cluster):
    with Pool(2) as pool:
        assert pool.map(square, range(10)) == [x * x for x in range(10)]
        assert pool.map(square, range(7), chunksize=3) == [x * x for x in range(7)]
        assert pool.starmap(power, [(2, 3), (3, 2)]) == [8, 9]
        assert pool.apply(power, (2, 10)) == 1024
        assert pool.map(square, []) == []
        assert list(pool.imap(square, range(5))) == [0, 1, 4, 9, 16]
        assert sorted(pool.imap_unordered(square, range(5), chunksize=2)) == [0, 1, 4, 9, 16]


def test_an_item_that_raises_fails_the_get_with_its_own_exception(cluster):
    with Pool(2) as pool:
        result = pool.map_async(fails_on_three, range(6))
        with pytest.raises(ValueError, match="no 3"):
            result.get(timeout=30)
        assert result.ready() and not result.successful()
        assert pool.map(fails_on_three, [1, 2]) == [1, 2]          # the pool goes on


def test_async_results_call_back_and_time_out_as_multiprocessings_do(cluster):
    got, failed, done = [], [], threading.Event()
    with Pool(1) as pool:
        pool.map_async(square, [1, 2], callback=lambda v: (got.append(v), done.set()))
        assert done.wait(30) and got == [[1, 4]]
        done.clear()
        pool.apply_async(fails_on_three, (3,), error_callback=lambda e: (failed.append(e),
                                                                         done.set()))
        assert done.wait(30) and isinstance(failed[0], ValueError)
        slow = pool.apply_async(plait_sleep, (5,))
        with pytest.raises(TimeoutError):
            slow.get(timeout=0.1)
        assert not slow.ready()


def plait_sleep(seconds):
    import time

    time.sleep(seconds)
    return seconds


def test_the_initializer_runs_once_in_each_process_and_maxtasksperchild_replaces_them(cluster):
    with Pool(1, initializer=remember, initargs=("ready",)) as pool:
        assert pool.apply(seen_and, (1,)) == (["ready"], 1)
    with Pool(1, maxtasksperchild=1) as pool:
        pids = pool.map(pid, range(3), chunksize=1)
        assert len(set(pids)) == 3                      # a fresh process per chunk


def test_a_closed_pool_takes_no_calls_and_join_waits_for_those_given(cluster):
    pool = Pool(2)
    result = pool.map_async(square, range(4))
    pool.close()
    with pytest.raises(ValueError, match="Pool not running"):
        pool.map(square, [1])
    pool.join()
    assert result.ready() and result.get() == [0, 1, 4, 9]
    with pytest.raises(ValueError, match="still running"):
        Pool(1).join()


def test_import_plait_as_ray_finds_it_where_ray_has_it(cluster):
    import plait as ray

    pool = ray.util.multiprocessing.Pool(processes=1)
    assert pool.map(square, [3]) == [9]
    pool.terminate()
    assert plait.is_initialized()
