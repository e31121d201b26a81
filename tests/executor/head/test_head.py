"""The head's decisions without processes: an event in, the exact instructions out.

Most tests give the head a stand-in for its own node (no arena, no workers); what it
decides to send, to nodes (its own included) and to clients, is read in order. The last
few give it a real Node over a small arena, joined as in node-0's process (NodeZero), to
check the tables the two keep together.
"""

from __future__ import annotations

import dataclasses

import gc
import os
import pickle
from collections import Counter
from dataclasses import replace

import pytest

from plait.errors import ClusterError
from plait.executor.head.head import Head
from plait.executor.head.invariants import head_problems
from plait.executor.node.invariants import node_problems
from plait.executor.node.node import Node
from plait.executor.node.node_zero import NodeZero
from plait.executor.node.workers import WorkerHandle
from plait.executor.wire import protocol as p
from plait.executor.wire.events import EventRing
from plait.executor.wire.instructions import (ClientGone, Dispatch, Event, Flush, FromClient,
                                              FromNode, FromWorker, NodeGone, Tick, ToClient,
                                              ToNode, ToWorker, Unlink)
from plait.store.arena import Arena

MIB = 1 << 20
DRIVER = (None, b"driver")
CODE = b"def f(): ..."            # the pickled function the driver ships with its tasks


# -- a recorded node-0 -------------------------------------------------------------------

class RecordingStore:
    """The part of an ObjectStore the head reads on a driver's Seal."""

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}

    def seal(self, object_id: str) -> None:
        assert object_id in self.sizes, f"{object_id} sealed before it was allocated"

    def nbytes(self, object_id: str) -> int:
        return self.sizes[object_id]


class RecordingNode:
    """The head's own node (a LocalNode) as plain data: what the head reads and writes of
    it in process. Messages for it are ToNode("node-0", ...) instructions, read like any."""

    id = "node-0"
    ready = True

    def __init__(self) -> None:
        self.store = RecordingStore()
        self.values: dict[str, p.ObjectValue] = {}
        self.functions: dict[str, bytes] = {}
        self.client_pins: Counter[str] = Counter()     # taken in process (a put's)

    def put_block(self, message: p.Alloc, may_wait: bool) -> p.Message | None:
        self.store.sizes[message.object_id] = message.nbytes
        return p.Allocated(message.request, message.object_id, self.id, 0)

    def pin_for_client(self, object_id: str) -> None:
        assert object_id in self.store.sizes, f"{object_id} pinned before it was allocated"
        self.client_pins[object_id] += 1


def node_info(node: str) -> p.NodeInfo:
    """One worker; the head's node-0 on host-0, the others on host-1 (so losing one
    removes no file of this machine: the head cleans up only after nodes on its host)."""
    return p.NodeInfo(node, "ipc://unused", 0, node == "node-0", 1, f"arena-{node}",
                      4 * MIB, "host-0" if node == "node-0" else "host-1")


def recorded(head: Head) -> Head:
    head.decided = []             # (to whom, message), in the order decided; see take()
    return head


@pytest.fixture
def alone() -> Head:
    return recorded(Head("s-1", RecordingNode(), node_info("node-0")))


def tell(head: Head, event: Event, machine: Node | None = None) -> None:
    """Hand the head (or its real node-0) an event; keep what it decided for ``take``."""
    zero = getattr(head, "zero", None)
    target = machine or head
    for instruction in zero.handle(target, event) if zero else target.handle(event):
        head.decided.append(addressed(instruction))


def addressed(instruction) -> tuple[object, object]:
    """An instruction as (to whom, what): a client's peer or a node id, and the message."""
    match instruction:
        case ToClient(peer, message):
            return peer, message
        case ToNode(node, message):
            return node, message
        case ToWorker(identity, message):          # from a real node-0 (below)
            return identity, message
        case Unlink(paths):
            return "unlink", paths
    raise AssertionError(f"unexpected {instruction!r}")


def joined(head: Head, *nodes: str) -> Head:
    for node in nodes:
        tell(head, FromNode(node, p.NodeHello(node_info(node))))
    take(head)                                       # the NodeTables they caused
    return head


def take(head: Head) -> list[tuple[object, p.Message]]:
    """What the head decided since the last call (after a flush of its Readys and Deletes)."""
    tell(head, Flush())
    sent = list(head.decided)
    head.decided.clear()
    return sent


def on(node: str, task_id: str, *deps: str, max_retries: int = 3) -> p.TaskSpec:
    return p.TaskSpec(task_id, "f@1", "f", b"", deps, (), (task_id,), max_retries, node)


def submit(head: Head, *specs: p.TaskSpec, subscribe: tuple[str, ...] = ()) -> None:
    tell(head, FromClient(DRIVER, p.Submit((("f@1", CODE),), specs, subscribe=subscribe)))


def done(head: Head, node: str, task_id: str, nbytes: int = MIB) -> None:
    result = p.TaskResult(task_id, 0, ((task_id, p.Stored(node, nbytes)),), 0.01)
    tell(head, FromNode(node, p.TasksDone((result,))))


def error_in(message: p.Message) -> tuple[str, ...]:
    """A Ready's one Failed value, read: (object, exception class, its message)."""
    assert isinstance(message, p.Ready) and len(message.values) == 1
    (oid, value), = message.values
    assert isinstance(value, p.Failed)
    error = pickle.loads(value.error)
    return oid, type(error).__name__, str(error)


# -- assignment ----------------------------------------------------------------------------

def test_a_head_is_made_without_an_arena(alone):
    assert alone.nodes["node-0"].store_free == 4 * MIB           # from its NodeInfo
    assert take(alone) == []


def test_a_joining_node_is_announced_and_a_driver_waiting_for_it_welcomed(alone):
    tell(alone, FromClient(DRIVER, p.Hello(1, nodes_expected=2)))
    assert take(alone) == []
    tell(alone, FromNode("node-1", p.NodeHello(node_info("node-1"))))
    infos = (node_info("node-0"), node_info("node-1"))
    assert take(alone) == [("node-1", p.NodeTable(infos)), (DRIVER, p.Welcome("s-1", infos, client=1)),
                           ("node-0", p.NodeTable(infos)), ("node-1", p.NodeTable(infos))]


