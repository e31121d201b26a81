"""The node's bookkeeping without processes: workers are handles, messages are recorded."""

from __future__ import annotations

import os

import pytest

from plait.executor import protocol as p
from plait.executor.node import Node
from plait.executor.workers import WorkerHandle
from plait.store.arena import Arena
from plait.store.store import ObjectStore

MIB = 1 << 20


@pytest.fixture
def node():
    arena = Arena.create(f"plait-test-{os.getpid()}-node", 4 * MIB)
    sent: list[tuple[bytes, p.Message]] = []
    workers = [WorkerHandle(i, -1, -1, f"w{i}".encode(), ready=True) for i in range(2)]
    made = Node("node-0", ObjectStore("node-0", arena, None), workers, "ipc://unused",
                up=lambda message: None, to_worker=lambda i, m: sent.append((i, m)),
                watch=lambda fd: None)
    made.num_workers = 0                  # never start a stand-in process in these tests
    made.sent = sent
    yield made
    arena.unlink()
    arena.close()


def spec(task_id: str, **fields) -> p.TaskSpec:
    return p.TaskSpec(task_id, "f@1", "f", b"", (), (), (task_id,), 3, "node-0", **fields)


def test_every_blocked_gets_exactly_one_skip_even_with_nothing_queued(node):
    node.on_worker(b"w0", p.Blocked(0))
    assert node.sent == [(b"w0", p.Skip(()))]


def test_tasks_queued_behind_a_blocked_task_are_taken_back_and_skipped(node):
    node.functions["f@1"] = b""
    node.on_Assign(p.Assign((), tuple(spec(f"t{i}") for i in range(3))))
    worker = node.workers[b"w0"]
    node.send_items(worker, [node.work_item(t) for t in ("t0", "t1", "t2")])
    node.sent.clear()
    node.on_worker(b"w0", p.Blocked(0))
    assert node.sent == [(b"w0", p.Skip(("t1", "t2")))]
    assert list(worker.inflight) == ["t0"]
    assert {node.table.ready.popleft() for _ in range(2)} == {"t1", "t2"}


def test_an_actor_process_that_blocks_keeps_its_calls(node):
    worker = node.workers[b"w1"]
    worker.actor = "Counter-1"
    worker.inflight.update({"call-1": 0, "call-2": 0})
    node.on_worker(b"w1", p.Blocked(1))
    assert node.sent == [(b"w1", p.Skip(()))]
    assert list(worker.inflight) == ["call-1", "call-2"] and not worker.blocked
