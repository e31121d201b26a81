"""The node's decisions without processes: an event in, the instructions out.

Workers are handles with no process behind them; what the node decides (messages to the
head and to workers, workers to start or kill) is read by kind, in order (``Decisions``).
"""

from __future__ import annotations

import pickle

from dataclasses import replace

import pytest

from plait.errors import ObjectStoreFullError, WorkerCrashedError
from plait.executor.node.node import Node
from plait.executor.node.workers import WorkerHandle
from plait.executor.wire import protocol as p
from plait.executor.wire.instructions import (Dispatch, FromHead, FromWorker, WorkerGone,
                                              WorkerStarted)
from tests.executor.node.decisions import interrupted, killed, sent, started, tell, to_head

MIB = 1 << 20


def spec(task_id: str, deps: tuple[str, ...] = (), **fields) -> p.TaskSpec:
    return p.TaskSpec(task_id, "f@1", "f", b"", deps, (), (task_id,), 3, "node-0", **fields)


def test_every_blocked_gets_exactly_one_skip_even_with_nothing_queued(node):
    tell(node, FromWorker(b"w0", p.Blocked(0)))
    assert sent(node) == [(b"w0", p.Skip(()))]


def test_tasks_queued_behind_a_blocked_task_are_taken_back_and_skipped(node):
    node.functions["f@1"] = b""
    tell(node, FromHead(p.Assign((), tuple(spec(f"t{i}") for i in range(3)))))
    worker = node.workers[b"w0"]
    node.send_items(worker, [node.work_item(t) for t in ("t0", "t1", "t2")])
    sent(node).clear()
    tell(node, FromWorker(b"w0", p.Blocked(0)))
    assert sent(node) == [(b"w0", p.Skip((("t1", 0), ("t2", 0))))]
    assert list(worker.inflight) == ["t0"]
    assert {node.table.ready.popleft() for _ in range(2)} == {"t1", "t2"}


def test_a_hand_back_takes_every_task_sent_after_the_one_running(node):
    """t0 ended (its result not here yet), t1 runs long, t2 and t3 (another batch) wait
    behind it: both go back to be run elsewhere; a HandBack naming a task no longer listed
    takes all that are."""
    node.functions["f@1"] = b""
    tell(node, FromHead(p.Assign((), tuple(spec(f"t{i}") for i in range(4)))))
    worker = node.workers[b"w0"]
    node.send_items(worker, [node.work_item(t) for t in ("t0", "t1")])
    node.send_items(worker, [node.work_item(t) for t in ("t2", "t3")])
    sent(node).clear()
    tell(node, FromWorker(b"w0", p.HandBack(("t1", 0))))
    assert sent(node) == [(b"w0", p.Skip((("t2", 0), ("t3", 0))))]
    assert list(worker.inflight) == ["t0", "t1"]
    assert {node.table.ready.popleft() for _ in range(2)} == {"t2", "t3"}
    sent(node).clear()
    tell(node, FromWorker(b"w0", p.HandBack(("gone", 0))))
    assert sent(node) == [(b"w0", p.Skip((("t0", 0), ("t1", 0))))] and not worker.inflight


def test_nothing_is_queued_behind_a_task_that_blocked_until_it_ends(node):
    """A task that waits on its children blocks again and again (a loop of gets): tasks
    queued behind it between two blocks would be taken back at each, every time as a new
    attempt; and a task taken back twice from one worker was once run there twice."""
    node.functions["f@1"] = b""
    node.num_workers = 1
    del node.workers[b"w1"]                          # one worker (its stand-in never starts)
    tell(node, FromHead(p.Assign((), (spec("t0"),))))
    tell(node, Dispatch())
    tell(node, FromWorker(b"w0", p.Blocked(0)))
    tell(node, FromWorker(b"w0", p.Unblocked(0)))
    tell(node, FromHead(p.Assign((), tuple(spec(f"t{i}") for i in (1, 2)))))
    tell(node, Dispatch())
    assert list(node.workers[b"w0"].inflight) == ["t0"]
    tell(node, FromWorker(b"w0", p.TasksDone((result("t0", 0),))))
    tell(node, Dispatch())
    assert list(node.workers[b"w0"].inflight) == ["t1", "t2"]


def test_nothing_is_queued_behind_a_lone_task_sent_before(node):
    """A parent that submits children and works on (or polls them) holds its worker: a
    child queued behind it would wait there while the other worker idles, as Ray's never
    does. Tasks that come together still go in batches, queued behind each other."""
    node.functions["f@1"] = b""
    tell(node, FromHead(p.Assign((), (spec("parent"),))))
    tell(node, Dispatch())
    [busy] = [w for w in node.workers.values() if w.inflight]
    tell(node, FromHead(p.Assign((), tuple(spec(f"child-{i}") for i in range(3)))))
    tell(node, Dispatch())
    assert list(busy.inflight) == ["parent"]
    [other] = [w for w in node.workers.values() if w is not busy]
    assert list(other.inflight) == ["child-0", "child-1"]      # the rest once those end


def test_an_actor_process_that_blocks_keeps_its_calls(node):
    worker = node.workers[b"w1"]
    worker.actor = "Counter-1"
    worker.inflight.update({"call-1": 0, "call-2": 0})
    tell(node, FromWorker(b"w1", p.Blocked(1)))
    assert sent(node) == [(b"w1", p.Skip(()))]
    assert list(worker.inflight) == ["call-1", "call-2"] and not worker.blocked


# -- duplicated, delayed and dropped messages ------------------------------------------------

def result(task_id: str, attempt: int, value: bytes = b"v") -> p.TaskResult:
    return p.TaskResult(task_id, attempt, ((task_id, p.Inline(value)),), 0.01)


def reported(up: list) -> list[tuple[str, int]]:
    return [(r.task_id, r.attempt) for m in up if isinstance(m, p.TasksDone) for r in m.results]


@pytest.fixture
def recording(node):
    to_head(node).clear()
    node.functions["f@1"] = b""
    tell(node, FromHead(p.Assign((), (spec("t1"),))))
    tell(node, Dispatch())                                   # to w0, the first idle worker
    assert list(node.workers[b"w0"].inflight) == ["t1"]
    return node