def test_a_node_or_client_speaking_other_messages_is_refused_at_its_hello(alone):
    """A host running another plait would misread messages: told why at its Hello, the
    node stops (as one declared dead does) and the client raises, and neither is admitted."""
    other = p.NodeHello(node_info("node-1"), wire="0123456789ab")
    tell(alone, FromNode("node-1", other))
    [(to, lost)] = take(alone)
    assert to == "node-1" and lost.node == "node-1" and "0123456789ab" in lost.reason
    assert p.WIRE_VERSION in lost.reason and "node-1" not in alone.nodes
    tell(alone, FromClient(DRIVER, p.Hello(1, wire="")))
    [(to, refused)] = take(alone)
    error = pickle.loads(refused.error)
    assert to == DRIVER and refused.request == p.HELLO_REFUSED
    assert isinstance(error, ClusterError) and "an older plait" in str(error)
    assert alone.hellos == []


def test_a_subscribe_with_a_request_is_answered_after_what_is_known_now(alone):
    """(A get with timeout=0 waits for this answer, and so learns what is ready now.)"""
    put_on(alone, "node-0", "x")
    tell(alone, FromClient(DRIVER, p.Expect(("later",))))     # to come: not told yet
    take(alone)
    tell(alone, FromClient(DRIVER, p.Subscribe(("x", "later"), request=5)))
    sent = [message for to, message in take(alone) if to == DRIVER]
    assert [type(m) for m in sent] == [p.Ready, p.Subscribed]
    assert [oid for oid, _ in sent[0].values] == ["x"] and sent[1] == p.Subscribed(5)


def test_nodes_joining_in_one_turn_cause_one_broadcast_of_the_table(alone):
    """The joiner gets the table at once; the others one table per flush, however many
    joined since (one per join was N^2 messages of N nodes for a cluster of N)."""
    for node in ("node-1", "node-2", "node-3"):
        tell(alone, FromNode(node, p.NodeHello(node_info(node))))
    sent = take(alone)
    everyone = [to for to, message in sent[3:]]
    assert [to for to, _ in sent[:3]] == ["node-1", "node-2", "node-3"]
    assert everyone == ["node-0", "node-1", "node-2", "node-3"]
    assert all(isinstance(message, p.NodeTable) for _, message in sent)


def test_submitted_tasks_go_to_their_nodes_each_function_shipped_once(alone):
    joined(alone, "node-1", "node-2")
    t1, t2, t3 = on("node-1", "t1"), on("node-2", "t2"), on("node-1", "t3")
    submit(alone, t1, t2)
    submit(alone, t3)
    assert take(alone) == [("node-1", p.Assign((("f@1", CODE),), (t1,))),
                           ("node-2", p.Assign((("f@1", CODE),), (t2,))),
                           ("node-1", p.Assign((), (t3,)))]


def test_a_task_compiled_for_a_node_gone_since_goes_to_the_least_loaded(alone):
    joined(alone, "node-1", "node-2")
    submit(alone, on("node-1", "t1"), on("node-1", "t2"), on("node-0", "t3"))
    take(alone)
    submit(alone, on("node-9", "t4"))                            # node-9 died meanwhile
    assert take(alone) == [("node-2", p.Assign((("f@1", CODE),), (on("node-2", "t4"),)))]


def test_a_reader_moves_next_to_an_input_that_came_out_big(alone):
    """The compiler guessed the input small and put its reader on node-2; 2 MiB came out
    on node-1, so the head takes the reader back and gives it to node-1."""
    joined(alone, "node-1", "node-2")
    big, reader = on("node-1", "big"), on("node-2", "reader", "big")
    submit(alone, big, reader)
    take(alone)
    done(alone, "node-1", "big", 2 * MIB)
    assert take(alone) == [("node-2", p.Revoke("reader"))]
    tell(alone, FromNode("node-2", p.Revoked("reader", True)))
    assert take(alone) == [("node-1", p.Assign((), (on("node-1", "reader", "big"),)))]
    assert alone.assigned["reader"].node == "node-1"
    assert (alone.nodes["node-1"].queued, alone.nodes["node-2"].queued) == (1, 0)


def test_a_reader_stays_where_it_was_placed_unless_moving_saves_a_copy(alone):
    """A small result moves nobody; nor does a big one whose reader has more of its
    input bytes where it is."""
    joined(alone, "node-1", "node-2")
    submit(alone, on("node-1", "small"), on("node-1", "big"), on("node-2", "near"),
           on("node-2", "reader-1", "small"), on("node-2", "reader-2", "big", "near"))
    take(alone)
    done(alone, "node-1", "small", 1000)
    done(alone, "node-2", "near", 3 * MIB)
    done(alone, "node-1", "big", 2 * MIB)
    assert take(alone) == []


# -- a lost node: its tasks, its objects, lineage ------------------------------------------

def losing(head: Head, node: str, reason: str = "test") -> list[tuple[object, p.Message]]:
    """Lose ``node``; returns what followed the NodeTables and NodeLosts every node gets."""
    tell(head, NodeGone(node, reason))
    sent = take(head)
    table = p.NodeTable(tuple(r.info for r in head.nodes.values()))
    told = [(n, table) for n in head.nodes] + [(n, p.NodeLost(node, reason))
                                               for n in head.nodes]
    assert sent[:len(told)] == told
    return sent[len(told):]


def test_the_tasks_of_a_lost_node_are_retried_on_a_live_one(alone):
    joined(alone, "node-1", "node-2")
    submit(alone, on("node-1", "t1"), on("node-2", "t2"))
    take(alone)
    assert losing(alone, "node-1") == [("node-0", p.Assign((("f@1", CODE),),
                                                           (on("node-0", "t1"),)))]
    assert alone.assigned["t1"].node == "node-0"
    done(alone, "node-1", "t1")                   # a late result from the dead node
    assert take(alone) == [("node-1", p.NodeLost("node-1", "the head declared it dead and "
                                                           "does not take it back"))]
    assert "t1" in alone.assigned and alone.directory.lookup("t1") is None


