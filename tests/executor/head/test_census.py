"""What the head counts for a dashboard (head/census.py), and the Snapshot it answers with:
without processes, as the head's other tests (a message in, the messages out)."""

from __future__ import annotations

import pickle

from plait.errors import TaskError
from plait.executor.head import census
from plait.executor.head.head import Head
from plait.executor.wire import protocol as p
from plait.executor.wire.instructions import FromClient, FromNode
from plait.store.store import ObjectSummary, StoreSummary
from tests.executor.head.test_head import (CODE, DRIVER, MIB, RecordingNode, creation, done,
                                           joined, losing, node_info, on, recorded, submit, take,
                                           tell)

NOW = 1_700_000_000.0


def watched() -> Head:
    return recorded(Head("s-1", RecordingNode(), node_info("node-0"), wall=lambda: NOW))


def node_snapshot(request: int, node: str, *running: str,
                  largest: tuple[ObjectSummary, ...] = ()) -> p.NodeSnapshot:
    store = StoreSummary(node, 4 * MIB, MIB, 0, len(largest), 0, 0, 0.0, 0.0, largest)
    worker = p.WorkerState(0, 100, "busy" if running else "idle", False,
                           tuple("f" for _ in running), MIB)
    return p.NodeSnapshot(request, node, store, (worker,), tuple((t, "f") for t in running),
                          0.5, 2 * MIB)


def snapshot(head: Head, since: int = 0, running: dict[str, tuple[str, ...]] | None = None,
             largest: dict[str, tuple[ObjectSummary, ...]] | None = None) -> p.Snapshot:
    """Ask as a dashboard does; answer for every node as it would; return the Snapshot."""
    tell(head, FromClient(DRIVER, p.SnapshotRequest(7, since)))
    asked = take(head)
    assert [message for _, message in asked] == [p.SnapshotRequest(r.request)
                                                 for _, r in asked]
    for node, request in asked:
        tell(head, FromNode(node, node_snapshot(request.request, node,
                                                *(running or {}).get(node, ()),
                                                largest=(largest or {}).get(node, ()))))
    (peer, answer), = take(head)
    assert peer == DRIVER and isinstance(answer, p.Snapshot) and answer.request == 7
    return answer


def failed(head: Head, node: str, task_id: str) -> bytes:
    error = pickle.dumps(TaskError("f", task_id, node, "Traceback (most recent call "
                                   "last):\n  ...\nValueError: bad input\n"))
    result = p.TaskResult(task_id, 0, ((task_id, p.Failed(error)),), 0.01)
    tell(head, FromNode(node, p.TasksDone((result,))))
    return error


def test_a_snapshot_asks_every_node_and_counts_tasks_per_function():
    head = joined(watched(), "node-1")
    submit(head, on("node-1", "t1"), on("node-1", "t2"), on("node-0", "t3"), on("node-0", "t4"))
    done(head, "node-1", "t1")
    failed(head, "node-0", "t3")
    take(head)
    answer = snapshot(head, running={"node-1": ("t2",)})
    assert answer.functions == (p.FunctionTally("f", 4, 1, 1, 0),)
    assert [n.id for n in answer.nodes] == ["node-0", "node-1"]
    assert [s.node for s in answer.node_snapshots] == ["node-0", "node-1"]
    assert answer.plan_number == 1
    assert dict(answer.plan_states) == {"t1": "done", "t2": "running", "t3": "failed",
                                        "t4": "waiting"}
    assert answer.dead == () and answer.time == NOW


def test_a_failed_task_is_a_notice_with_its_error_and_notices_come_once():
    head = joined(watched(), "node-1")
    submit(head, on("node-1", "t1"))
    error = failed(head, "node-1", "t1")
    take(head)
    first = snapshot(head)
    assert first.notices == (p.Notice(NOW, "error", "t1", "f failed on node-1", error),)
    assert snapshot(head, since=first.notices_end).notices == ()


def test_a_dead_node_is_kept_with_why_and_its_tasks_count_as_retried():
    head = joined(watched(), "node-1", "node-2")
    submit(head, on("node-1", "t1"))
    take(head)
    losing(head, "node-1", "killed")
    answer = snapshot(head)
    assert [(d.node, d.reason, d.time) for d in answer.dead] == [("node-1", "killed", NOW)]
    assert [n.id for n in answer.nodes] == ["node-0", "node-2"]
    assert answer.functions == (p.FunctionTally("f", 1, 0, 0, 1),)
    assert [(n.kind, n.subject) for n in answer.notices] == [("node-dead", "node-1"),
                                                             ("retry", "t1")]


def test_bytes_moved_count_since_the_plan_and_the_plan_report_lists_its_tasks():
    head = joined(watched(), "node-1")
    tell(head, FromClient(DRIVER, p.Submit((("f@1", CODE),), (on("node-1", "a"),),
                                           predicted_bytes=MIB)))
    done(head, "node-1", "a")
    tell(head, FromNode("node-0", p.ReplicaAdded("a", "node-0", "node-1", MIB, 1.0, 2.0)))
    take(head)
    answer = snapshot(head)
    assert (answer.bytes_moved, answer.transfers, answer.plan_moved) == (MIB, 1, MIB)
    tell(head, FromClient(DRIVER, p.PlanRequest(3)))
    assert take(head) == [(DRIVER, p.PlanReport(3, 1, (("a", "f", "node-1", (), ("a",), ""),),
                                                MIB))]


def test_the_largest_objects_name_their_copies_and_holders():
    head = joined(watched(), "node-1")
    submit(head, on("node-1", "a"), on("node-1", "b"))
    done(head, "node-1", "a", 3 * MIB)
    done(head, "node-1", "b", MIB)
    take(head)
    big, small = (ObjectSummary("a", 3 * MIB, "pinned", "f"),
                  ObjectSummary("b", MIB, "spilled", "f"))
    answer = snapshot(head, largest={"node-1": (small, big)})
    assert answer.objects == ((big, "node-1", ("node-1",), ("a client",)),
                              (small, "node-1", ("node-1",), ("a client",)))


def test_notices_are_a_bounded_ring_whose_positions_stay_valid():
    ring = census.Census(lambda: NOW)
    for n in range(census.MAX_NOTICES + 5):
        ring.notice("retry", f"t{n}", "again")
    notices, end = ring.notices_since(0)
    assert len(notices) == census.MAX_NOTICES and notices[0].subject == "t5"
    assert end == census.MAX_NOTICES + 5 and ring.notices_since(end) == ((), end)


def test_an_error_too_big_to_keep_keeps_its_text():
    ring = census.Census(lambda: NOW)
    ring.notice("error", "t1", "f failed", b"x" * (census.MAX_ERROR_BYTES + 1))
    assert ring.notices[0].error == b"" and ring.notices[0].text == "f failed"


def test_actors_are_listed_live_first_and_a_dead_one_says_so():
    head = joined(watched(), "node-1")
    submit(head, creation("Counter-1"), creation("Counter-2"), creation("Counter-3"))
    for actor in ("Counter-1", "Counter-2"):
        done(head, "node-1", actor)
    tell(head, FromNode("node-1", p.ActorExit("Counter-1", 0, pickle.dumps(RuntimeError("x")))))
    take(head)
    rows = snapshot(head).actors
    assert [(row.actor, row.state) for row in rows] == [
        ("Counter-3", "starting"), ("Counter-2", "alive"), ("Counter-1", "dead")]
    assert rows[1] == p.ActorRow("Counter-2", "Counter", "", "node-1", "alive", 0, False)