def test_a_duplicated_result_counts_once_and_frees_no_slot_twice(recording):
    node = recording
    done = p.TasksDone((result("t1", 0),))
    tell(node, FromWorker(b"w0", done))
    tell(node, FromWorker(b"w0", done))                       # the same message again
    assert reported(to_head(node)) == [("t1", 0)]
    assert node.values["t1"] == p.Inline(b"v")
    assert not node.workers[b"w0"].inflight and "t1" not in node.table.tasks


def test_a_late_result_of_an_earlier_attempt_is_ignored(recording):
    node = recording
    node.table.crashed("t1", 0, "node-0 worker 0 died")      # attempt 1 is now current
    tell(node, FromWorker(b"w0", p.TasksDone((result("t1", 0, b"stale"),))))
    assert reported(to_head(node)) == [] and "t1" in node.table.tasks
    tell(node, FromWorker(b"w0", p.TasksDone((result("t1", 1, b"fresh"),))))
    assert reported(to_head(node)) == [("t1", 1)] and node.values["t1"] == p.Inline(b"fresh")


def test_a_duplicated_assign_adds_the_task_once(recording):
    node = recording
    tell(node, FromHead(p.Assign((), (spec("t1"),))))
    assert len(node.table.ready) == 0 and list(node.table.tasks) == ["t1"]


def test_results_from_a_replaced_worker_are_dropped(recording):
    node = recording
    tell(node, FromWorker(b"w9", p.TasksDone((result("t1", 0),))))    # not one of ours (any more)
    assert reported(to_head(node)) == [] and "t1" in node.table.tasks


def test_a_duplicated_ready_wakes_a_task_once(node):
    node.functions["f@1"] = b""
    tell(node, FromHead(p.Assign((), (spec("t2", deps=("x",)),))))
    ready = p.Ready((("x", p.Inline(b"1")),))
    tell(node, FromHead(ready))
    tell(node, FromHead(ready))
    assert len(node.table.ready) == 1


def test_a_put_whose_seal_comes_after_its_reader_wakes_the_reader(node):
    node.functions["f@1"] = b""
    tell(node, FromHead(p.Assign((), (spec("child", deps=("put-1",)),))))   # before the seal
    assert len(node.table.ready) == 0
    node.workers[b"w0"].inflight["parent"] = 0
    tell(node, FromWorker(b"w0", p.PutInline("put-1", p.Inline(b"x"))))
    assert len(node.table.ready) == 1 and node.table.ready[0] == "child"


def test_a_node_the_head_declared_dead_stops_and_others_do_not(node):
    tell(node, FromHead(p.NodeLost("node-3", "no heartbeat")))
    assert not node.stopping
    tell(node, FromHead(p.NodeLost("node-0", "the head declared it dead")))
    assert node.stopping


def test_a_node_refused_for_each_message_it_sent_while_stopped_says_so_once(node, caplog):
    """Woken from a long SIGSTOP, a node's queued messages each bring a refusal (the chaos
    soak logged one node's 59 times)."""
    for _ in range(3):
        tell(node, FromHead(p.NodeLost("node-0", "the head declared it dead")))
    assert [r.getMessage() for r in caplog.records] == ["node-0: the head declared it dead; "
                                                        "stopping"]


def test_a_task_reading_an_evicted_replica_asks_for_it_again_instead_of_failing(node):
    """A replica the store evicted to make room is not lost: the next task reading it waits
    while the head is asked again (it used to fail with ObjectLostError)."""
    to_head(node).clear()
    node.functions["f@1"] = b""
    tell(node, FromHead(p.Ready((("x", p.Stored("node-0", 16)),))))
    node.store.allocate("x", 16, "copy from node-1", replica=True)
    node.store.seal("x")
    node.store.delete("x")                     # as if evicted without telling the node
    tell(node, FromHead(p.Assign((), (spec("t1", ("x",)),))))
    assert node.work_item(node.table.ready.popleft()) is None
    assert "t1" in node.table.tasks and node.table.tasks["t1"].waiting == {"x"}
    assert p.Subscribe(("x",)) in to_head(node)


def test_an_evicted_replica_is_forgotten_and_reported(node):
    to_head(node).clear()
    tell(node, FromHead(p.Ready((("x", p.Stored("node-0", 16)),))))
    node.replica_dropped("x")
    assert "x" not in node.values and to_head(node) == [p.ReplicaDropped("x", "node-0")]


def test_a_fused_follower_whose_worker_died_running_it_is_sent_again(node):
    """The chaos soak's consumer that never finished: create -> consume rode in one
    message; create's result came back, then the worker died running consume. Its retry
    must not stay marked as riding (it was never sent again, its get waited for good)."""
    from plait.executor.node.invariants import node_problems

    node.functions["f@1"] = b""
    made = p.TaskSpec("create", "f@1", "f", b"", (), (), ("data",), 3, "node-0")
    used = p.TaskSpec("consume", "f@1", "f", b"", ("data",), (), ("consume",), 3, "node-0",
                      follows="create")
    tell(node, FromHead(p.Assign((), (made, used))))
    tell(node, Dispatch())
    worker = next(w for w in node.workers.values() if w.inflight)
    assert list(worker.inflight) == ["create", "consume"]
    tell(node, FromWorker(worker.identity, p.TasksDone((p.TaskResult(
        "create", 0, (("data", p.Inline(b"x")),), 0.01),))))
    node.table.crashed("consume", worker.inflight.pop("consume"), "SIGTERM")
    assert node_problems(node) == []
    sent(node).clear()
    tell(node, Dispatch())
    assert [i.task_id for m in sent(node) if isinstance(m[1], p.RunTasks) for i in m[1].items] \
        == ["consume"]