def test_a_reader_being_moved_when_its_node_dies_is_retried_and_forgotten_by_the_move(alone):
    """The Revoke sent to the dead node is never answered: the move is over (a stale
    entry was kept for ever, and kept the task from being moved again)."""
    joined(alone, "node-1", "node-2")
    submit(alone, on("node-1", "big"), on("node-2", "reader", "big"))
    done(alone, "node-1", "big", 2 * MIB)
    assert take(alone)[-1] == ("node-2", p.Revoke("reader"))
    assert losing(alone, "node-2") == [("node-0", p.Assign((("f@1", CODE),),
                                                           (on("node-0", "reader", "big"),)))]
    assert alone.moving == {}


def test_a_task_out_of_retries_fails_with_worker_crashed(alone):
    joined(alone, "node-1")
    submit(alone, on("node-1", "t1", max_retries=0), subscribe=("t1",))
    take(alone)
    (peer, ready), = losing(alone, "node-1", "killed")
    assert peer == DRIVER and error_in(ready)[:2] == ("t1", "WorkerCrashedError")
    assert "node-1 died (killed)" in error_in(ready)[2] and alone.assigned == {}


def test_a_result_whose_only_copy_was_on_a_lost_node_is_made_again(alone):
    joined(alone, "node-1")
    submit(alone, on("node-1", "t1"))
    done(alone, "node-1", "t1")
    take(alone)
    assert losing(alone, "node-1") == [("node-0", p.Assign((("f@1", CODE),),
                                                           (on("node-0", "t1"),)))]
    tell(alone, FromClient(DRIVER, p.Subscribe(("t1",))))
    assert take(alone) == []                                    # pending, not lost
    done(alone, "node-0", "t1")
    assert take(alone) == [(DRIVER, p.Ready((("t1", p.Stored("node-0", MIB)),)))]


def put_on(head: Head, node: str, object_id: str) -> None:
    """A task's put, stored on ``node`` (its session announced it; the node made it)."""
    tell(head, FromClient(DRIVER, p.Expect((object_id,))))
    tell(head, FromNode(node, p.Created(object_id, p.Stored(node, MIB), "")))


def test_a_put_whose_only_copy_was_on_a_lost_node_is_lost_for_good(alone):
    joined(alone, "node-1")
    put_on(alone, "node-1", "put-1")
    take(alone)
    assert losing(alone, "node-1", "killed") == []              # nothing to run again
    tell(alone, FromClient(DRIVER, p.Subscribe(("put-1",))))
    (peer, ready), = take(alone)
    assert peer == DRIVER and error_in(ready) == (
        "put-1", "ObjectLostError",
        "object put-1 is lost: its only copy was on node-1, which died (killed)")


def test_a_put_with_a_copy_on_another_node_outlives_its_node(alone):
    joined(alone, "node-1", "node-2")
    put_on(alone, "node-1", "put-1")
    tell(alone, FromNode("node-2", p.ReplicaAdded("put-1", "node-2", "node-1", MIB)))
    take(alone)
    assert losing(alone, "node-1") == []
    tell(alone, FromClient(DRIVER, p.Subscribe(("put-1",))))
    assert take(alone) == [(DRIVER, p.Ready((("put-1", p.Stored("node-2", MIB)),)))]


def test_a_lost_result_whose_inputs_were_freed_is_made_again_with_them(alone):
    """Ray's lineage pinning: the leaves' values went once their sum was made, their
    lineage stayed; when the sum's only copy is lost, leaves then sum run again, and the
    leaves' new copies go once the sum no longer needs them."""
    joined(alone, "node-1")
    leaf1, leaf2, add = on("node-1", "leaf-1"), on("node-1", "leaf-2"), \
        on("node-1", "add-1", "leaf-1", "leaf-2")
    submit(alone, leaf1, leaf2, add, subscribe=("add-1",))
    tell(alone, FromClient(DRIVER, p.Free(("leaf-1", "leaf-2"))))  # the driver drops the leaves
    for task_id in ("leaf-1", "leaf-2", "add-1"):
        done(alone, "node-1", task_id)
    assert take(alone)[1:] == [(DRIVER, p.Ready((("add-1", p.Stored("node-1", MIB)),))),
                               ("node-1", p.Delete(("leaf-1", "leaf-2")))]
    assert losing(alone, "node-1") == [
        ("node-0", p.Assign((("f@1", CODE),), (on("node-0", "leaf-1"),))),
        ("node-0", p.Assign((), (on("node-0", "leaf-2"),))),
        ("node-0", p.Assign((), (on("node-0", "add-1", "leaf-1", "leaf-2"),)))]
    for task_id in ("leaf-1", "leaf-2", "add-1"):
        done(alone, "node-0", task_id)
    assert take(alone) == [("node-0", p.Delete(("leaf-1", "leaf-2")))]
    assert alone.lineage.problems() == [] and set(alone.directory.entries) == {"add-1"}


def test_a_lost_result_is_run_again_even_if_its_input_put_is_lost_with_it(alone):
    """The head gives the task its lost input's error: the node fails it with that."""
    joined(alone, "node-1")
    put_on(alone, "node-1", "put-1")
    submit(alone, on("node-1", "t1", "put-1"))
    done(alone, "node-1", "t1")
    take(alone)
    assert losing(alone, "node-1", "killed") == [
        ("node-0", p.Assign((("f@1", CODE),), (on("node-0", "t1", "put-1"),)))]
    tell(alone, FromNode("node-0", p.Subscribe(("put-1",))))  # its input, please
    (node, ready), = take(alone)
    assert node == "node-0" and error_in(ready)[:2] == ("put-1", "ObjectLostError")


# -- frees ---------------------------------------------------------------------------------

def test_dropped_refs_make_the_head_delete_every_copy(alone):
    joined(alone, "node-1", "node-2")
    submit(alone, on("node-1", "t1"))
    done(alone, "node-1", "t1")
    tell(alone, FromNode("node-2", p.ReplicaAdded("t1", "node-2", "node-1", MIB)))
    take(alone)
    tell(alone, FromClient(DRIVER, p.Free(("t1",))))
    assert sorted(take(alone)) == [("node-1", p.Delete(("t1",))),
                                   ("node-2", p.Delete(("t1",)))]
    assert alone.directory.entries == {} and alone.locations == {}


