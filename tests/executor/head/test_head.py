"""The head's routing without processes: its own node is real, everything else recorded."""

from __future__ import annotations

import os

import pytest

from plait.executor.head.head import Head
from plait.executor.node.node import Node
from plait.executor.node.workers import WorkerHandle
from plait.executor.wire import protocol as p
from plait.store.arena import Arena

MIB = 1 << 20
DRIVER = (None, b"driver")


@pytest.fixture
def head(make_transfers):
    arena = Arena.create(f"plait-test-{os.getpid()}-head", 4 * MIB)
    workers = [WorkerHandle(0, -1, -1, b"w0", ready=True)]
    node = Node("node-0", arena, None, workers, "ipc://unused", up=lambda message: None,
                to_worker=lambda i, m: None, watch=lambda fd: None, transfers=make_transfers)
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
    from plait.executor.head.invariants import head_problems

    head.on_client(DRIVER, p.Submit((("f@1", b""),), (spec("t1"),)))
    assert head_problems(head) == []
    del head.assigned["t1"]                        # as if the task were forgotten
    head.nodes["node-0"].queued = 0
    problems = head_problems(head)
    assert len(problems) == 1 and "pending objects no task will make" in problems[0]
    assert "t1" in problems[0]


# -- a long run's tables stay as small as its live objects -----------------------------------

def run_on_node_0(head: Head, task_id: str, value: p.ObjectValue) -> None:
    """Submit a task to node-0, let its worker finish it with ``value``, flush."""
    head.on_client(DRIVER, p.Submit((("f@1", b""),), (spec(task_id),), subscribe=(task_id,)))
    head.local.dispatch()
    result = p.TaskResult(task_id, 0, ((task_id, value),), 0.01)
    head.local.on_worker(b"w0", p.TasksDone((result,)))
    head.flush()


def add_node_1(head: Head) -> list[tuple[str, p.Message]]:
    """A second (recorded) node; returns the list of messages sent to other nodes."""
    sent: list[tuple[str, p.Message]] = []
    head._to_node = lambda node, message: sent.append((node, message))
    info = p.NodeInfo("node-1", "ipc://unused-1", os.getpid(), False, 1, "arena-1", 4 * MIB)
    head.on_node("node-1", p.NodeHello(info))
    return sent


def deleted(sent: list[tuple[str, p.Message]], node: str) -> list[str]:
    return [oid for n, m in sent if n == node and isinstance(m, p.Delete) for oid in m.object_ids]


def test_small_and_failed_results_leave_every_table_when_their_refs_are_dropped(head):
    """Issue 11: inline results stayed in the node's table after their object was gone
    (the head deleted stored copies only): ~800 KB per 10 KB-result task round, forever."""
    for i in range(20):
        run_on_node_0(head, f"t{i}", p.Inline(b"x" * 1000) if i % 2 else p.Failed(b"error"))
        head.on_client(DRIVER, p.Free((f"t{i}",)))
        head.flush()
    assert head.local.values == {} and head.cached == {} and head.directory.entries == {}
    assert head.client_holds[DRIVER] == {} and head.assigned == {} and head.lineage.made_by == {}
    assert head.local.table.tasks == {} and head.local.table.followers == {}


def test_a_node_sent_a_small_value_forgets_it_when_the_object_goes(head):
    sent = add_node_1(head)
    run_on_node_0(head, "t1", p.Inline(b"x"))
    head.on_node("node-1", p.Subscribe(("t1",)))          # a task there reads it
    head.flush()
    assert [m.values for n, m in sent if isinstance(m, p.Ready)] == [(("t1", p.Inline(b"x")),)]
    assert deleted(sent, "node-1") == []                   # still held by the driver
    head.on_client(DRIVER, p.Free(("t1",)))
    head.flush()
    assert deleted(sent, "node-1") == ["t1"] and "t1" not in head.local.values


def test_a_value_sent_after_its_object_went_is_deleted_in_the_same_flush(head):
    sent = add_node_1(head)
    head.on_node("node-1", p.Subscribe(("gone-1",)))      # never existed, or freed
    head.flush()
    kinds = [(type(m).__name__, m.object_ids if isinstance(m, p.Delete) else m.values[0][0])
             for n, m in sent if isinstance(m, (p.Ready, p.Delete))]
    assert kinds == [("Ready", "gone-1"), ("Delete", ("gone-1",))]


def test_the_trace_ring_is_bounded_and_positions_stay_valid(head):
    from collections import deque

    head.events = deque(maxlen=10)
    for i in range(25):
        head.record(p.TaskEvent(f"t{i}", "f", "node-0", 0, 0.0, 1.0, True))
    head.on_client(DRIVER, p.TraceRequest(7, 3))          # asked from an event gone since
    report = head.to_client_log[-1][1]
    assert [e.task_id for e in report.events] == [f"t{i}" for i in range(15, 25)]
    assert report.position == 25 and head.events_dropped == 15


def test_a_message_a_sender_may_not_send_is_malformed(head):
    with pytest.raises(p.MalformedMessage, match="a client may not send Assign"):
        head.on_client(DRIVER, p.Assign((), ()))
    with pytest.raises(p.MalformedMessage, match="a node may not send Hello"):
        head.on_node("node-0", p.Hello(1))