def test_a_fused_follower_requeued_after_its_producer_crashed_is_queued_once():
    """The chaos soak's invariant violation (room promised twice to one task): create ->
    consume rode in one message and the worker died running create; consume, requeued,
    was listed twice as waiting for create's result, so once the retry made it, consume
    was queued (and started) twice."""
    from plait.executor.node.tasks import TaskTable

    table = TaskTable()
    made = p.TaskSpec("create", "f@1", "f", b"", (), (), ("data",), 3, "node-0")
    used = p.TaskSpec("consume", "f@1", "f", b"", ("data",), (), ("consume",), 3, "node-0",
                      follows="create")
    for spec in (made, used):
        table.add(spec, lambda oid: False)
    assert table.ready.popleft() == "create" and table.chain_after("create") == ["consume"]
    assert table.crashed("create", 0, "SIGKILL")      # the worker died running create
    table.requeue("consume", 0)
    assert table.ready.popleft() == "create"          # retried alone this time
    assert table.object_ready("data", failed=False) == []
    assert [table.ready.popleft() for _ in range(len(table.ready))] == ["consume"]


def test_a_task_whose_input_finds_no_room_waits_while_others_run(node):
    """The memory-pressure soak's lost results: an input could not be restored in one
    piece beside what another running task pinned, and the task failed with
    ObjectStoreFullError. It now waits for the other task and starts again; its fused
    follower waits for its results instead of riding alone."""
    import pickle

    from plait.errors import ObjectStoreFullError

    node.functions["f@1"] = b""
    tell(node, FromHead(p.Ready((("x", p.Stored("node-0", 16)),))))
    made = p.TaskSpec("make", "f@1", "f", b"", ("x",), (), ("made",), 3, "node-0")
    used = p.TaskSpec("use", "f@1", "f", b"", ("made",), (), ("used",), 3, "node-0",
                      follows="make")
    tell(node, FromHead(p.Assign((), (made, used))))
    node.workers[b"w1"].inflight["other"] = 0           # another task runs here
    full = p.Failed(pickle.dumps(ObjectStoreFullError("no block of 16 B in one piece")))
    node.pin_value = lambda oid, high=False: full
    assert node.start(node.next_ready()) == []
    assert node.room_waiting == ["make"] and set(node.table.tasks) == {"make", "use"}
    assert not node.table.tasks["use"].riding and node.task_pins.get("make") is None
    node.retry_waiting()
    assert node.table.ready.popleft() == "make"


def test_a_fused_follower_whose_own_input_finds_no_room_is_not_left_riding(node):
    """The memory-pressure soak's stuck gets ("step-119 rides with no worker"): the
    producer was sent, but its follower's other input could not be restored beside what
    others pinned; the follower went to wait for room still marked as riding, so it was
    skipped every time it came up again and never ran."""
    import pickle

    from plait.errors import ObjectStoreFullError

    node.functions["f@1"] = b""
    tell(node, FromHead(p.Ready((("x", p.Inline(b"x")), ("y", p.Stored("node-0", 16))))))
    made = p.TaskSpec("make", "f@1", "f", b"", ("x",), (), ("made",), 3, "node-0")
    used = p.TaskSpec("use", "f@1", "f", b"", ("made", "y"), (), ("used",), 3, "node-0",
                      follows="make")
    tell(node, FromHead(p.Assign((), (made, used))))
    node.workers[b"w1"].inflight["other"] = 0           # another task runs here
    full = p.Failed(pickle.dumps(ObjectStoreFullError("no block of 16 B in one piece")))
    node.pin_value = lambda oid, high=False: full
    assert [item.task_id for item in node.start(node.next_ready())] == ["make"]
    assert node.room_waiting == ["use"] and not node.table.tasks["use"].riding
    node.retry_waiting()
    assert node.admit("use") != ""                      # it is considered again


def test_a_task_whose_input_can_never_find_room_fails(node):
    import pickle

    from plait.errors import ObjectStoreFullError

    node.functions["f@1"] = b""
    tell(node, FromHead(p.Ready((("x", p.Stored("node-0", 16)),))))
    tell(node, FromHead(p.Assign((), (spec("t1", ("x",)),))))
    full = p.Failed(pickle.dumps(ObjectStoreFullError("no block of 16 B in one piece")))
    node.pin_value = lambda oid, high=False: full
    assert node.start(node.next_ready()) == []
    assert node.room_waiting == [] and "t1" not in node.table.tasks


def test_a_producers_result_stays_pinned_while_its_rider_reads_it(node):
    """A worker reports make's result (its batch ran past FLUSH_SECONDS) while use, riding
    behind it, still reads it from the arena: sealed and unpinned it could have been
    spilled and its room reused under use (the pressure soak's inputs with a wrong CRC)."""
    from plait.executor.node.invariants import node_problems

    node.functions["f@1"] = b""
    chain = (p.TaskSpec("make", "f@1", "f", b"", (), (), ("made",), 3, "node-0"),
             p.TaskSpec("use", "f@1", "f", b"", ("made",), (), ("used",), 3, "node-0",
                        follows="make"))
    tell(node, FromHead(p.Assign((), chain)))
    tell(node, Dispatch())
    worker = next(w for w in node.workers.values() if w.inflight)
    assert list(worker.inflight) == ["make", "use"]
    tell(node, FromWorker(worker.identity, p.Alloc(1, "made", 1 << 10, "make")))
    offset = sent(node)[-1][1].offset
    tell(node, FromWorker(worker.identity, p.TasksDone((
        p.TaskResult("make", 0, (("made", p.Located("node-0", offset, 1 << 10)),), 0.01),))))
    assert node.store.objects["made"].pins == 1 and node_problems(node) == []
    tell(node, FromWorker(worker.identity, p.TasksDone((result("use", 0),))))
    assert node.store.objects["made"].pins == 0 and node_problems(node) == []


def test_a_block_given_to_a_task_that_then_failed_goes_with_its_report(node):
    """A task got its result's block (or file), then failed (its value did not serialise,
    or the disk filled): nothing will seal the block, so it goes when the failure comes."""
    from plait.executor.node.invariants import node_problems

    node.functions["f@1"] = b""
    tell(node, FromHead(p.Assign((), (p.TaskSpec("make", "f@1", "f", b"", (), (), ("made",),
                                                 0, "node-0"),))))
    tell(node, Dispatch())
    worker = next(w for w in node.workers.values() if w.inflight)
    tell(node, FromWorker(worker.identity, p.Alloc(1, "made", 1 << 20, "make")))
    assert not node.store.objects["made"].sealed
    failed = p.Failed(pickle.dumps(ObjectStoreFullError("the disk is full")))
    tell(node, FromWorker(worker.identity, p.TasksDone((
        p.TaskResult("make", 0, (("made", failed),), 0.01),))))
    assert "made" not in node.store.objects and node.store.allocator.used == 0
    assert node_problems(node) == []


