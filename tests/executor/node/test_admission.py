"""Admission by memory without processes: a node with a spilling store and worker handles."""

from __future__ import annotations

import os
import pickle

import pytest

import plait
from plait.executor.node.admission import GO, WAIT
from plait.executor.node.node import Node
from plait.executor.node.workers import WorkerHandle
from plait.executor.wire import protocol as p
from plait.executor.wire.instructions import Dispatch, FromHead, FromWorker, Tick
from plait.store.arena import Arena
from plait.store.spill import Spiller
from tests.executor.node.decisions import Decisions, sent, tell, to_head

MIB = 1 << 20
PART = 3 * MIB // 2                       # 1.5 MiB: two inputs and a result overfill 4 MiB


@pytest.fixture
def node(tmp_path, make_transfers, processes):
    arena = Arena.create(f"plait-test-{os.getpid()}-admit", 4 * MIB)
    workers = [WorkerHandle(i, -1, -1, f"w{i}".encode(), ready=True) for i in range(2)]
    made = Node("node-0", arena, Spiller(str(tmp_path)), workers, "ipc://unused",
                transfers=make_transfers, processes=processes)
    made.num_workers = 2
    made.functions["f@1"] = b""
    made.decisions = Decisions(made)
    yield made
    made.store.close()
    arena.unlink()
    try:
        arena.close()
    except BufferError:
        pass


def put(node: Node, object_id: str, nbytes: int = PART) -> None:
    node.store.allocate(object_id, nbytes, "test")
    node.store.seal(object_id)
    node.values[object_id] = p.Stored("node-0", nbytes)


def spec(task_id: str, deps: tuple[str, ...] = ()) -> p.TaskSpec:
    return p.TaskSpec(task_id, "f@1", "f", b"", deps, (), (task_id,), 3, "node-0")


def running(node: Node) -> dict[str, str]:
    return {task: w.identity.decode() for w in node.workers.values() for task in w.inflight}


def finish(node: Node, worker: bytes, task_id: str) -> None:
    done = p.TaskResult(task_id, 0, ((task_id, p.Inline(b"1")),), 0.01)
    tell(node, FromWorker(worker, p.TasksDone((done,))))
    tell(node, Dispatch())


def failures(node: Node) -> list[Exception]:
    return [pickle.loads(v.error) for m in to_head(node) if isinstance(m, p.TasksDone)
            for r in m.results for _, v in r.outputs if isinstance(v, p.Failed)]


def test_a_task_that_does_not_fit_waits_and_a_later_one_that_fits_passes_it(node):
    put(node, "a")
    put(node, "b")
    tell(node, FromHead(p.Assign((), (spec("t1", ("a",)), spec("t2", ("b",)), spec("t3")))))
    tell(node, Dispatch())
    # t1 pins 1.5 MiB and is promised 1.5 MiB (a result of unknown size: its input's)
    assert running(node) == {"t1": "w0", "t3": "w1"}
    assert list(node.admission.held) == ["t2"]
    finish(node, b"w0", "t1")             # f's results are inline: t2 needs its input only
    assert running(node) == {"t2": "w0", "t3": "w1"} and not node.admission.held
    assert failures(node) == []


def test_spilled_inputs_are_restored_when_their_task_starts_not_when_queued(node):
    for name in "abc":
        put(node, name)                   # 4.5 MiB into 4: "a" spills
    assert node.store.objects["a"].offset is None
    tell(node, FromHead(p.Assign((), (spec("t1", ("b",)), spec("t2", ("a",))))))
    tell(node, Dispatch())
    assert running(node) == {"t1": "w0"} and node.store.objects["a"].offset is None
    finish(node, b"w0", "t1")
    assert running(node) == {"t2": "w0"} and node.store.objects["a"].pins == 1


def sent_items(node: Node) -> dict[str, p.WorkItem]:
    return {item.task_id: item for _, m in sent(node) if isinstance(m, p.RunTasks)
            for item in m.items}


def test_a_task_whose_inputs_cannot_be_held_reads_them_from_disk(node):
    """Ray falls back to disk when its store is full; so does plait: a task whose spilled
    input finds no room (a driver's view holds the rest, for good) runs at once, its
    worker told to read that input from its spill file."""
    put(node, "a")
    put(node, "view", 3 * MIB)            # "a" spills
    node.store.pin("view")                # a driver's view: nothing here will end it
    tell(node, FromHead(p.Assign((), (spec("t1", ("a",)),))))
    tell(node, Dispatch())
    assert failures(node) == [] and running(node) == {"t1": "w0"}
    (value,) = sent_items(node)["t1"].deps
    record = node.store.objects["a"].spill
    assert value == p.OnDisk("node-0", record.path, PART, record.crc)
    assert node.store.objects["a"].offset is None and node.task_pins["t1"] == []


