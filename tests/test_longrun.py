"""benchmarks/longrun.py's warm-up rule (issue 11, flat memory): pure, no cluster.

A worker's first task of a kind copies the pages it shares with its node that hold the
code that task runs for the first time (an inline result's pickling, a nested task's
session and compiler): up to ~1.5 MiB once, not growth. A stand-in meets them late, so
its baseline comes after them.
"""

from __future__ import annotations

import doctest

import pytest

from tests.conftest import benchmark_module


@pytest.fixture(scope="module")
def longrun():
    with benchmark_module("longrun") as module:
        yield module


def test_a_stand_ins_baseline_comes_after_its_first_task_of_a_kind(longrun):
    row = [None, 6.1, 6.2, 7.3, 7.4]     # first seen at 1; its first inline task before 3
    assert longrun.baseline(row) == 2
    assert longrun.baseline(row, warm=3) == 3
    assert longrun._growth(row, longrun.baseline(row, warm=3)) == pytest.approx(0.0137)


def test_a_first_task_of_a_kind_never_moves_a_baseline_earlier(longrun):
    assert longrun.baseline([3.0, 8.0, 8.1], warm=1) == 1
    assert longrun.baseline([None, None, 6.0, 7.0], warm=1) == 3


def test_a_worker_is_warm_after_its_last_first_run_of_a_kind(longrun):
    run = longrun.Run()
    run.checkpoints = [0]
    run.ran({(101, "tiny"), (101, "nested"), (102, "tiny")})
    run.checkpoints.append(100_000)
    run.ran({(101, "tiny"), (102, "inline"), (103, "tiny")})
    assert (run.warm(101), run.warm(102), run.warm(103), run.warm(104)) == (1, 2, 2, None)


def test_the_examples_in_longrun_hold(longrun):
    result = doctest.testmod(longrun, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_pages_that_change_hands_are_not_growth_but_pages_added_are(longrun):
    """A forker whose child exited: USS up, no page added. A leak: both up, counted."""
    forker_uss, forker_anon = [3.4, 3.4, 3.4, 3.8], [14.5, 14.5, 14.5, 14.5]
    assert longrun._growth(forker_uss, 1) == pytest.approx(0.1176)
    assert longrun._added(forker_uss, forker_anon, 1) == 0.0
    leak_uss, leak_anon = [30.0, 30.0, 31.5, 33.5], [40.0, 40.0, 41.5, 43.5]
    assert longrun._added(leak_uss, leak_anon, 1) == pytest.approx(3.5)
    assert longrun._added([30.0, 30.0, 29.0], [40.0, 40.0, 44.0], 1) == pytest.approx(-1.0)