def test_a_fused_follower_refused_room_beside_other_tasks_runs_again_with_its_own_follower(
        node):
    """The memory-pressure soak's lost results, second kind: in a fused chain make -> use
    -> last, use's result found no block beside what another running task pinned. The
    refusal was booked to the chain's first task (make), which had succeeded, so use and
    last failed for good. Now use waits for room and runs again, and last waits for it."""
    from plait.errors import ObjectStoreFullError

    node.functions["f@1"] = b""
    chain = (p.TaskSpec("make", "f@1", "f", b"", (), (), ("made",), 3, "node-0"),
             p.TaskSpec("use", "f@1", "f", b"", ("made",), (), ("used",), 3, "node-0",
                        follows="make"),
             p.TaskSpec("last", "f@1", "f", b"", ("used",), (), ("lasted",), 3, "node-0",
                        follows="use"))
    tell(node, FromHead(p.Assign((), chain)))
    tell(node, Dispatch())
    worker = next(w for w in node.workers.values() if w.inflight)
    assert list(worker.inflight) == ["make", "use", "last"]
    other = next(w for w in node.workers.values() if w is not worker)
    other.inflight["other"] = 0

    def full(object_id, nbytes, created_by, replica=False):
        raise ObjectStoreFullError("pinned objects split the free bytes")

    node.store.allocate = full
    tell(node, FromWorker(other.identity, p.Alloc(6, "other", 1 << 10, "other")))
    assert len(node.alloc_waiting) == 1               # it waits for make's chain to end
    tell(node, FromWorker(worker.identity, p.Alloc(7, "used", 1 << 10, "use")))
    assert isinstance(sent(node)[-1][1], p.Refused)
    to_head(node).clear()
    failed = p.Failed(b"refused")
    tell(node, FromWorker(worker.identity, p.TasksDone((
        p.TaskResult("make", 0, (("made", p.Inline(b"x")),), 0.01),
        p.TaskResult("use", 0, (("used", failed),), 0.01),
        p.TaskResult("last", 0, (("lasted", failed),), 0.01)))))
    assert reported(to_head(node)) == [("make", 0)]
    assert set(node.table.tasks) == {"use", "last"}
    assert node.table.tasks["last"].waiting == {"used"}
    assert [node.table.ready.popleft() for _ in range(len(node.table.ready))] == ["use"]


def test_a_get_whose_spilled_object_finds_no_block_in_one_piece_waits_while_tasks_run(node):
    """The memory-pressure soak's lost get: admission counted enough free bytes, but the
    restore found them split by blocks that running tasks pinned, and the get failed with
    ObjectStoreFullError. While a task runs, the get waits for it instead."""
    import pickle

    from plait.errors import ObjectStoreFullError

    tell(node, FromHead(p.Ready((("x", p.Stored("node-0", 16)),))))
    node.workers[b"w1"].inflight["other"] = 0
    full = p.Failed(pickle.dumps(ObjectStoreFullError("pinned objects split the free bytes")))
    node.pin_value = lambda oid, high=False: full
    to_head(node).clear()
    tell(node, FromHead(p.Pin(3, ("x",))))
    assert to_head(node) == [] and len(node.pin_waiting) == 1
    node.workers[b"w1"].inflight.clear()                # nothing left that could free room
    node.retry_waiting()
    assert to_head(node) == [p.Pinned(3, (("x", full),))] and node.pin_waiting == []


def test_a_rider_refused_room_runs_again_alone_and_fails_only_then(node):
    """A fused follower skips admission, and its producer's inputs stay pinned while it
    runs: refused room with no other task running, it runs again alone (admitted, its
    inputs arranged). Refused again, alone, it fails."""
    from plait.errors import ObjectStoreFullError

    node.functions["f@1"] = b""
    tell(node, FromHead(p.Assign((), (
        p.TaskSpec("make", "f@1", "f", b"", (), (), ("made",), 3, "node-0"),
        p.TaskSpec("use", "f@1", "f", b"", ("made",), (), ("used",), 3, "node-0",
                   follows="make")))))
    tell(node, Dispatch())
    worker = next(w for w in node.workers.values() if w.inflight)

    def full(object_id, nbytes, created_by, replica=False):
        raise ObjectStoreFullError("pinned objects split the free bytes")

    node.store.allocate = full
    to_head(node).clear()
    tell(node, FromWorker(worker.identity, p.Alloc(7, "used", 1 << 10, "use")))
    tell(node, FromWorker(worker.identity, p.TasksDone((
        p.TaskResult("make", 0, (("made", p.Inline(b"x")),), 0.01),
        p.TaskResult("use", 0, (("used", p.Failed(b"refused")),), 0.01)))))
    assert reported(to_head(node)) == [("make", 0)] and not node.table.tasks["use"].riding
    sent(node).clear()
    tell(node, Dispatch())
    assert [i.task_id for _, m in sent(node) if isinstance(m, p.RunTasks) for i in m.items] \
        == ["use"]
    tell(node, FromWorker(worker.identity, p.Alloc(8, "used", 1 << 10, "use")))
    tell(node, FromWorker(worker.identity, p.TasksDone((
        p.TaskResult("use", 1, (("used", p.Failed(b"refused")),), 0.01),))))
    assert reported(to_head(node)) == [("make", 0), ("use", 1)] and "use" not in node.table.tasks