def test_a_task_reading_an_object_its_driver_let_go_of_fails_naming_the_driver(alone):
    """Issue 11: the W10 benchmark's consumer failed with "make_block-5 is lost: the
    cluster holds no copy and no task will make one", which did not say whether the head
    had reclaimed it or never heard of it. Now it names the last holder to let go."""
    joined(alone, "node-1")
    tell(alone, FromClient(DRIVER, p.Hello(77, 1, "host-0")))
    submit(alone, on("node-1", "make_block-5"))
    done(alone, "node-1", "make_block-5")
    tell(alone, FromClient(DRIVER, p.Free(("make_block-5",))))
    take(alone)
    tell(alone, FromClient(DRIVER, p.ViewRequest(3, ("make_block-5", "never-1"), ())))
    (to, view), = take(alone)
    errors = {oid: str(pickle.loads(error)) for oid, error in view.missing}
    assert "reclaimed" in errors["make_block-5"]
    assert "a Free from the client pid 77 on host-0" in errors["make_block-5"]
    assert errors["never-1"].endswith("the cluster holds no copy and no task will make one")


def test_objects_held_by_a_driver_gone_name_it_when_read_after(alone):
    joined(alone, "node-1")
    submit(alone, on("node-1", "t1"))
    done(alone, "node-1", "t1")
    tell(alone, ClientGone(DRIVER))
    submit(alone, on("node-0", "reader", "t1"), subscribe=("reader",))
    (to, ready), = [sent for sent in take(alone) if isinstance(sent[1], p.Ready)]
    assert "the client 647269766572, gone" in error_in(ready)[2]


def test_a_workers_free_waits_for_the_results_of_the_tasks_it_names(alone):
    """A worker's session frees a child's result that its own task's result (still on its
    way through the node) holds a ref from: the head lets go only after that result."""
    joined(alone, "node-1")
    session = (None, b"w-session")
    submit(alone, on("node-1", "parent"))
    tell(alone, FromClient(session, p.Submit((), (on("node-1", "child"),))))
    done(alone, "node-1", "child")
    take(alone)
    tell(alone, FromClient(session, p.Free(("child",), after=("parent",))))
    assert take(alone) == [] and "child" in alone.directory.entries
    assert head_problems(alone) == []
    result = p.TaskResult("parent", 0, (("parent", p.Inline(b"", ("child",))),), 0.01)
    tell(alone, FromNode("node-1", p.TasksDone((result,))))
    assert alone.directory.entries["child"].holders == 1        # the parent's result's
    assert alone.frees_after == {}


def test_an_object_still_read_by_an_assigned_task_is_deleted_when_that_task_ends(alone):
    joined(alone, "node-1", "node-2")
    submit(alone, on("node-1", "t1"))
    done(alone, "node-1", "t1")
    submit(alone, on("node-2", "reader", "t1"))
    take(alone)
    tell(alone, FromClient(DRIVER, p.Free(("t1",))))
    assert take(alone) == []                                     # reader has yet to read it
    done(alone, "node-2", "reader")
    assert take(alone) == [("node-1", p.Delete(("t1",)))]


def test_a_result_dropped_before_it_is_made_is_deleted_when_it_arrives(alone):
    joined(alone, "node-1")
    submit(alone, on("node-1", "t1"))
    tell(alone, FromClient(DRIVER, p.Free(("t1",))))
    take(alone)
    done(alone, "node-1", "t1")
    assert take(alone) == [("node-1", p.Delete(("t1",)))]


def test_a_drivers_put_is_deleted_from_the_heads_own_node_when_dropped(alone):
    tell(alone, FromClient(DRIVER, p.Alloc(1, "put-1", MIB)))
    tell(alone, FromClient(DRIVER, p.Seal("put-1")))
    assert take(alone) == [(DRIVER, p.Allocated(1, "put-1", "node-0", 0))]
    assert alone.local.values == {"put-1": p.Stored("node-0", MIB)}   # node-0 serves it
    tell(alone, FromClient(DRIVER, p.Unpin((("node-0", "put-1"),))))
    tell(alone, FromClient(DRIVER, p.Free(("put-1",))))
    assert take(alone) == [("node-0", p.Unpin((("node-0", "put-1"),))),
                           ("node-0", p.Delete(("put-1",)))]


def test_a_drivers_put_keeps_its_blocks_pin_for_the_driver_until_one_unpin(alone):
    tell(alone, FromClient(DRIVER, p.Alloc(1, "put-1", MIB)))
    tell(alone, FromClient(DRIVER, p.Seal("put-1")))
    take(alone)
    assert alone.local.client_pins == {"put-1": 1}
    assert alone.client_pins[DRIVER] == {("node-0", "put-1"): 1}
    tell(alone, FromClient(DRIVER, p.Unpin((("node-0", "put-1"),))))
    assert take(alone) == [("node-0", p.Unpin((("node-0", "put-1"),)))]
    assert alone.client_pins[DRIVER] == {}


def test_a_driver_gone_after_a_put_gives_back_the_pin_it_was_handed(alone):
    tell(alone, FromClient(DRIVER, p.Alloc(1, "put-1", MIB)))
    tell(alone, FromClient(DRIVER, p.Seal("put-1")))
    take(alone)
    tell(alone, ClientGone(DRIVER))
    assert ("node-0", p.Unpin((("node-0", "put-1"),))) in take(alone)


def test_a_driver_that_disconnects_lets_go_of_what_it_held(alone):
    joined(alone, "node-1")
    submit(alone, on("node-1", "t1"))
    done(alone, "node-1", "t1")
    take(alone)
    tell(alone, ClientGone(DRIVER))
    assert take(alone) == [("node-1", p.Delete(("t1",)))]