def test_a_get_waits_for_room_while_a_task_runs_and_is_answered_after(node):
    for name in "abc":
        put(node, name)
    tell(node, FromHead(p.Assign((), (spec("t1", ("a",)),))))
    tell(node, Dispatch())
    tell(node, FromHead(p.Pin(7, ("b", "c"))))     # 3 MiB beside t1's 1.5 + 1.5 promised: wait
    assert not [m for m in to_head(node) if isinstance(m, p.Pinned)]
    finish(node, b"w0", "t1")
    node.retry_waiting()
    (pinned,) = [m for m in to_head(node) if isinstance(m, p.Pinned)]
    assert pinned.request == 7 and all(isinstance(v, p.Located) for _, v in pinned.values)


def test_a_get_larger_than_the_whole_store_pins_what_fits_and_reads_the_rest_from_disk(node):
    """4.5 MiB asked of a 4 MiB store: two objects pinned in memory, the third read from
    its spill file by the driver (Ray's get of more than its store works too)."""
    for name in "abc":
        put(node, name)
    tell(node, FromHead(p.Pin(8, ("a", "b", "c"))))
    (pinned,) = [m for m in to_head(node) if isinstance(m, p.Pinned)]
    kinds = [type(v) for _, v in pinned.values]
    assert kinds == [p.Located, p.Located, p.OnDisk]
    (_, on_disk), = [(oid, v) for oid, v in pinned.values if isinstance(v, p.OnDisk)]
    assert on_disk.path == node.store.objects["c"].spill.path
    assert sorted(node.client_pins) == ["a", "b"] and node.store.objects["c"].pins == 0


def test_verdicts(node):
    put(node, "a")
    need = node.admission.need(("a",), "g", 1)
    assert (need.inputs, need.result) == (PART, PART)         # unknown g: its input's size
    node.admission.learn("g", 0)
    assert node.admission.need(("a",), "g", 1).result == 0
    assert node.admission.verdict(need, lambda: True) == GO
    node.admission.started("other", node.admission.need(("a",), "h", 1))
    assert node.admission.verdict(need, lambda: True) == WAIT
    assert node.admission.verdict(need, lambda: False) == GO  # its inputs alone fit
    node.store.allocate("held", 3 * MIB, "test")              # pinned while written
    assert node.admission.verdict(need, lambda: False) == GO  # its input read from disk
    assert node.admission.verdict(need, lambda: False, lambda: True) == WAIT   # for views
    node.admission.allocated("other", MIB)
    node.admission.ended("other")
    assert node.admission.promised_total == 0