def test_an_actor_call_refused_room_fails_rather_than_waiting_in_the_task_queue(node):
    """A call refused room beside another running task used to be put back in the plain
    task queue to run again, which never dispatches an actor's call: its caller waited for
    ever. An actor has moved on since; the refusal is the call's error."""
    from plait.errors import ObjectStoreFullError

    actor = node.workers[b"w1"]
    actor.actor = "Chain-1"
    node.table.add(spec("call", actor="Chain-1", method="values"), lambda oid: True)
    actor.inflight["call"] = 0
    node.workers[b"w0"].inflight["other"] = 0          # another task that could free room

    def full(object_id, nbytes, created_by, replica=False):
        raise ObjectStoreFullError("every block is pinned")

    node.store.allocate = full
    tell(node, FromWorker(b"w0", p.Alloc(6, "other-out", 1 << 10, "other")))
    tell(node, FromWorker(b"w1", p.Alloc(7, "call.0", 1 << 10, "values")))
    assert isinstance(sent(node)[-1][1], p.Refused) and node.room_refused == {}


def test_a_message_the_head_does_not_send_is_malformed_and_a_workers_is_ignored(node):
    with pytest.raises(p.MalformedMessage, match="a node takes no Submit from the head"):
        tell(node, FromHead(p.Submit((), ())))
    tell(node, FromWorker(b"w0", p.Bye()))
    tell(node, FromWorker(b"w9", p.Blocked(9)))                # a worker this node does not have
    assert sent(node) == []


# -- worker processes, through the node's Processes (recorded, none started) --------------

def test_a_busy_worker_stopped_too_long_is_killed_and_its_task_runs_again_elsewhere(
        node, processes):
    from plait.executor.node.node import WORKER_STOP_SECONDS

    node.functions["f@1"] = b""
    tell(node, FromHead(p.Assign((), (spec("t1"),))))
    tell(node, Dispatch())
    worker = node.workers[b"w0"]
    processes.states[0] = "T"                        # SIGSTOP, a debugger
    node.watch_stopped(100.0)
    assert killed(node) == []                    # not yet: it may be continued
    node.watch_stopped(100.0 + WORKER_STOP_SECONDS)
    assert killed(node) == [0]
    tell(node, WorkerGone(worker.pidfd))
    assert [c.index for c in started(node)] == [0]   # replaced
    assert node.table.tasks["t1"].attempt == 1
    assert "was stopped for" in node.table.tasks["t1"].crashes[0]


def test_a_worker_over_its_memory_limit_is_killed_and_the_idle_one_is_not(node, processes):
    node.functions["f@1"] = b""
    node.worker_memory_limit = 100 << 20
    tell(node, FromHead(p.Assign((), (spec("t1"),))))
    tell(node, Dispatch())
    processes.sizes = {0: 300 << 20, 1: 900 << 20}   # w1 is big but runs nothing
    node.watch_memory()
    assert killed(node) == [0] and "300 MiB" in node.workers[b"w0"].oom


def test_when_the_machine_runs_low_the_largest_busy_worker_goes(node, processes):
    node.functions["f@1"] = b""
    tell(node, FromHead(p.Assign((), (spec("t1"), spec("t2")))))
    tell(node, Dispatch())
    assert all(w.inflight for w in node.workers.values())
    processes.sizes = {0: 200 << 20, 1: 700 << 20}
    node.watch_memory()
    assert killed(node) == []                    # enough memory left: nobody
    processes.available = 0.01
    node.watch_memory()
    assert killed(node) == [1]


def test_a_result_refused_beside_a_drivers_view_runs_again_a_few_times_then_fails(node):
    """The final memory-pressure soak's one lost DAG: a task's result found no block in
    one piece beside its own inputs and a driver's view of an object it was reading, with
    no other task running, and failed. A get's view usually goes soon: the task now runs
    again, ROOM_RERUNS_FOR_VIEWS times at most (a view kept for good must not make it run
    for ever), then fails."""
    from plait.errors import ObjectStoreFullError
    from plait.executor.node.node import ROOM_RERUNS_FOR_VIEWS

    node.functions["f@1"] = b""
    tell(node, FromHead(p.Assign((), (spec("t1"),))))
    node.client_pins["viewed"] = 1                  # a driver holds a view of an object

    def full(object_id, nbytes, created_by, replica=False):
        raise ObjectStoreFullError("pinned objects split the free bytes")

    node.store.allocate = full
    to_head(node).clear()
    for attempt in range(ROOM_RERUNS_FOR_VIEWS + 1):
        tell(node, Dispatch())
        worker = next(w for w in node.workers.values() if w.inflight)
        assert worker.inflight == {"t1": attempt}
        tell(node, FromWorker(worker.identity, p.Alloc(attempt, "t1", 1 << 10, "t1")))
        tell(node, FromWorker(worker.identity, p.TasksDone((
            p.TaskResult("t1", attempt, (("t1", p.Failed(b"refused")),), 0.01),))))
    assert reported(to_head(node)) == [("t1", ROOM_RERUNS_FOR_VIEWS)]
    assert "t1" not in node.table.tasks



def test_a_result_refused_beside_the_inputs_of_tasks_queued_behind_it_runs_again(node):
    """The memory-pressure soak's lost DAGs: a batch sent to one worker pins every task's
    inputs at once; the first task's result found no block beside the inputs of the task
    queued behind it (which cannot run, so cannot let go, before the first ends), with no
    other worker busy, and the first task failed. It now runs again, as when another
    worker's task holds the room; the task behind it runs meanwhile."""
    from plait.errors import ObjectStoreFullError

    node.functions["f@1"] = b""
    node.store.allocate("in2", MIB, "test")
    node.store.seal("in2")
    tell(node, FromHead(p.Ready((("in2", p.Stored("node-0", MIB)),))))
    tell(node, FromHead(p.Assign((), (spec("t1"), spec("t2", ("in2",))))))
    worker = node.workers[b"w0"]
    node.table.ready.popleft()
    node.table.ready.popleft()
    node.send_items(worker, [node.work_item(t) for t in ("t1", "t2")])
    assert node.task_pins.get("t2") == ["in2"] and not node.workers[b"w1"].inflight

    def full(object_id, nbytes, created_by, replica=False):
        raise ObjectStoreFullError("pinned objects split the free bytes")

    node.store.allocate = full
    to_head(node).clear()
    tell(node, FromWorker(b"w0", p.Alloc(0, "t1", 1 << 10, "t1")))
    tell(node, FromWorker(b"w0", p.TasksDone((
        p.TaskResult("t1", 0, (("t1", p.Failed(b"refused")),), 0.01),))))
    assert reported(to_head(node)) == []                # not failed: it runs again
    assert node.table.tasks["t1"].attempt == 1 and list(worker.inflight) == ["t2"]

