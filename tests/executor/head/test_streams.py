"""A generator task's values at the head, without processes: a Yielded in, what the head
hands to the caller and tells the nodes out (see Head.node_Yielded)."""

from __future__ import annotations

import dataclasses

import pytest

from plait.executor.head.head import Head
from plait.executor.head.invariants import head_problems
from plait.executor.wire import protocol as p
from plait.executor.wire.instructions import ClientGone, FromClient, FromNode
from tests.executor.head.test_head import (DRIVER, MIB, RecordingNode, error_in, joined,
                                           losing, node_info, on, recorded, submit, take,
                                           tell)


@pytest.fixture
def alone() -> Head:
    """The head with a stand-in for its own node, as in test_head."""
    return recorded(Head("s-1", RecordingNode(), node_info("node-0")))


def generator(node: str, task_id: str, kind: str = "streaming", max_retries: int = 3
              ) -> p.TaskSpec:
    return dataclasses.replace(on(node, task_id, max_retries=max_retries), generator=kind)


def yielded(head, node: str, task_id: str, index: int, value: p.ObjectValue) -> p.Yielded:
    message = p.Yielded(task_id, index, f"{task_id}.{index}", value)
    tell(head, FromNode(node, message))
    return message


def ended(head, node: str, task_id: str, value: p.ObjectValue = p.Inline(b"None")) -> None:
    result = p.TaskResult(task_id, 0, ((task_id, value),), 0.01)
    tell(head, FromNode(node, p.TasksDone((result,))))


def test_each_value_goes_to_the_caller_as_it_comes_and_is_held_for_it(alone):
    joined(alone, "node-1")
    submit(alone, generator("node-1", "gen"))
    take(alone)
    first = yielded(alone, "node-1", "gen", 0, p.Stored("node-1", MIB))
    assert take(alone) == [(DRIVER, first)]                       # the task still runs
    second = yielded(alone, "node-1", "gen", 1, p.Inline(b"small"))
    assert take(alone) == [(DRIVER, second)]
    assert alone.locations["gen.0"] == {"node-1"} and alone.cached["gen.1"] == {"node-1"}
    ended(alone, "node-1", "gen")
    assert alone.streams == {} and head_problems(alone) == []
    tell(alone, FromClient(DRIVER, p.Free(("gen.0", "gen.1"))))     # the caller took both
    assert sorted(take(alone)) == [("node-1", p.Delete(("gen.0", "gen.1")))]
    assert set(alone.directory.entries) == {"gen"}


def test_a_rerun_yields_again_what_the_caller_has_and_only_the_new_values_go_to_it(alone):
    joined(alone, "node-1")
    submit(alone, generator("node-1", "gen"))
    yielded(alone, "node-1", "gen", 0, p.Inline(b"a"))
    yielded(alone, "node-1", "gen", 1, p.Inline(b"b"))
    tell(alone, FromClient(DRIVER, p.Free(("gen.0",))))             # taken and dropped
    take(alone)
    losing(alone, "node-1")                                         # it runs again on node-0
    yielded(alone, "node-0", "gen", 0, p.Inline(b"a"))
    yielded(alone, "node-0", "gen", 1, p.Inline(b"b"))
    third = yielded(alone, "node-0", "gen", 2, p.Inline(b"c"))
    assert take(alone) == [(DRIVER, third), ("node-0", p.Delete(("gen.0",)))]
    assert "node-0" in alone.cached["gen.1"]                        # one more copy of it
    assert head_problems(alone) == []


def test_values_of_a_caller_gone_are_not_kept(alone):
    joined(alone, "node-1")
    submit(alone, generator("node-1", "gen"))
    yielded(alone, "node-1", "gen", 0, p.Stored("node-1", MIB))
    take(alone)
    tell(alone, ClientGone(DRIVER))
    assert take(alone) == [("node-1", p.Delete(("gen.0",)))]       # it held that one
    yielded(alone, "node-1", "gen", 1, p.Stored("node-1", MIB))
    assert take(alone) == [("node-1", p.Delete(("gen.1",)))]
    assert "gen.1" not in alone.directory.entries and head_problems(alone) == []


def test_a_dynamic_tasks_values_are_held_by_it_until_its_list_holds_them(alone):
    joined(alone, "node-1")
    submit(alone, generator("node-1", "dyn", "dynamic"), subscribe=("dyn",))
    take(alone)
    yielded(alone, "node-1", "dyn", 0, p.Inline(b"a"))
    assert take(alone) == []                                        # no caller to hand it to
    listing = p.Inline(b"[refs]", ("dyn.0",))
    ended(alone, "node-1", "dyn", listing)
    assert take(alone) == [(DRIVER, p.Ready((("dyn", listing),)))]
    assert alone.directory.entries["dyn.0"].holders == 1            # the list, not the task
    tell(alone, FromClient(DRIVER, p.Free(("dyn",))))
    assert sorted(take(alone)) == [("node-1", p.Delete(("dyn", "dyn.0")))]


def lost_after_its_end(head) -> list[tuple[object, p.Message]]:
    """A stream ended whose one value was on node-1, which dies; the driver waits for it."""
    joined(head, "node-1")
    submit(head, generator("node-1", "gen"))
    yielded(head, "node-1", "gen", 0, p.Stored("node-1", MIB))
    ended(head, "node-1", "gen")
    take(head)
    sent = losing(head, "node-1")
    tell(head, FromClient(DRIVER, p.Subscribe(("gen.0",))))
    return sent


def test_a_lost_value_is_made_again_by_running_its_finished_task_again(alone):
    assert [type(m) for _, m in lost_after_its_end(alone)] == [p.Assign]
    assert take(alone) == [] and head_problems(alone) == []         # pending, not lost
    yielded(alone, "node-0", "gen", 0, p.Stored("node-0", MIB))
    assert take(alone) == [(DRIVER, p.Ready((("gen.0", p.Stored("node-0", MIB)),)))]


def test_a_lost_value_its_rerun_does_not_yield_again_fails(alone):
    lost_after_its_end(alone)
    ended(alone, "node-0", "gen")                                   # it yielded nothing
    (peer, ready), = [sent for sent in take(alone) if sent[0] == DRIVER]
    oid, kind, why = error_in(ready)
    assert (oid, kind) == ("gen.0", "ObjectLostError") and "did not yield it again" in why
    assert alone.awaited == {} and head_problems(alone) == []


def test_a_value_from_a_node_the_task_left_is_not_taken(alone):
    joined(alone, "node-1", "node-2")
    submit(alone, generator("node-2", "gen"))
    take(alone)
    yielded(alone, "node-1", "gen", 0, p.Stored("node-1", MIB))    # not where it runs
    assert take(alone) == [("node-1", p.Delete(("gen.0",)))]
    assert alone.streams["gen"].seen == 0


def test_a_task_out_of_retries_ends_its_stream(alone):
    joined(alone, "node-1")
    submit(alone, generator("node-1", "gen", max_retries=0), subscribe=("gen",))
    yielded(alone, "node-1", "gen", 0, p.Inline(b"a"))
    take(alone)
    (peer, ready), = losing(alone, "node-1", "killed")
    assert error_in(ready)[:2] == ("gen", "WorkerCrashedError") and alone.streams == {}
    assert head_problems(alone) == []
