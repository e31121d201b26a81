"""Every wire message survives encode -> decode unchanged; new messages must add a sample here.

And decode trusts nothing: a frame that names anything but the protocol's classes is refused
before what it names is imported or called.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import typing
from pathlib import Path
from types import SimpleNamespace

import pytest

import plait
from plait.compiler.view import ClusterView, NodeView, ObjectInfo
from plait.executor.wire import protocol as p
from plait.store.store import ObjectSummary, StoreSummary

INLINE = p.Inline(b"PLT1" + bytes(60))
LOCATED = p.Located("node-1", 4096, 1 << 20, ("put-3",))
ON_DISK = p.OnDisk("node-1", "/tmp/plait-abc-node-1-spill/put-4.bin", 1 << 20, (123,))
STORED = p.Stored("node-1", 1 << 20)
FAILED = p.Failed(pickle.dumps(plait.ObjectLostError("inc-3", "node died")))
NODE = p.NodeInfo("node-0", "tcp://127.0.0.1:5555", 4242, True, 2, "plait-abc-node-0", 1 << 30)
SPEC = p.TaskSpec("inc-2", "inc@0123456789", "inc", b"payload", ("put-1",), ("put-9",),
                  ("inc-2",), 3, "node-1")
ITEM = p.WorkItem("split-4", 1, "split@ab", "split", b"\x80\x05", (INLINE, LOCATED),
                  (("put-9", FAILED),), ("split-4.0", "split-4.1"))
RESULT = p.TaskResult("inc-2", 0, (("inc-2", INLINE),), 0.25)
SUMMARY = StoreSummary("node-0", 1 << 30, 1 << 20, 0, 1, 0, 0, 0.0, 0.0,
                       (ObjectSummary("put-2", 1 << 20, "memory", "x.py:1"),))
WORKER = p.WorkerState(0, 4243, "busy", False, ("inc",), 50 << 20)
ACTOR_ROW = p.ActorRow("Counter-3", "Counter", "tally", "node-1", "alive", 1, False)
NODE_SNAPSHOT = p.NodeSnapshot(5, "node-0", SUMMARY, (WORKER,), (("inc-2", "inc"),), 1.5,
                               80 << 20, (("inc", 1),))
NOTICE = p.Notice(1700000000.0, "error", "inc-2", "inc failed on node-1", FAILED.error)
VIEW = ClusterView((NodeView("node-0", 2), NodeView("node-1", 1, store_free=10, queued=3)),
                   {"put-1": ObjectInfo("put-1", 123, ("node-0", "node-1"))})

SAMPLES = [
    INLINE, LOCATED, ON_DISK, STORED, FAILED, NODE, SPEC, ITEM, RESULT,
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
    p.Skip((("inc-2", 1),)),
    p.HandBack(("inc-3", 0)),
    p.Cancel(("inc-2", "inc-3")),
    p.Cancel(("inc-2",), recursive=False, force=True),
    p.Revoked("inc-2", True),
    p.KillActor("Counter-1", no_restart=False, reason="test"),
    p.ActorExit("Counter-1", 2, b""),
    p.WorkerExited(4242),
    p.CancelSubmitted(4242),
    p.CopyLost("inc-3", b"error"),
    p.CorruptCopy("inc-3", "node-1", b"error"),
    p.Expect(("put-1",)),
    p.ActorLookup(3, "counter"),
    p.ActorFound(3, b"handle"),
    p.ActorNamesRequest(4),
    p.ActorNames(4, ("counter", "ns\x1fcounter")),
    p.TaskEvent("inc-2", "inc", "node-0", 1, 10.0, 10.5, True),
    p.TransferEvent("put-1", "node-1", "node-0", 1 << 20, 10.0, 10.1),
    p.TraceRequest(12, -1),
    p.TraceRequest(13, 40, newest=2000),
    p.TraceReport(12, (p.TaskEvent("inc-2", "inc", "node-0", 1, 10.0, 10.5, False),), 7),
    p.ObjectsRequest(14),
    p.ObjectRow("put-1", "PENDING", 0, 0, 1),
    p.ObjectsReport(14, (p.ObjectRow("inc-2", "READY", 8, 1, 0),)),
    p.ActorsRequest(15),
    p.ActorsReport(15, (ACTOR_ROW,)),
    p.Welcome("a1b2", (NODE, dataclasses.replace(NODE, id="node-1", is_head=False))),
    p.PutInline("put-1", p.Inline(b"\x00" * 100, ("put-0",))),
    p.Alloc(7, "put-2", 1 << 30, "script.py:12"),
    p.Alloc(8, "put-4", 4096, "script.py:13", spare=True),
    p.Allocated(7, "put-2", "node-0", 8192),
    p.Refused(8, pickle.dumps(plait.ObjectTooLargeError("too big"))),
    p.Seal("put-2", ("put-1",)),
    p.Seal("put-3", (), "", 4096, "script.py:13"),
    p.Abandon("put-4"),
    p.Pin(10, ("put-2",)),
    p.Pinned(10, (("put-2", LOCATED), ("put-3", FAILED), ("put-4", ON_DISK))),
    p.Unpin((("node-0", "put-2"), ("node-1", "put-2"))),
    p.Hold(("inc-7",)),
    p.MemoryRequest(11),
    p.ResourcesRequest(12),
    p.NodeResources("node-0", (("CPU", 2.0), ("GPU", 1.0)), (("CPU", 1.0),)),
    p.ResourcesReport(12, (p.NodeResources("node-0", (("disk", 0.5),), ()),)),
    p.StateCheck(12),
    p.StateReport(12, ("node-1: pins that differ from their holders (1): x",)),
    p.MemoryReport(11, (StoreSummary("node-0", 1 << 30, 1 << 20, 0, 1, 0, 0, 0.0, 0.0,
                                     (ObjectSummary("put-2", 1 << 20, "memory", "x.py:1"),)),)),
    p.ViewRequest(9, ("put-1", "put-2")),
    p.View(9, VIEW, (("put-5", pickle.dumps(plait.ObjectFreedError("put-5"))),)),
    p.Submit((("inc@0123456789", b"fn"),), (SPEC,), ("put-9",), ("inc-3",)),
    p.Subscribe(("inc-2", "add-3")),
    p.Subscribe(("inc-2",), request=7),
    p.Subscribed(7),
    p.Ready((("inc-2", INLINE), ("add-3", LOCATED), ("bad-4", FAILED))),
    p.Handled(("bad-4",)),
    p.Unhandled((("bad-4", b"\x80\x05N."),)),
    p.ShowOutput(),
    p.Output("node-1", 4242, "inc", ("said hi", "said ho"), error=True),
    p.Free(("put-1",)),
    p.Free(("put-1", "put-2"), forced=True),
    p.Bye(),
    p.WorkerReady(0, 999),
    p.RunTasks((("split@ab", b"fn"),), (ITEM,)),
    p.TasksDone((RESULT, dataclasses.replace(RESULT, task_id="inc-5", outputs=(),
                                             kept=("put-1",)))),
    p.ViewsGone(("put-1", "inc-2")),
    p.Yielded("numbers-6", 0, "numbers-6.0", INLINE),
    p.Yielded("numbers-6", 1, "numbers-6.1", LOCATED),
    p.SnapshotRequest(5, since=3),
    WORKER, NODE_SNAPSHOT, NOTICE,
    p.FunctionTally("inc", 10, 7, 1, 2),
    p.DeadNode("node-2", 1700000000.0, "no heartbeat for 4 s", NODE),
    p.Snapshot(5, "a1b2", 1700000000.0, (NODE,), (0.2,), (NODE_SNAPSHOT,),
               (p.DeadNode("node-2", 1700000000.0, "killed", NODE),),
               (p.FunctionTally("inc", 10, 7, 1, 2),), 1 << 20, 1, 1, (("inc-2", "running"),),
               0, (NOTICE,), 4, ((SUMMARY.largest[0], "node-0", ("node-0",), ("pid 7",)),),
               (ACTOR_ROW,)),
    ACTOR_ROW,
    p.PlanRequest(6),
    p.PlanReport(6, 1, (("inc-2", "inc", "node-1", ("put-1",), ("inc-2",), ""),), 1 << 20),
]


def _message_classes() -> set[type]:
    return {value for value in vars(p).values()
            if isinstance(value, type) and dataclasses.is_dataclass(value)
            and value.__module__ == p.__name__}


def test_every_message_class_has_a_sample():
    assert {type(sample) for sample in SAMPLES} == _message_classes()


def test_the_message_union_lists_only_protocol_dataclasses():
    assert set(typing.get_args(p.Message)) <= _message_classes()
    assert set(typing.get_args(p.ObjectValue)) == {p.Inline, p.Stored, p.Located, p.OnDisk,
                                                   p.Pending, p.Failed}


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


# -- decode before trust ---------------------------------------------------------------------

class Shell:
    """Unpickling this runs ``command`` through ``os.system``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Recording(pickle.Unpickler):
    """Plain unpickling (only for our own frames) that notes every global a frame names."""

    def __init__(self, frame: bytes) -> None:
        super().__init__(io.BytesIO(frame))
        self.named: set[tuple[str, str]] = set()

    def find_class(self, module: str, name: str):
        self.named.add((module, name))
        return super().find_class(module, name)