# -- workers started and killed: instructions, their outcome an event ----------------------

def test_a_blocked_worker_gets_one_stand_in_and_the_next_index_counts_starts_asked(node):
    node.num_workers = 2
    tell(node, FromWorker(b"w0", p.Blocked(0)))
    (asked,) = started(node)
    assert asked.index == 2 and 2 in node.starting and len(node.workers) == 2
    stand_in = WorkerHandle(2, -2, -2, b"w2", ready=True)
    tell(node, WorkerStarted(stand_in, True, ""))
    assert node.workers[b"w2"].extra and not node.starting
    tell(node, FromWorker(b"w1", p.Blocked(1)))
    assert [c.index for c in started(node)] == [2, 3]


def test_an_actor_killed_while_its_process_starts_has_it_killed_once_up(node):
    """... and dies when that process has gone, giving back the CPU it claimed. Before,
    the process was not counted as the actor's, so the actor never died and its CPU stayed
    taken: the next actor waited for ever (an actor churn probe with kills and node loss)."""
    create = spec("Counter-1", actor="Counter-1", method="__init__", slots=1)
    tell(node, FromHead(p.Assign((), (create,))))
    (asked,) = started(node)
    assert node.held_slots == {"actor Counter-1": 1}
    tell(node, FromHead(p.KillActor("Counter-1", True, "plait.kill")))
    assert killed(node) == []                        # no process to kill yet
    process = WorkerHandle(asked.index, -3, -3, b"a2")
    tell(node, WorkerStarted(process, False, "Counter-1"))
    assert killed(node) == [asked.index] and process.retiring
    tell(node, WorkerGone(process.pidfd))
    assert "Counter-1" not in node.actors.by_id and "Counter-1" in node.actors.dead
    assert node.held_slots == {}


def test_an_actor_killed_while_it_waits_for_cpus_dies_at_once(node):
    """It has no process and holds nothing: it dies now, not once CPUs come free."""
    first, second = (spec(a, actor=a, method="__init__", slots=node.num_workers)
                     for a in ("Big-1", "Big-2"))
    tell(node, FromHead(p.Assign((), (first, second))))
    assert node.actors.awaiting == ["Big-2"]
    tell(node, FromHead(p.KillActor("Big-2", True, "plait.kill")))
    assert node.actors.awaiting == [] and "Big-2" in node.actors.dead


# -- actors that run several calls at once ---------------------------------------------------

def alive_actor(node: Node, concurrency: int) -> WorkerHandle:
    """An actor running calls ``concurrency`` at a time, constructed in a process of its own."""
    node.functions["f@1"] = b""
    create = spec("A-1", actor="A-1", method="__init__", concurrency=concurrency, slots=0)
    tell(node, FromHead(p.Assign((), (create,))))
    (asked,) = started(node)
    process = WorkerHandle(asked.index, -3, -3, b"a1", ready=True)
    tell(node, WorkerStarted(process, False, "A-1"))
    tell(node, Dispatch())
    (_, run), = [(who, m) for who, m in sent(node) if who == b"a1"]
    assert run.items[0].method == "__init__" and run.items[0].concurrency == concurrency
    tell(node, FromWorker(b"a1", p.TasksDone((result("A-1", run.items[0].attempt),))))
    sent(node).clear()
    return process


def test_an_actor_that_runs_many_calls_at_once_is_sent_that_many_and_they_end_in_any_order(node):
    process = alive_actor(node, concurrency=100)
    calls = [spec(f"c{i}", actor="A-1", method="f") for i in range(120)]
    tell(node, FromHead(p.Assign((), tuple(calls))))
    tell(node, Dispatch())
    assert calls_sent(node, b"a1") == [f"c{i}" for i in range(100)]     # past MAX_CALLS_SENT (64)
    sent(node).clear()
    to_head(node).clear()
    tell(node, FromWorker(b"a1", p.TasksDone((result("c57", 0), result("c3", 0)))))
    tell(node, Dispatch())
    assert reported(to_head(node)) == [("c57", 0), ("c3", 0)]
    assert calls_sent(node, b"a1") == ["c100", "c101"]                  # two ended: two more go
    assert len(process.inflight) == 100 and "c57" not in process.inflight


def test_a_put_is_held_by_the_call_that_made_it_not_the_first_one_running(node):
    process = alive_actor(node, concurrency=10)
    tell(node, FromHead(p.Assign((), tuple(spec(f"c{i}", actor="A-1", method="f")
                                           for i in range(3)))))
    tell(node, Dispatch())
    to_head(node).clear()
    tell(node, FromWorker(b"a1", p.PutInline("put-1", p.Inline(b"x"), "c2")))
    tell(node, FromWorker(b"a1", p.PutInline("put-2", p.Inline(b"y"))))
    created = [m for m in to_head(node) if isinstance(m, p.Created)]
    assert [(m.object_id, m.task_id) for m in created] == [("put-1", "c2"), ("put-2", "c0")]
    assert list(process.inflight) == ["c0", "c1", "c2"]


def test_when_an_actor_dies_each_call_sent_to_it_fails_without_retries_as_in_ray(node):
    """Any call sent may have run (its result lost on the way out), so none runs again
    unless its retries allow; a call not sent yet (its input not here) waits."""
    import dataclasses

    process = alive_actor(node, concurrency=2)
    calls = [dataclasses.replace(spec(f"c{i}", actor="A-1", method="f"), max_retries=0)
             for i in range(3)]
    later = dataclasses.replace(spec("c3", ("elsewhere-1",), actor="A-1", method="f"),
                                max_retries=0)
    tell(node, FromHead(p.Assign((), (*calls, later))))
    tell(node, Dispatch())
    to_head(node).clear()
    tell(node, WorkerGone(process.pidfd))
    failed = {r.task_id for m in to_head(node) if isinstance(m, p.TasksDone)
              for r in m.results if isinstance(r.outputs[0][1], p.Failed)}
    assert failed == {"c0", "c1", "c2"}
    assert "c3" in node.table.tasks          # waits for its input and the restarted process


