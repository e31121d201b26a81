"""benchmarks/chaos.py's guard against a tree edited under a running soak: pure, no cluster.

Seed 7 of a soak (2026-12-04) reported 10 lost results, each ``NameError: name
'split_returns' is not defined`` on one replacement node: the node was started while
plait/executor/worker.py was being edited in place (the call added, its import not yet),
and every ``num_returns=2`` task its worker ran failed. The soak now says when plait's
sources changed while it ran.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import benchmark_module


@pytest.fixture(scope="module")
def chaos():
    with benchmark_module("chaos") as module:
        yield module


def test_an_edit_to_plaits_sources_during_a_soak_is_reported(chaos, tmp_path):
    package = tmp_path / "plait"
    (package / "executor").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    worker = package / "executor" / "worker.py"
    worker.write_text("from plait.graph.task import decode_call\n")
    before = chaos.source_stamp(package)
    assert chaos.sources_changed(before, chaos.source_stamp(package)) == []

    worker.write_text("from plait.graph.task import decode_call, split_returns\n")
    os.utime(worker, ns=(before["executor/worker.py"] + 1_000_000,) * 2)
    (package / "added.py").write_text("")
    assert chaos.sources_changed(before, chaos.source_stamp(package)) == [
        "added.py", "executor/worker.py"]


def test_the_stamp_covers_the_plait_the_soak_imported(chaos):
    import plait

    stamp = chaos.source_stamp()
    assert "executor/worker.py" in stamp and "graph/task.py" in stamp
    assert Path(plait.__file__).resolve().parent.joinpath("executor/worker.py").exists()