def _globals_named(frame: bytes) -> set[tuple[str, str]]:
    reader = _Recording(frame)
    reader.load()
    return reader.named


@pytest.mark.parametrize("wrap", [lambda bomb: bomb, lambda bomb: p.Hold((bomb,)),
                                  lambda bomb: p.Ready((("put-1", p.Failed(bomb)),))],
                         ids=["bare", "in-a-message", "deep-in-a-value"])
def test_a_frame_that_would_call_os_system_is_refused_and_runs_nothing(tmp_path, wrap):
    canary = tmp_path / "canary"
    frame = pickle.dumps(wrap(Shell(f"touch {canary}")), protocol=5)
    with pytest.raises(p.MalformedMessage, match=f"may not name {os.system.__module__}.system"):
        p.decode(frame)
    assert not canary.exists()
    pickle.loads(frame)                          # the same bytes, read as plain pickle, do run
    assert canary.exists()


@pytest.mark.parametrize("value", [eval, getattr, Path("/"), dataclasses.replace, ValueError("x")],
                         ids=lambda v: type(v).__name__)
def test_a_frame_naming_any_other_global_is_refused(value):
    with pytest.raises(p.MalformedMessage, match="may not name"):
        p.decode(p.encode(p.Hold((value,))))


def test_plain_data_needs_no_global():
    value = (1, 2.5, True, None, "s", b"b", [1], {"k": 1}, {1}, frozenset({2}), bytearray(b"x"))
    assert _globals_named(pickle.dumps(value, protocol=5)) == set()
    assert p.decode(p.encode(p.Hold(value))) == p.Hold(value)


