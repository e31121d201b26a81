"""The head's routing without processes: its own node is real, everything else recorded."""

from __future__ import annotations

import os

import pytest

from plait.executor import protocol as p
from plait.executor.head import Head
from plait.executor.node import Node
from plait.executor.workers import WorkerHandle
from plait.store.arena import Arena
from plait.store.store import ObjectStore

MIB = 1 << 20
DRIVER = (None, b"driver")


@pytest.fixture
def head():
    arena = Arena.create(f"plait-test-{os.getpid()}-head", 4 * MIB)
    workers = [WorkerHandle(0, -1, -1, b"w0", ready=True)]
    node = Node("node-0", ObjectStore("node-0", arena, None), workers, "ipc://unused",
                up=lambda message: None, to_worker=lambda i, m: None, watch=lambda fd: None)
    node.num_workers = 0
    info = p.NodeInfo("node-0", "ipc://unused", os.getpid(), True, 1, arena.name, 4 * MIB)
    to_client: list[tuple[object, p.Message]] = []
    made = Head("s-1", node, info, lambda peer, m: to_client.append((peer, m)),
                lambda node_id, m: None)
    node.up = lambda message: made.on_node("node-0", message)
    made.to_client_log = to_client
    yield made
    arena.unlink()
    arena.close()


def spec(task_id: str) -> p.TaskSpec:
    return p.TaskSpec(task_id, "f@1", "f", b"", (), (), (task_id,), 3, "node-0")


def ready_values(head: Head) -> list[str]:
    head.flush()
    return [oid for _, m in head.to_client_log if isinstance(m, p.Ready) for oid, _ in m.values]


def test_a_duplicated_tasks_done_finishes_once_and_deletes_no_copy(head):
    head.on_client(DRIVER, p.Submit((("f@1", b""),), (spec("t1"),)))
    head.on_client(DRIVER, p.Subscribe(("t1",)))
    offset = head.local.store.allocate("t1", MIB, "test")
    head.local.store.seal("t1")
    done = p.TasksDone((p.TaskResult("t1", 0, (("t1", p.Stored("node-0", MIB)),), 0.01),))
    head.on_node("node-0", done)
    head.on_node("node-0", done)                             # delivered twice
    assert ready_values(head) == ["t1"]                      # the driver hears it once
    assert head.deletes == {} and head.local.store.objects["t1"].offset == offset
    assert head.nodes["node-0"].queued == 0                  # no slot counted back twice


def test_messages_from_a_node_declared_dead_are_not_trusted(head):
    head.on_client(DRIVER, p.Submit((("f@1", b""),), (spec("t1"),)))
    head.on_node("node-7", p.TasksDone((p.TaskResult("t1", 0, (("t1", p.Inline(b"x")),),
                                                      0.01),)))
    assert "t1" in head.assigned and head.directory.lookup("t1") is None