# -- actors: calls and their arguments, stops ------------------------------------------------

def call(call_id: str, *deps: str, nested: tuple[str, ...] = (), caller: str = "") -> p.TaskSpec:
    """A call of actor Counter-1: its ready marker rides among the nested refs, as the
    driver sends it."""
    return p.TaskSpec(call_id, "", "Counter.incr", b"", deps, (*nested, "Counter-1"),
                      (call_id,), 0, "node-0", actor="Counter-1", method="incr", caller=caller)


@pytest.fixture
def actor(node):
    """Counter-1 alive on this node: its process (b"a2") up and its constructor run."""
    node.functions["f@1"] = b""
    tell(node, FromHead(p.Assign((), (spec("Counter-1", actor="Counter-1", method="__init__",
                                           slots=0),))))
    (asked,) = started(node)
    process = WorkerHandle(asked.index, -3, -3, b"a2", ready=True)
    tell(node, WorkerStarted(process, False, "Counter-1"))
    tell(node, Dispatch())
    tell(node, FromWorker(b"a2", p.TasksDone((result("Counter-1", 0),))))
    assert node.actors.by_id["Counter-1"].state == "alive"
    sent(node).clear()
    to_head(node).clear()
    started(node).clear()
    return process


def calls_sent(node: Node, identity: bytes = b"a2") -> list[str]:
    return [item.task_id for who, message in sent(node) if who == identity
            and isinstance(message, p.RunTasks) for item in message.items]


def test_a_call_whose_nested_ref_is_pending_is_sent_with_the_calls_behind_it(node, actor):
    tell(node, FromHead(p.Assign((), (call("call-1", nested=("slow",)), call("call-2")))))
    tell(node, Dispatch())
    assert calls_sent(node) == ["call-1", "call-2"]
    (_, first), = [(w, m) for w, m in sent(node) if isinstance(m, p.RunTasks)][:1]
    assert [oid for oid, _ in first.items[0].nested] == ["Counter-1"]   # "slow": not here


def test_a_call_whose_top_level_argument_is_pending_holds_back_the_calls_behind_it(node, actor):
    tell(node, FromHead(p.Assign((), (call("call-1", "slow"), call("call-2")))))
    tell(node, Dispatch())
    assert calls_sent(node) == []                 # as Ray's in-order queue of a caller
    tell(node, FromHead(p.Ready((("slow", p.Inline(b"7")),))))
    tell(node, Dispatch())
    assert calls_sent(node) == ["call-1", "call-2"]


def test_a_pending_argument_holds_back_its_callers_calls_only(node, actor):
    """As in Ray, calls are ordered per caller: another caller's ready calls pass."""
    tell(node, FromHead(p.Assign((), (call("d-1", "slow"), call("w-1", caller="node-0.w1:"),
                                      call("d-2"), call("w-2", caller="node-0.w1:")))))
    tell(node, Dispatch())
    assert calls_sent(node) == ["w-1", "w-2"]
    tell(node, FromHead(p.Ready((("slow", p.Inline(b"7")),))))
    tell(node, Dispatch())
    assert calls_sent(node) == ["w-1", "w-2", "d-1", "d-2"]
    assert list(node.actors.by_id["Counter-1"].calls) == ["w-1", "w-2", "d-1", "d-2"]


def test_an_actor_whose_last_handle_is_gone_leaves_once_its_calls_are_done(node, actor):
    tell(node, FromHead(p.Assign((), (call("call-1"),))))
    tell(node, Dispatch())
    sent(node).clear()
    tell(node, FromHead(p.KillActor("Counter-1", True, "no handle to it is left",
                                    graceful=True)))
    tell(node, Dispatch())
    assert sent(node) == [] and killed(node) == []          # call-1 still runs
    tell(node, FromWorker(b"a2", p.TasksDone((result("call-1", 0),))))
    tell(node, Dispatch())
    assert sent(node) == [(b"a2", p.Bye())] and killed(node) == []
    tell(node, FromHead(p.Assign((), (call("call-2"),))))   # a call that came too late
    (late,) = [m for m in to_head(node) if isinstance(m, p.TasksDone)][-1:]
    assert isinstance(late.results[0].outputs[0][1], p.Failed)
    tell(node, WorkerGone(actor.pidfd))                     # it left: dead, not restarted
    assert started(node) == [] and node.actors.dead["Counter-1"]     # its error stays,
    assert "Counter-1" not in node.actors.by_id                      # its record goes
    assert isinstance(to_head(node)[-1], p.ActorExit) and to_head(node)[-1].error
    tell(node, FromHead(p.Assign((), (call("call-3"),))))   # one the head sent meanwhile
    (later,) = [m for m in to_head(node) if isinstance(m, p.TasksDone)][-1:]
    assert pickle.loads(later.results[0].outputs[0][1].error).args == \
        pickle.loads(node.actors.dead["Counter-1"]).args      # the actor's own error


def test_an_actor_told_to_leave_that_stays_is_killed_after_the_grace(node, actor):
    from plait.executor.node.actors import ACTOR_EXIT_SECONDS
    from plait.executor.wire.instructions import Tick

    tell(node, FromHead(p.KillActor("Counter-1", True, "gone", graceful=True)))
    tell(node, Dispatch())
    told = node.actors.by_id["Counter-1"].told_bye
    tell(node, Tick(told + ACTOR_EXIT_SECONDS / 2))
    assert killed(node) == []
    tell(node, Tick(told + ACTOR_EXIT_SECONDS))
    assert killed(node) == [actor.index]


def test_plait_kill_kills_a_live_actor_at_once_without_a_bye(node, actor):
    tell(node, FromHead(p.KillActor("Counter-1", True, "plait.kill")))
    assert killed(node) == [actor.index] and sent(node) == []