def test_a_worker_killed_by_a_recursive_cancel_takes_its_sessions_tasks_with_it(alone):
    """A task on node-1 submitted a child (and called an actor) through its worker's
    session; cancelling the task kills that worker: the child is cancelled with it, the
    actor call is not. A cancel with recursive=False leaves the children running."""
    joined(alone, "node-1")
    session = (None, b"w-session")
    tell(alone, FromClient(session, p.Hello(77, 1, "host-1")))
    call = replace(on("node-1", "call"), actor="Counter-1", method="incr")
    submit(alone, creation("Counter-1"))
    tell(alone, FromClient(session, p.Submit((), (on("node-1", "child"), call))))
    take(alone)
    tell(alone, FromNode("node-1", p.WorkerExited(77, cancelled=True)))
    sent = take(alone)
    assert ("node-1", p.Cancel(("child",), True, force=True)) in sent
    assert all(message.object_ids != ("call",) for _, message in sent
               if isinstance(message, p.Cancel))
    assert "child" not in alone.assigned and "call" in alone.assigned
    assert head_problems(alone) == []


def test_a_cancel_without_force_waits_for_the_tasks_result_and_reaches_its_children(alone):
    """Ray's default cancel interrupts the task: the head fails nothing itself, asks once,
    and the result the node reports (a value if the task caught the interrupt) is final;
    the interrupted worker's children are interrupted the same way; a task whose node dies
    meanwhile is cancelled, not retried."""
    joined(alone, "node-1")
    session = (None, b"w-session")
    tell(alone, FromClient(session, p.Hello(77, 1, "host-1")))
    submit(alone, on("node-1", "t1"))
    tell(alone, FromClient(session, p.Submit((), (on("node-1", "child"),))))
    take(alone)
    for _ in range(2):
        tell(alone, FromClient(DRIVER, p.Cancel(("t1",))))
    assert take(alone) == [("node-1", p.Cancel(("t1",), True, force=False))]
    assert "t1" in alone.assigned
    tell(alone, FromNode("node-1", p.CancelSubmitted(77)))
    assert take(alone) == [("node-1", p.Cancel(("child",), True, force=False))]
    done(alone, "node-1", "t1")
    assert "t1" not in alone.assigned and alone.interrupting == {"child"}
    tell(alone, NodeGone("node-1", "test"))
    assert "child" not in alone.assigned and alone.interrupting == set()
    failed = alone.directory.entries["child"].value
    assert "cancelled with plait.cancel" in str(pickle.loads(failed.error))
    assert head_problems(alone) == []


def creation(actor: str, detached: bool = False) -> p.TaskSpec:
    return p.TaskSpec(actor, "f@1", "Counter", b"", (), (), (actor,), 0, "node-1",
                      actor=actor, method="__init__", detached=detached)


def test_an_actor_whose_last_handle_is_dropped_is_told_to_leave_gracefully(alone):
    joined(alone, "node-1")
    submit(alone, creation("Counter-1"), creation("Keeper-2", detached=True))
    for actor in ("Counter-1", "Keeper-2"):
        tell(alone, FromNode("node-1", p.TasksDone((p.TaskResult(
            actor, 0, ((actor, p.Inline(b"")),), 0.01),))))
    take(alone)
    tell(alone, FromClient(DRIVER, p.Free(("Counter-1", "Keeper-2"))))
    assert take(alone) == [("node-1", p.KillActor("Counter-1", True, "no handle to it is left",
                                                  graceful=True)),
                           ("node-1", p.Delete(("Counter-1",)))]
    assert "Counter-1" not in alone.actors and "Keeper-2" in alone.actors
    assert "Keeper-2" in alone.directory.entries        # get_actor's handles still call it



def on_cpus(actor: str, node: str) -> p.TaskSpec:
    """An actor's creation asking for one CPU, placed on ``node`` by its plan (not pinned)."""
    return p.TaskSpec(actor, "f@1", "Counter", b"", (), (), (actor,), 0, node,
                      actor=actor, method="__init__", slots=1)


def call_of(actor: str, call: str, node: str) -> p.TaskSpec:
    return p.TaskSpec(call, "f@1", "Counter.incr", b"", (), (), (call,), 0, node,
                      actor=actor, method="incr")


def constructed(head: Head, node: str, *actors: str) -> None:
    for actor in actors:
        tell(head, FromNode(node, p.TasksDone((p.TaskResult(
            actor, 0, ((actor, p.Inline(b"")),), 0.01),))))


def four_actors_on_three_cpus(head: Head) -> None:
    """node-0..2 of one CPU, each held by an actor; "Waits-4" waits on node-1 behind one."""
    joined(head, "node-1", "node-2")
    submit(head, on_cpus("A-1", "node-0"), on_cpus("B-2", "node-1"), on_cpus("C-3", "node-2"))
    for node, actor in (("node-0", "A-1"), ("node-1", "B-2"), ("node-2", "C-3")):
        constructed(head, node, actor)
    submit(head, on_cpus("Waits-4", "node-1"), call_of("Waits-4", "incr-5", "node-1"))
    take(head)


def test_an_actor_waiting_for_cpus_moves_with_its_calls_to_a_node_where_they_came_free(alone):
    """As Ray starts a pending actor on the first node with CPUs free: a kill on node-2
    frees its CPU, so the actor waiting on node-1 is asked back and sent there, its calls
    (one sent to node-1 with it, one made while it moved) behind it, in order."""
    four_actors_on_three_cpus(alone)
    tell(alone, FromClient(DRIVER, p.KillActor("C-3")))
    assert take(alone) == [("node-2", p.KillActor("C-3")), ("node-1", p.Revoke("Waits-4"))]
    submit(alone, call_of("Waits-4", "incr-6", "node-1"))
    assert take(alone) == []                          # held until node-1 answers
    tell(alone, FromNode("node-1", p.Revoked("Waits-4", True)))
    (to, message), = take(alone)
    assert to == "node-2" and [(s.id, s.node) for s in message.tasks] == [
        ("Waits-4", "node-2"), ("incr-5", "node-2"), ("incr-6", "node-2")]
    assert alone.actors["Waits-4"].node == "node-2"
    assert head_problems(alone) == []


