"""benchmarks/longrun.py's warm-up rule (issue 11, flat memory): pure, no cluster.

A worker's first nested task copies the pages it shares with its node that hold the code
the task runs for the first time (its session's, the compiler's): ~1.5 MiB once, not
growth. A stand-in meets it late, so its baseline comes after it.
"""

from __future__ import annotations

import doctest
import importlib
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def longrun():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("longrun")
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_a_stand_ins_baseline_comes_after_its_first_nested_task(longrun):
    row = [None, 6.1, 6.2, 7.3, 7.4]     # first seen at 1; its first nested task before 3
    assert longrun.baseline(row) == 2
    assert longrun.baseline(row, nested=3) == 3
    assert longrun._growth(row, longrun.baseline(row, nested=3)) == pytest.approx(0.0137)


def test_a_first_nested_task_never_moves_a_baseline_earlier(longrun):
    assert longrun.baseline([3.0, 8.0, 8.1], nested=1) == 1
    assert longrun.baseline([None, None, 6.0, 7.0], nested=1) == 3


def test_the_run_keeps_the_checkpoint_after_each_workers_first_nested_task(longrun):
    run = longrun.Run()
    run.checkpoints = [0]
    run.ran_nested({101, 102})
    run.checkpoints.append(100_000)
    run.ran_nested({102, 103})
    assert run.nested == {101: 1, 102: 1, 103: 2}


def test_the_examples_in_longrun_hold(longrun):
    result = doctest.testmod(longrun, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