def test_a_call_that_comes_while_a_restartable_actor_is_killed_waits_for_its_restart(
        node, actor):
    """Sent to the process being killed, it would fail as if it had been running when the
    process died (ActorUnavailableError with max_task_retries=0); the restart runs it."""
    node.actors.by_id["Counter-1"].spec = replace(node.actors.by_id["Counter-1"].spec,
                                                  max_retries=1)      # max_restarts=1
    tell(node, FromHead(p.KillActor("Counter-1", False, "plait.kill")))
    tell(node, FromHead(p.Assign((), (call("call-1"),))))
    tell(node, Dispatch())
    assert killed(node) == [actor.index] and calls_sent(node) == []
    tell(node, WorkerGone(actor.pidfd))                      # it restarts
    assert len(started(node)) == 1
    assert not any(isinstance(m, p.TasksDone) for m in to_head(node))   # call-1 waits


# -- tasks and the refs nested in their arguments ---------------------------------------------

def test_a_task_does_not_wait_for_refs_nested_in_its_arguments(node):
    node.functions["f@1"] = b""
    nested = p.TaskSpec("t1", "f@1", "f", b"", (), ("x", "y"), ("t1",), 3, "node-0")
    tell(node, FromHead(p.Assign((), (nested,))))
    assert to_head(node) == [p.Subscribe(("x", "y"))]   # asked for, to be passed if known
    tell(node, FromHead(p.Ready((("x", p.Inline(b"1")),))))
    tell(node, Dispatch())
    (who, run), = sent(node)
    assert run.items[0].nested == (("x", p.Inline(b"1")),)   # y: got by the task itself


def test_a_task_reading_its_producer_only_through_a_nested_ref_does_not_ride_behind_it(node):
    node.functions["f@1"] = b""
    producer = spec("t1")
    reader = p.TaskSpec("t2", "f@1", "f", b"", (), ("t1",), ("t2",), 3, "node-0", follows="t1")
    tell(node, FromHead(p.Assign((), (producer, reader))))
    assert node.table.chain_after("t1") == []


# -- plait.cancel without force: the task is interrupted, not its worker killed ------------

def test_a_cancel_without_force_interrupts_the_running_task_and_drops_a_queued_one(node):
    """The worker running the task is told which task, then signalled (its code gets
    KeyboardInterrupt); the result it reports is the task's. A task no worker has yet
    fails at once with TaskCancelledError. A recursive cancel asks the head for the
    worker's children too."""
    import pickle

    node.functions["f@1"] = b""
    tell(node, FromHead(p.Assign((), (spec("t0"), spec("t1")))))
    worker = node.workers[b"w0"]
    node.send_items(worker, [node.work_item("t0")])
    sent(node).clear()
    tell(node, FromHead(p.Cancel(("t0", "t1"), True, force=False)))
    assert sent(node) == [(b"w0", p.Cancel(("t0",)))]
    assert interrupted(node) == [0] and killed(node) == []
    up = to_head(node)
    assert p.CancelSubmitted(worker.pid) in up
    (dropped,), = [m.results for m in up if isinstance(m, p.TasksDone)]
    assert dropped.task_id == "t1"
    assert "cancelled" in str(pickle.loads(dropped.outputs[0][1].error))
    tell(node, FromWorker(b"w0", p.TasksDone((result("t0", 0, b"caught"),))))
    assert reported(to_head(node)) == [("t1", 0), ("t0", 0)]


def test_an_interrupted_task_whose_worker_dies_is_cancelled_not_retried(node):
    import pickle

    node.functions["f@1"] = b""
    tell(node, FromHead(p.Assign((), (spec("t0"),))))
    worker = node.workers[b"w0"]
    node.send_items(worker, [node.work_item("t0")])
    tell(node, FromHead(p.Cancel(("t0",), False, force=False)))
    to_head(node).clear()
    tell(node, WorkerGone(worker.pidfd))
    (done,), = [m.results for m in to_head(node) if isinstance(m, p.TasksDone)]
    assert "cancelled" in str(pickle.loads(done.outputs[0][1].error))
    assert "t0" not in node.table.tasks


def test_exceptions_and_crashes_share_one_budget_of_retries(node):
    """As Ray's max_retries / max_task_retries: one retry after an exception, then a crash
    is past the budget of one, and the task fails."""
    import pickle

    node.functions["f@1"] = b""
    tell(node, FromHead(p.Assign((), (replace(spec("t0"), max_retries=1),))))
    worker = node.workers[b"w0"]
    node.send_items(worker, [node.work_item("t0")])
    raised = p.TaskResult("t0", 0, (("t0", p.Failed(pickle.dumps(ValueError("x")))),), 0.01,
                          retryable=True)
    tell(node, FromWorker(b"w0", p.TasksDone((raised,))))
    assert node.table.tasks["t0"].attempt == 1               # retried once
    node.send_items(worker, [node.work_item("t0")])
    to_head(node).clear()
    tell(node, WorkerGone(worker.pidfd))
    (done,), = [m.results for m in to_head(node) if isinstance(m, p.TasksDone)]
    assert isinstance(pickle.loads(done.outputs[0][1].error), WorkerCrashedError)


def test_a_chain_whose_first_task_crashed_out_of_retries_fails_to_its_last_task(node):
    """A worker died running a fused chain's first task, out of retries: the next task,
    started again, fails at once with its input, and the one riding behind it must fail
    too (it was left riding with no worker, and a get of it hung for ever)."""
    node.functions["f@1"] = b""
    chain = (p.TaskSpec("crash", "f@1", "f", b"", (), (), ("c",), 0, "node-0"),
             p.TaskSpec("dep1", "f@1", "f", b"", ("c",), (), ("d1",), 3, "node-0",
                        follows="crash"),
             p.TaskSpec("dep2", "f@1", "f", b"", ("d1",), (), ("d2",), 3, "node-0",
                        follows="dep1"))
    tell(node, FromHead(p.Assign((), chain)))
    tell(node, Dispatch())
    worker = next(w for w in node.workers.values() if w.inflight)
    assert list(worker.inflight) == ["crash", "dep1", "dep2"]
    to_head(node).clear()
    tell(node, WorkerGone(worker.pidfd))
    tell(node, Dispatch())
    failed = {r.task_id for m in to_head(node) if isinstance(m, p.TasksDone)
              for r in m.results if isinstance(r.outputs[0][1], p.Failed)}
    assert failed == {"crash", "dep1", "dep2"} and not node.table.tasks
