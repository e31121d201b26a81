"""Every wire message survives encode -> decode unchanged; new messages must add a sample here."""

from __future__ import annotations

import dataclasses
import pickle
import typing

import pytest

import plait
from plait.compiler.view import ClusterView, NodeView, ObjectInfo
from plait.executor import protocol as p
from plait.store.store import ObjectSummary, StoreSummary

INLINE = p.Inline(b"PLT1" + bytes(60))
LOCATED = p.Located("node-1", 4096, 1 << 20, ("put-3",))
STORED = p.Stored("node-1", 1 << 20)
FAILED = p.Failed(pickle.dumps(plait.ObjectLostError("inc-3", "node died")))
NODE = p.NodeInfo("node-0", "tcp://127.0.0.1:5555", 4242, True, 2, "plait-abc-node-0", 1 << 30)
SPEC = p.TaskSpec("inc-2", "inc@0123456789", "inc", b"payload", ("put-1",), ("put-9",),
                  ("inc-2",), 3, "node-1")
ITEM = p.WorkItem("split-4", 1, "split@ab", "split", b"\x80\x05", (INLINE, LOCATED),
                  (("put-9", FAILED),), ("split-4.0", "split-4.1"))
RESULT = p.TaskResult("inc-2", 0, (("inc-2", INLINE),), 0.25)
VIEW = ClusterView((NodeView("node-0", 2), NodeView("node-1", 1, store_free=10, queued=3)),
                   {"put-1": ObjectInfo("put-1", 123, ("node-0", "node-1"))})

SAMPLES = [
    INLINE, LOCATED, STORED, FAILED, NODE, SPEC, ITEM, RESULT,
    p.Hello(pid=1234, nodes_expected=3),
    p.NodeHello(NODE),
    p.NodeTable((NODE,)),
    p.Heartbeat("node-1", 1 << 30),
    p.NodeLost("node-2", "no heartbeat for 4 s"),
    p.Assign((("inc@0123456789", b"fn"),), (SPEC,)),
    p.Created("w1:put-1", INLINE, "inc-2"),
    p.ReplicaAdded("put-1", "node-1"),
    p.ReplicaDropped("put-1", "node-1"),
    p.Delete(("put-1", "inc-2")),
    p.Fetch(3, "put-1", True),
    p.FetchHeader(3, "put-1", 1 << 20, offset=4096),
    p.FetchHeader(4, "put-2", 0, error=pickle.dumps(plait.ObjectLostError("put-2"))),
    p.FetchDone(3),
    p.Pending("inc-2"),
    p.Revoke("inc-2"),
    p.Blocked(0),
    p.Unblocked(0),
    p.Skip(("inc-2",)),
    p.Cancel(("inc-2", "inc-3")),
    p.Revoked("inc-2", True),
    p.KillActor("Counter-1", no_restart=False, reason="test"),
    p.ActorExit("Counter-1", 2, b""),
    p.CopyLost("inc-3", b"error"),
    p.Expect(("put-1",)),
    p.ActorLookup(3, "counter"),
    p.ActorFound(3, b"handle"),
    p.TaskEvent("inc-2", "inc", "node-0", 1, 10.0, 10.5, True),
    p.TransferEvent("put-1", "node-1", "node-0", 1 << 20, 10.0, 10.1),
    p.TraceRequest(12, -1),
    p.TraceReport(12, (p.TaskEvent("inc-2", "inc", "node-0", 1, 10.0, 10.5, False),), 7),
    p.Welcome("a1b2", (NODE, dataclasses.replace(NODE, id="node-1", is_head=False))),
    p.PutInline("put-1", p.Inline(b"\x00" * 100, ("put-0",))),
    p.Alloc(7, "put-2", 1 << 30, "script.py:12"),
    p.Allocated(7, "put-2", "node-0", 8192),
    p.Refused(8, pickle.dumps(plait.ObjectTooLargeError("too big"))),
    p.Seal("put-2", ("put-1",)),
    p.Pin(10, ("put-2",)),
    p.Pinned(10, (("put-2", LOCATED), ("put-3", FAILED))),
    p.Unpin((("node-0", "put-2"), ("node-1", "put-2"))),
    p.Hold(("inc-7",)),
    p.MemoryRequest(11),
    p.StateCheck(12),
    p.StateReport(12, ("node-1: pins that differ from their holders (1): x",)),
    p.MemoryReport(11, (StoreSummary("node-0", 1 << 30, 1 << 20, 0, 1, 0, 0, 0.0, 0.0,
                                     (ObjectSummary("put-2", 1 << 20, "memory", "x.py:1"),)),)),
    p.ViewRequest(9, ("put-1", "put-2")),
    p.View(9, VIEW, (("put-5", pickle.dumps(plait.ObjectFreedError("put-5"))),)),
    p.Submit((("inc@0123456789", b"fn"),), (SPEC,), ("put-9",), ("inc-3",)),
    p.Subscribe(("inc-2", "add-3")),
    p.Ready((("inc-2", INLINE), ("add-3", LOCATED), ("bad-4", FAILED))),
    p.Free(("put-1",)),
    p.Free(("put-1", "put-2"), forced=True),
    p.Bye(),
    p.WorkerReady(0, 999),
    p.RunTasks((("split@ab", b"fn"),), (ITEM,)),
    p.TasksDone((RESULT, dataclasses.replace(RESULT, task_id="inc-5", outputs=()))),
]


def _message_classes() -> set[type]:
    return {value for value in vars(p).values()
            if isinstance(value, type) and dataclasses.is_dataclass(value)
            and value.__module__ == p.__name__}


def test_every_message_class_has_a_sample():
    assert {type(sample) for sample in SAMPLES} == _message_classes()


def test_the_message_union_lists_only_protocol_dataclasses():
    assert set(typing.get_args(p.Message)) <= _message_classes()
    assert set(typing.get_args(p.ObjectValue)) == {p.Inline, p.Stored, p.Located, p.Pending,
                                                   p.Failed}


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip_is_equal(message):
    frame = p.encode(message)
    assert isinstance(frame, bytes)
    assert p.decode(frame) == message
    assert p.decode(memoryview(frame)) == message


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_messages_are_frozen(message):
    fields = dataclasses.fields(message)
    if not fields:
        return
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(message, fields[0].name, None)


def test_carried_errors_come_back_as_plait_errors():
    decoded = p.decode(p.encode(FAILED))
    error = pickle.loads(decoded.error)
    assert isinstance(error, plait.ObjectLostError)
    assert (error.object_id, error.reason) == ("inc-3", "node died")