def _carried(cls: type, seen: set[type]) -> set[type]:
    """``cls`` and the dataclasses its fields' annotations name, transitively."""
    if cls in seen or not dataclasses.is_dataclass(cls):
        return seen
    seen.add(cls)
    for hint in typing.get_type_hints(cls).values():
        for part in [hint, *_flattened(hint)]:
            if isinstance(part, type):
                _carried(part, seen)
    return seen


def _flattened(hint: object) -> list[object]:
    args = typing.get_args(hint)
    return [*args, *(a for arg in args for a in _flattened(arg))]


def test_decode_admits_exactly_the_classes_that_travel():
    travelling: set[type] = set()
    for cls in _message_classes():
        _carried(cls, travelling)
    assert set(p.ADMITTED.values()) == travelling
    assert all(key == (cls.__module__, cls.__qualname__) for key, cls in p.ADMITTED.items())
    named = set().union(*(_globals_named(p.encode(sample)) for sample in SAMPLES))
    assert named == set(p.ADMITTED)


def test_the_wire_version_names_every_messages_fields_and_an_older_hello_has_none():
    """Any message's fields changed, the version changes (it is their digest); a Hello
    read from a plait before versions (no ``wire`` slot set) names none, so it is refused."""
    assert p.Hello(1).wire == p.NodeHello(NODE).wire == p.WIRE_VERSION
    assert p.wire_mismatch("a client", p.Hello(1)) is None
    older = SimpleNamespace(pid=1, nodes_expected=1, host="")
    assert p.wire_of(older) == "" and "an older plait" in p.wire_mismatch("a client", older)