def split_layout(node: Node) -> None:
    """u [0, 1), v [1, 1.5), w [1.5, 2.5) and "in" [2.5, 4) MiB: the store full."""
    for name, nbytes in (("u", MIB), ("v", MIB // 2), ("w", MIB), ("in", PART)):
        put(node, name, nbytes)


def view_while_a_task_runs(node: Node) -> tuple[p.ObjectValue, p.Message]:
    """t1 runs reading "in"; a driver's get of "v" arrives; then t1's result asks for room
    (1.5 MiB: its estimate). Returns the get's value and the answer to the result."""
    tell(node, FromHead(p.Assign((), (spec("t1", ("in",)),))))
    tell(node, Dispatch())
    assert running(node) == {"t1": "w0"}
    tell(node, FromHead(p.Pin(9, ("v",))))
    (pinned,) = [m for m in to_head(node) if isinstance(m, p.Pinned)]
    tell(node, FromWorker(b"w0", p.Alloc(1, "t1", PART, "t1")))
    (answer,) = [m for _, m in sent(node) if isinstance(m, (p.Allocated, p.Refused))]
    return pinned.values[0][1], answer


def test_a_drivers_view_restored_while_a_task_runs_leaves_its_result_room_whole(node):
    """The memory-pressure soak's lost DAG (seed 6, ``step-188``): a task ran with its
    input at the top of the store; a driver's get restored a spilled object into the free
    bytes below, in the middle of the room the task's result needed, and the result was
    refused ("pinned objects split the free bytes") until the task failed. A view, held
    for as long as the driver keeps the value, is restored as high as pins allow, as a
    task's arranged inputs are; results and puts, placed from the bottom, find it whole."""
    split_layout(node)
    for name in ("u", "w", "in"):              # "v" is now the least recently used
        node.store.pin(name)
        node.store.unpin(name)
    node.store.allocate("x", MIB // 2, "test")  # the store is full: "v" spills
    node.store.delete("x")
    node.store.delete("w")
    assert node.store.objects["v"].offset is None
    viewed, answer = view_while_a_task_runs(node)
    assert isinstance(viewed, p.Located)
    assert isinstance(answer, p.Allocated), pickle.loads(answer.error)


def test_a_task_whose_input_finds_no_block_in_one_piece_waits_without_spinning(node):
    """The memory-pressure soak's hung node: admission let a task go (its input fits the
    bytes free), but the free bytes lay in pieces and its spilled input could not come back
    in one; the task was to wait for the running one, yet was queued again at once and
    taken again by the same dispatch, for ever (the node answered nothing more)."""
    put(node, "x")                              # x, 1.5 MiB, spilled by "in" below
    for name, nbytes in (("u", MIB), ("v", MIB // 2), ("w", MIB), ("in", PART)):
        put(node, name, nbytes)
    assert node.store.objects["x"].offset is None
    node.admission.learn("f", 0)                # f's results are inline: no room promised
    tell(node, FromHead(p.Assign((), (spec("t0", ("in",)),))))
    tell(node, Dispatch())
    assert running(node) == {"t0": "w0"}        # "in" pinned
    node.store.pin("v")                         # a driver's view, between the two below
    node.store.delete("u")
    node.store.delete("w")                      # 2 MiB free, in two pieces of 1 MiB
    tell(node, FromHead(p.Assign((), (spec("t1", ("x",)),))))
    tell(node, Dispatch())                      # (before the fix: it never returned)
    assert running(node) == {"t0": "w0"} and node.room_waiting == ["t1"]
    finish(node, b"w0", "t0")                   # "in" may go now: x comes back, t1 runs
    tell(node, Tick(1.0))
    tell(node, Dispatch())
    assert "t1" in running(node) and failures(node) == []


def test_a_result_with_no_room_and_nothing_to_wait_for_goes_to_disk(node):
    """Ray's fallback allocation: a driver's view holds the store, no task here may free
    room, so the result's block is a file of the spill directory, not a refusal (which
    made the memory-pressure soak's task fail: 'pinned objects split the free bytes')."""
    put(node, "view", 3 * MIB)
    node.store.pin("view")                      # a driver's view, kept
    tell(node, FromHead(p.Assign((), (spec("t1"),))))
    tell(node, Dispatch())
    tell(node, FromWorker(b"w0", p.Alloc(1, "t1", PART, "t1")))
    (answer,) = [m for _, m in sent(node) if isinstance(m, (p.Allocated, p.Refused))]
    assert isinstance(answer, p.Allocated) and answer.offset == -1
    assert answer.path == node.store.objects["t1"].spill.path
    done = p.TaskResult("t1", 0, (("t1", p.OnDisk("node-0", answer.path, PART, (7,))),), 0.01)
    tell(node, FromWorker(b"w0", p.TasksDone((done,))))
    assert node.store.on_disk("t1").crc == (7,) and failures(node) == []


def test_a_drivers_view_of_an_object_in_the_middle_is_moved_up_first(node):
    """The same with the viewed object already in memory, low in the store (a result just
    made): pinned where it lay, it split the room of the running task's result."""
    split_layout(node)
    node.store.delete("w")
    viewed, answer = view_while_a_task_runs(node)
    assert isinstance(answer, p.Allocated), pickle.loads(answer.error)
    assert isinstance(viewed, p.Located) and viewed.offset == 2 * MIB   # moved up, pinned
    assert node.store.objects["v"].pins == 1


def test_a_task_kept_out_by_a_drivers_view_waits_for_it_and_runs_once_it_goes(node):
    """The memory-pressure soak's last loss: 'readers (a driver's views, say) pin 57 MiB',
    the task's inputs alone not fitting beside them, nothing running: it failed at once.
    A driver's view goes when its reader drops it, so the task waits for it now."""
    put(node, "a")
    put(node, "view", 3 * MIB)            # "a" spills
    tell(node, FromHead(p.Pin(5, ("view",))))          # a driver's get: its view's pin
    node.clock = lambda: 100.0
    tell(node, FromHead(p.Assign((), (spec("t1", ("a",)),))))
    tell(node, Dispatch())
    assert failures(node) == [] and not running(node) and list(node.admission.held) == ["t1"]
    tell(node, FromHead(p.Unpin((("node-0", "view"),))))   # the driver dropped its view
    node.clock = lambda: 101.0
    tell(node, Dispatch())
    assert running(node) == {"t1": "w0"} and not node.admission.view_waits
    assert failures(node) == []


def test_a_task_kept_out_by_a_view_kept_for_good_reads_from_disk_after_the_grace(node):
    from plait.executor.node.admission import VIEW_GRACE_SECONDS

    put(node, "a")
    put(node, "view", 3 * MIB)
    tell(node, FromHead(p.Pin(5, ("view",))))
    node.clock = lambda: 100.0
    tell(node, FromHead(p.Assign((), (spec("t1", ("a",)),))))
    tell(node, Dispatch())
    node.clock = lambda: 100.0 + VIEW_GRACE_SECONDS / 2
    tell(node, Dispatch())
    assert failures(node) == [] and list(node.admission.held) == ["t1"]
    node.clock = lambda: 100.0 + VIEW_GRACE_SECONDS
    tell(node, Dispatch())
    assert failures(node) == [] and running(node) == {"t1": "w0"}
    assert isinstance(sent_items(node)["t1"].deps[0], p.OnDisk)
    assert not node.admission.held and not node.admission.view_waits
