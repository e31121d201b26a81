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


def join_node(head: Head, node: str) -> None:
    info = p.NodeInfo(node, "ipc://unused", 0, False, 1, f"plait-test-{node}", 4 * MIB,
                      "another-host")
    head.on_node(node, p.NodeHello(info))


def task(task_id: str, node: str, *deps: str) -> p.TaskSpec:
    return p.TaskSpec(task_id, "f@1", "f", b"", deps, (), (task_id,), 3, node)


def finish_on(head: Head, node: str, task_id: str) -> None:
    stored = p.Stored(node, MIB)
    head.on_node(node, p.TasksDone((p.TaskResult(task_id, 0, ((task_id, stored),), 0.01),)))


def test_a_lost_result_whose_inputs_were_reclaimed_is_rebuilt_with_them(head):
    """A tree's leaves are dropped once their sum is made; when the sum's only copy is
    lost, the leaves are made again from their lineage, then the sum."""
    join_node(head, "node-1")
    tasks = [task("leaf-1", "node-1"), task("leaf-2", "node-1"),
             task("add-1", "node-1", "leaf-1", "leaf-2")]
    head.on_client(DRIVER, p.Submit((("f@1", b""),), tuple(tasks)))
    head.on_client(DRIVER, p.Free(("leaf-1", "leaf-2")))        # the driver drops the leaves
    for task_id in ("leaf-1", "leaf-2", "add-1"):
        finish_on(head, "node-1", task_id)
    assert set(head.directory.entries) == {"add-1"}              # the leaves' values went
    head.node_lost("node-1", "test")
    assert sorted(head.assigned) == ["add-1", "leaf-1", "leaf-2"]
    assert {spec.node for spec in head.assigned.values()} == {"node-0"}
    assert head.directory.lookup("add-1") is None                # pending, not lost
    assert head.lineage.problems() == []


def test_lineage_goes_with_the_last_object_that_needs_it(head):
    tasks = [task("leaf-1", "node-0"), task("add-1", "node-0", "leaf-1")]
    head.on_client(DRIVER, p.Submit((("f@1", b""),), tuple(tasks)))
    head.on_client(DRIVER, p.Free(("leaf-1",)))
    for task_id in ("leaf-1", "add-1"):
        head.on_node("node-0", p.TasksDone((p.TaskResult(
            task_id, 0, ((task_id, p.Inline(b"x")),), 0.01),)))
    assert set(head.lineage.made_by) == {"leaf-1", "add-1"}
    head.on_client(DRIVER, p.Free(("add-1",)))
    assert head.lineage.made_by == {} and head.lineage.uses == {}


def test_a_node_declared_dead_that_speaks_again_is_told_to_stop(head):
    sent: list[tuple[str, p.Message]] = []
    head._to_node = lambda node, message: sent.append((node, message))
    join_node(head, "node-1")
    head.node_lost("node-1", "no heartbeat")
    sent.clear()
    head.on_node("node-1", p.Heartbeat("node-1", 0))
    assert sent == [("node-1", p.NodeLost("node-1", sent[0][1].reason))]


def test_validate_state_names_a_pending_object_no_task_will_make(head):
    from plait.executor.invariants import head_problems

    head.on_client(DRIVER, p.Submit((("f@1", b""),), (spec("t1"),)))
    assert head_problems(head) == []
    del head.assigned["t1"]                        # as if the task were forgotten
    head.nodes["node-0"].queued = 0
    problems = head_problems(head)
    assert len(problems) == 1 and "pending objects no task will make" in problems[0]
    assert "t1" in problems[0]