def test_an_actor_its_node_started_meanwhile_stays_and_gets_the_calls_held(alone):
    four_actors_on_three_cpus(alone)
    tell(alone, FromClient(DRIVER, p.KillActor("C-3")))
    take(alone)
    submit(alone, call_of("Waits-4", "incr-6", "node-1"))
    tell(alone, FromNode("node-1", p.Revoked("Waits-4", False)))
    (to, message), = take(alone)
    assert to == "node-1" and [s.id for s in message.tasks] == ["incr-6"]
    tell(alone, FromClient(DRIVER, p.KillActor("A-1")))          # never asked again
    assert take(alone) == [("node-0", p.KillActor("A-1"))]
    assert alone.actors["Waits-4"].node == "node-1" and head_problems(alone) == []


def test_when_the_actor_asked_back_had_started_the_next_one_waiting_is_asked(alone):
    """Room that a refused move was to take goes to the next actor that may wait: before,
    it was counted as taken, and that actor waited for ever (an actor churn probe)."""
    four_actors_on_three_cpus(alone)
    submit(alone, on_cpus("Also-6", "node-1"))                   # waits on node-1 as well
    take(alone)
    tell(alone, FromClient(DRIVER, p.KillActor("C-3")))
    assert take(alone) == [("node-2", p.KillActor("C-3")), ("node-1", p.Revoke("Waits-4"))]
    tell(alone, FromNode("node-1", p.Revoked("Waits-4", False)))  # it had started after all
    assert take(alone) == [("node-1", p.Revoke("Also-6"))]

def test_a_get_if_exists_creation_that_lost_its_names_race_is_served_by_the_winner(alone):
    """Two tasks made "bank" with get_if_exists at once (neither saw the other's): the
    second's handle calls the first actor and holds it; before, it was ActorDiedError."""
    joined(alone, "node-1")
    first = dataclasses.replace(creation("Bank-1"), actor_name="bank", if_exists=True)
    second = dataclasses.replace(creation("Bank-2"), actor_name="bank", if_exists=True)
    submit(alone, first, second)
    assert "Bank-2" not in alone.actors and alone.aliases == {"Bank-2": "Bank-1"}
    assert isinstance(alone.directory.entries["Bank-2"].value, p.Inline)   # its handle: ready
    call = p.TaskSpec("Bank-2.add-3", "f@1", "add", b"", (), (), ("Bank-2.add-3",), 0,
                      "node-0", actor="Bank-2", method="add")
    take(alone)
    submit(alone, call)
    assigned = [m for to, m in take(alone) if isinstance(m, p.Assign)]
    assert [(s.id, s.actor, s.node) for m in assigned for s in m.tasks] == \
        [("Bank-2.add-3", "Bank-1", "node-1")]
    tell(alone, FromClient(DRIVER, p.Free(("Bank-2",))))
    assert alone.aliases == {} and head_problems(alone) == []


def test_a_workers_session_on_another_host_lets_go_when_its_worker_exits(alone):
    """A task on node-1 (host-1) submitted a task through its worker's own session and
    held the result; the worker died. The head cannot watch a pid on another host: node-1
    says its worker exited, and the session's holds go as a driver's would."""
    joined(alone, "node-1")
    session = (None, b"w-session")
    tell(alone, FromClient(session, p.Hello(77, 1, "host-1")))
    tell(alone, FromClient(session, p.Submit((("f@1", CODE),), (on("node-1", "child"),))))
    done(alone, "node-1", "child")
    take(alone)
    tell(alone, FromNode("node-1", p.WorkerExited(78)))     # another worker: nothing
    assert take(alone) == []
    tell(alone, FromNode("node-0", p.WorkerExited(77)))     # same pid, another host: nothing
    assert take(alone) == []
    tell(alone, FromNode("node-1", p.WorkerExited(77)))
    assert take(alone) == [("node-1", p.Delete(("child",)))]
    assert alone.sessions == {} and alone.process_of == {}
    tell(alone, ClientGone(session))                        # its socket closing: no-op now
    assert take(alone) == []


# -- what a sender may say -----------------------------------------------------------------

def test_a_node_silent_past_the_timeout_is_lost_and_one_heard_from_is_not():
    """The head's clock is given to it: a node's silence is measured without waiting."""
    from plait.executor.head.head import NODE_TIMEOUT_SECONDS

    now = [100.0]
    head = recorded(Head("s-1", RecordingNode(), node_info("node-0"), clock=lambda: now[0]))
    joined(head, "node-1", "node-2")
    now[0] += NODE_TIMEOUT_SECONDS
    tell(head, FromNode("node-2", p.Heartbeat("node-2", 0)))  # node-2 speaks, node-1 does not
    now[0] += 1.0
    tell(head, Tick(now[0]))
    assert set(head.nodes) == {"node-0", "node-2"}
    lost = [m for _, m in take(head) if isinstance(m, p.NodeLost)]
    assert lost and all(m.node == "node-1" for m in lost)
    assert "no heartbeat" in lost[0].reason


def test_messages_from_a_node_that_never_joined_are_refused(alone):
    submit(alone, on("node-0", "t1"))
    take(alone)
    done(alone, "node-7", "t1")
    assert take(alone) == [("node-7", p.NodeLost("node-7", "the head declared it dead and "
                                                           "does not take it back"))]
    assert "t1" in alone.assigned and alone.directory.lookup("t1") is None


def test_a_node_declared_dead_that_speaks_again_is_told_to_stop(alone):
    joined(alone, "node-1")
    losing(alone, "node-1", "no heartbeat")
    tell(alone, FromNode("node-1", p.Heartbeat("node-1", 0)))
    assert take(alone) == [("node-1", p.NodeLost("node-1", "the head declared it dead and "
                                                           "does not take it back"))]


def test_a_message_a_sender_may_not_send_is_malformed(alone):
    with pytest.raises(p.MalformedMessage, match="a client may not send Assign"):
        tell(alone, FromClient(DRIVER, p.Assign((), ())))
    with pytest.raises(p.MalformedMessage, match="a node may not send Hello"):
        tell(alone, FromNode("node-0", p.Hello(1)))


# -- tables ----------------------------------------------------------------------------------

