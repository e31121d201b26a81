"""A generator task's values at its node, without processes: a worker's Yielded in, what
the node tells the head and the worker out (see Node.worker_Yielded)."""

from __future__ import annotations

import pytest

from plait.executor.node.invariants import node_problems
from plait.executor.wire import protocol as p
from plait.executor.wire.instructions import Dispatch, FromHead, FromWorker
from tests.executor.node.decisions import sent, tell, to_head
from tests.executor.node.test_node import spec

KIB = 1 << 10


@pytest.fixture
def running(node):
    """A streaming task running on worker w0."""
    node.functions["f@1"] = b""
    tell(node, FromHead(p.Assign((), (spec("gen", generator="streaming"),))))
    tell(node, Dispatch())
    (identity, message), = sent(node)
    assert identity == b"w0" and message.items[0].generator == "streaming"
    sent(node).clear()
    to_head(node).clear()
    return node


def written(node, worker: bytes, object_id: str, request: int = 1) -> p.Located:
    """What a worker does for a large value: ask for a block, write it (here: nothing)."""
    tell(node, FromWorker(worker, p.Alloc(request, object_id, 64 * KIB, "f")))
    (_, allocated), = sent(node)
    sent(node).clear()
    assert isinstance(allocated, p.Allocated) and not allocated.held
    return p.Located("node-0", allocated.offset, 64 * KIB)


def test_a_value_is_sealed_usable_here_and_announced_while_the_task_runs(running):
    node = running
    block = written(node, b"w0", "gen.0")
    tell(node, FromWorker(b"w0", p.Yielded("gen", 0, "gen.0", block)))
    stored = p.Stored("node-0", 64 * KIB)
    assert to_head(node) == [p.Yielded("gen", 0, "gen.0", stored)]
    assert node.values["gen.0"] == stored and node.store.objects["gen.0"].sealed
    assert "gen" in node.workers[b"w0"].inflight and node_problems(node) == []


def test_a_value_of_a_task_the_worker_no_longer_runs_is_dropped(running):
    node = running
    block = written(node, b"w0", "gen.0")
    tell(node, FromHead(p.Cancel(("gen",), force=True)))           # the worker is killed
    tell(node, FromWorker(b"w0", p.Yielded("gen", 0, "gen.0", block)))
    assert not [m for m in to_head(node) if isinstance(m, p.Yielded)]
    assert "gen.0" not in node.store.objects and "gen.0" not in node.values


def test_a_value_a_rerun_yields_again_is_not_written_twice(running):
    node = running
    block = written(node, b"w0", "gen.0")
    tell(node, FromWorker(b"w0", p.Yielded("gen", 0, "gen.0", block)))
    tell(node, FromWorker(b"w0", p.Alloc(2, "gen.0", 64 * KIB, "f")))   # the re-run's
    assert sent(node) == [(b"w0", p.Allocated(2, "gen.0", "node-0", -1, held=True))]
    assert node_problems(node) == []