def test_lineage_goes_with_the_last_object_that_needs_it(alone):
    submit(alone, on("node-0", "leaf-1"), on("node-0", "add-1", "leaf-1"))
    tell(alone, FromClient(DRIVER, p.Free(("leaf-1",))))
    for task_id in ("leaf-1", "add-1"):
        done(alone, "node-0", task_id)
    assert set(alone.lineage.made_by) == {"leaf-1", "add-1"}
    tell(alone, FromClient(DRIVER, p.Free(("add-1",))))
    assert alone.lineage.made_by == {} and alone.lineage.uses == {}


def test_validate_state_names_a_pending_object_no_task_will_make(alone):
    submit(alone, on("node-0", "t1"))
    assert head_problems(alone) == []
    del alone.assigned["t1"]                        # as if the task were forgotten
    alone.nodes["node-0"].queued = 0
    problems = head_problems(alone)
    assert len(problems) == 1 and "pending objects no task will make" in problems[0]
    assert "t1" in problems[0]


def test_a_value_sent_after_its_object_went_is_deleted_in_the_same_flush(alone):
    joined(alone, "node-1")
    tell(alone, FromNode("node-1", p.Subscribe(("gone-1",))))  # never existed, or freed
    (_, ready), delete = take(alone)
    assert ready == p.Ready((("gone-1", alone.directory.lookup("gone-1")),))
    assert delete == ("node-1", p.Delete(("gone-1",)))


def test_the_trace_ring_is_bounded_and_positions_stay_valid(alone):
    alone.events = EventRing(10)
    for i in range(25):
        alone.events.record((0, f"t{i}", "f", "node-0", 0, 0.0, 1.0, True))   # a TaskEvent
    gc.collect()
    assert not any(gc.is_tracked(row) for row in alone.events)  # no full collection walks it
    tell(alone, FromClient(DRIVER, p.TraceRequest(7, 3)))   # asked from an event gone since
    (peer, report), = take(alone)
    assert [e.task_id for e in report.events] == [f"t{i}" for i in range(15, 25)]
    assert report.position == 25 and alone.events.dropped == 15
    tell(alone, FromClient(DRIVER, p.TraceRequest(8, 16, newest=3)))   # a dashboard's stream
    (peer, report), = take(alone)
    assert [e.task_id for e in report.events] == ["t22", "t23", "t24"] and report.position == 25


# -- the head with its real node-0 -----------------------------------------------------------

@pytest.fixture
def head(make_transfers, processes):
    arena = Arena.create(f"plait-test-{os.getpid()}-head", 4 * MIB)
    workers = [WorkerHandle(0, -1, -1, b"w0", ready=True)]
    node = Node("node-0", arena, None, workers, "ipc://unused", transfers=make_transfers,
                processes=processes)
    node.num_workers = 0
    info = p.NodeInfo("node-0", "ipc://unused", os.getpid(), True, 1, arena.name, 4 * MIB)
    made = recorded(Head("s-1", node, info))
    made.zero = NodeZero(made, node)         # node-0's process: the two hand over in process
    yield made
    arena.unlink()
    arena.close()


def spec(task_id: str) -> p.TaskSpec:
    return p.TaskSpec(task_id, "f@1", "f", b"", (), (), (task_id,), 3, "node-0")


def ready_values(head: Head) -> list[str]:
    """Objects the driver was told are ready (in the instructions decided so far)."""
    tell(head, Flush())
    return [oid for peer, m in head.decided if peer == DRIVER and isinstance(m, p.Ready)
            for oid, _ in m.values]


def test_a_duplicated_tasks_done_finishes_once_and_deletes_no_copy(head):
    tell(head, FromClient(DRIVER, p.Submit((("f@1", b""),), (spec("t1"),))))
    tell(head, FromClient(DRIVER, p.Subscribe(("t1",))))
    offset = head.local.store.allocate("t1", MIB, "test")
    head.local.store.seal("t1")
    done = p.TasksDone((p.TaskResult("t1", 0, (("t1", p.Stored("node-0", MIB)),), 0.01),))
    tell(head, FromNode("node-0", done))
    tell(head, FromNode("node-0", done))                    # delivered twice
    assert ready_values(head) == ["t1"]                      # the driver hears it once
    assert head.deletes == {} and head.local.store.objects["t1"].offset == offset
    assert head.nodes["node-0"].queued == 0                  # no slot counted back twice



# -- a long run's tables stay as small as its live objects ---------------------------------

def run_on_node_0(head: Head, task_id: str, value: p.ObjectValue) -> None:
    """Submit a task to node-0, let its worker finish it with ``value``, flush."""
    tell(head, FromClient(DRIVER, p.Submit((("f@1", b""),), (spec(task_id),),
                                           subscribe=(task_id,))))
    tell(head, Dispatch(), head.local)
    result = p.TaskResult(task_id, 0, ((task_id, value),), 0.01)
    tell(head, FromWorker(b"w0", p.TasksDone((result,))), head.local)
    tell(head, Flush())


def add_node_1(head: Head) -> list[tuple[object, p.Message]]:
    """A second (recorded) node; returns the list of what the head decides from now on."""
    info = p.NodeInfo("node-1", "ipc://unused-1", os.getpid(), False, 1, "arena-1", 4 * MIB)
    tell(head, FromNode("node-1", p.NodeHello(info)))
    return head.decided


def deleted(sent: list[tuple[str, p.Message]], node: str) -> list[str]:
    return [oid for n, m in sent if n == node and isinstance(m, p.Delete) for oid in m.object_ids]


def test_small_and_failed_results_leave_every_table_when_their_refs_are_dropped(head):
    """Issue 11: inline results stayed in the node's table after their object was gone
    (the head deleted stored copies only): ~800 KB per 10 KB-result task round, forever."""
    for i in range(20):
        run_on_node_0(head, f"t{i}", p.Inline(b"x" * 1000) if i % 2 else p.Failed(b"error"))
        tell(head, FromClient(DRIVER, p.Free((f"t{i}",))))
        tell(head, Flush())
    assert head.local.values == {} and head.cached == {} and head.directory.entries == {}
    assert head.client_holds[DRIVER] == {} and head.assigned == {} and head.lineage.made_by == {}
    assert head.local.table.tasks == {} and head.local.table.followers == {}


# -- a driver's spare block (driver/session.py: asked ahead, for its next put) ---------------

def spare(head: Head, request: int, object_id: str, nbytes: int) -> None:
    tell(head, FromClient(DRIVER, p.Alloc(request, object_id, nbytes, "a.py:1", spare=True)))


def test_a_put_written_into_a_spare_block_gets_its_own_size_and_call_site(head):
    spare(head, 1, "put-2", MIB)
    tell(head, FromClient(DRIVER, p.Seal("put-2", nbytes=MIB - 100, created_by="b.py:7")))
    stored = head.local.store.objects["put-2"]
    assert (stored.nbytes, stored.created_by, stored.sealed) == (MIB - 100, "b.py:7", True)
    assert head.local.values["put-2"] == p.Stored("node-0", MIB - 100)
    assert head.unsealed[DRIVER] == set() and node_problems(head.local) == []


def test_a_spare_block_abandoned_or_left_by_a_driver_gone_leaves_the_store(head):
    spare(head, 1, "put-2", MIB)
    tell(head, FromClient(DRIVER, p.Abandon("put-2")))
    assert head.local.store.objects == {} and head.local.store.pinned_bytes == 0
    spare(head, 2, "put-3", MIB)
    tell(head, FromClient(DRIVER, p.Alloc(3, "put-4", MIB)))      # killed before its Seal
    tell(head, ClientGone(DRIVER))
    assert head.local.store.objects == {} and DRIVER not in head.unsealed
    assert node_problems(head.local) == []


def test_a_spare_block_that_does_not_fit_is_refused_at_once_not_waited_for(head):
    head.local.store.allocate("t1", 3 * MIB, "test")            # a running task's result
    spare(head, 1, "put-2", 2 * MIB)
    (peer, refused), = [(peer, m) for peer, m in take(head) if peer == DRIVER]
    assert isinstance(refused, p.Refused) and head.put_waiting == []
    assert "put-2" not in head.local.store.objects


def test_a_put_right_after_a_free_finds_the_room_the_free_gave_back(head):
    """The Free and the Alloc of a driver that drops a ref and puts again come in one turn:
    node-0 deletes the freed object before it looks for the new block, not at the flush."""
    tell(head, FromClient(DRIVER, p.Alloc(1, "put-1", 3 * MIB)))
    tell(head, FromClient(DRIVER, p.Seal("put-1")))
    tell(head, FromClient(DRIVER, p.Unpin((("node-0", "put-1"),))))
    tell(head, FromClient(DRIVER, p.Free(("put-1",))))
    tell(head, FromClient(DRIVER, p.Alloc(2, "put-2", 3 * MIB)))       # same turn: no flush
    replies = [m for peer, m in take(head) if peer == DRIVER]
    assert replies[-1] == p.Allocated(2, "put-2", "node-0", 0)
    assert set(head.local.store.objects) == {"put-2"} and node_problems(head.local) == []


def test_a_node_sent_a_small_value_forgets_it_when_the_object_goes(head):
    sent = add_node_1(head)
    run_on_node_0(head, "t1", p.Inline(b"x"))
    tell(head, FromNode("node-1", p.Subscribe(("t1",))))    # a task there reads it
    tell(head, Flush())
    readys = [m.values for n, m in sent if n == "node-1" and isinstance(m, p.Ready)]
    assert readys == [(("t1", p.Inline(b"x")),)]
    assert deleted(sent, "node-1") == []                   # still held by the driver
    tell(head, FromClient(DRIVER, p.Free(("t1",))))
    tell(head, Flush())
    assert deleted(sent, "node-1") == ["t1"] and "t1" not in head.local.values




def test_a_stall_of_the_head_itself_is_not_counted_as_the_nodes_silence():
    """Heartbeats wait unread while the head is busy: a turn of 10 s is not 10 s of silence."""
    from plait.executor.head.head import NODE_TIMEOUT_SECONDS

    now = [100.0]
    head = recorded(Head("s-1", RecordingNode(), node_info("node-0"), clock=lambda: now[0]))
    joined(head, "node-1")
    tell(head, Tick(now[0]))
    now[0] += 10.0                                   # one turn that took 10 s
    tell(head, Tick(now[0]))
    assert set(head.nodes) == {"node-0", "node-1"}
    for _ in range(int(NODE_TIMEOUT_SECONDS / 0.5) + 2):    # then silent, in short turns
        now[0] += 0.5
        tell(head, Tick(now[0]))
    assert set(head.nodes) == {"node-0"}


def test_a_head_behind_on_its_messages_does_not_count_the_time_as_silence():
    """While unread messages wait (a node's heartbeat may be among them), no node is lost."""
    now = [100.0]
    head = recorded(Head("s-1", RecordingNode(), node_info("node-0"), clock=lambda: now[0]))
    joined(head, "node-1")
    tell(head, Tick(now[0]))
    head.behind = True
    for _ in range(20):                              # 10 s of short turns, all behind
        now[0] += 0.5
        tell(head, Tick(now[0]))
    assert set(head.nodes) == {"node-0", "node-1"}
    head.behind = False
    for _ in range(10):
        now[0] += 0.5
        tell(head, Tick(now[0]))
    assert set(head.nodes) == {"node-0"}


def test_an_objects_request_lists_each_held_object_with_its_state_size_and_keepers(alone):
    tell(alone, FromClient(DRIVER, p.PutInline("put-1", p.Inline(b"x" * 8))))
    tell(alone, FromClient(DRIVER, p.Expect(("inc-2",))))
    take(alone)
    tell(alone, FromClient(DRIVER, p.ObjectsRequest(5)))
    (peer, report), = take(alone)
    assert report == p.ObjectsReport(5, (p.ObjectRow("inc-2", "PENDING", 0, 1, 0),
                                         p.ObjectRow("put-1", "READY", 8, 1, 0)))
    tell(alone, FromClient(DRIVER, p.Free(("put-1",))))
    take(alone)
    tell(alone, FromClient(DRIVER, p.ObjectsRequest(6)))
    (peer, report), = take(alone)
    assert [row.object_id for row in report.objects] == ["inc-2"]
