"""The head's directory without processes: holders and readers in, reclaims out."""

from __future__ import annotations

import pickle

import pytest

from plait.errors import ObjectFreedError, ObjectLostError
from plait.executor.head import directory as d
from plait.executor.wire import protocol as p


@pytest.fixture
def directory():
    made = d.Directory(lambda oid, value: made.reclaimed.append(oid))
    made.reclaimed = []
    return made


def stored(*contains: str) -> p.Stored:
    return p.Stored("node-0", 64, contains)


def test_an_object_goes_when_its_last_holder_and_last_reader_are_done(directory):
    directory.expect("x")
    directory.add_reader("x")                     # a submitted task will read it
    directory.set_value("x", stored())
    directory.release("x")                        # the driver dropped its ref
    assert directory.reclaimed == []              # the task has yet to read it
    directory.drop_reader("x")
    assert directory.reclaimed == ["x"] and "x" not in directory.entries


def test_a_pending_object_without_holders_waits_for_its_value_before_it_goes(directory):
    directory.expect("x")
    directory.release("x")
    assert directory.reclaimed == [] and directory.lookup("x") is None
    assert directory.set_value("x", stored()) == []
    assert directory.reclaimed == ["x"]


def test_objects_inside_a_value_live_as_long_as_it_does(directory):
    for oid in ("inner", "outer"):
        directory.expect(oid)
    directory.set_value("inner", stored())
    directory.set_value("outer", stored("inner"))
    directory.release("inner")                    # the driver's ref to it went
    assert directory.reclaimed == []              # outer still contains it
    directory.release("outer")
    assert directory.reclaimed == ["outer", "inner"]


def test_waiters_hear_of_the_value_once(directory):
    directory.expect("x")
    assert directory.subscribe("x", "driver-1") is None
    assert directory.subscribe("x", "driver-2") is None
    assert directory.set_value("x", stored()) == ["driver-1", "driver-2"]
    assert directory.entries["x"].waiters == []


def test_a_duplicate_result_is_reclaimed_and_the_first_kept(directory):
    directory.expect("x")
    first, second = stored(), p.Stored("node-1", 64, ())
    directory.set_value("x", first)
    directory.set_value("x", second)
    assert directory.reclaimed == ["x"] and directory.lookup("x") is first


def test_a_freed_object_says_so_and_an_unknown_one_is_lost(directory):
    directory.expect("x")
    directory.set_value("x", stored())
    directory.force_free("x")
    assert directory.reclaimed == ["x"]
    freed = pickle.loads(directory.lookup("x").error)
    assert isinstance(freed, ObjectFreedError) and "plait.free" in str(freed)
    lost = pickle.loads(directory.lookup("never").error)
    assert type(lost) is ObjectLostError


def test_tombstones_are_bounded(directory, monkeypatch):
    monkeypatch.setattr(d, "MAX_TOMBSTONES", 3)
    for i in range(5):
        directory.force_free(f"x{i}")
    assert list(directory.tombstones) == ["x2", "x3", "x4"]
    assert type(pickle.loads(directory.lookup("x0").error)) is ObjectLostError


def test_a_revived_object_lives_while_its_rebuilding_task_has_yet_to_read_it(directory):
    directory.revive("x")                         # lineage: made again for a re-run
    directory.add_reader("x")
    directory.set_value("x", stored())
    assert directory.reclaimed == []
    directory.drop_reader("x")
    assert directory.reclaimed == ["x"]


def test_a_reclaimed_object_says_who_let_go_of_it_last(directory):
    """Issue 11: a driver lost an object it still held, and "no task will make one" could
    not tell a reclaimed object from one the head never heard of."""
    directory.expect("x")
    directory.set_value("x", stored())
    directory.release("x", "a Free from the client pid 7 on host-0")
    assert directory.reclaimed == ["x"]
    lost = pickle.loads(directory.lookup("x").error)
    assert type(lost) is ObjectLostError
    assert "reclaimed" in str(lost) and "a Free from the client pid 7 on host-0" in str(lost)
    never = pickle.loads(directory.lookup("never").error)
    assert "no task will make one" in str(never) and "reclaimed" not in str(never)


def test_an_object_inside_a_reclaimed_one_names_its_container(directory):
    for oid in ("inner", "outer"):
        directory.expect(oid)
    directory.set_value("inner", stored())
    directory.set_value("outer", stored("inner"))
    directory.release("inner", "a Free from the client pid 7 on host-0")
    directory.release("outer", "a Free from the client pid 7 on host-0")
    assert "outer, which contained it" in str(pickle.loads(directory.lookup("inner").error))


def test_reclaimed_objects_are_remembered_boundedly(directory, monkeypatch):
    monkeypatch.setattr(d, "MAX_GONE", 3)
    for i in range(5):
        directory.expect(f"x{i}")
        directory.set_value(f"x{i}", stored())
        directory.release(f"x{i}", "test")
    assert list(directory.gone) == ["x2", "x3", "x4"]
    assert "no task will make one" in str(pickle.loads(directory.lookup("x0").error))


@pytest.fixture
def told():
    """A directory that notes the unhandled errors it reports, as (owner, object)."""
    heard: list[tuple[str, str]] = []
    made = d.Directory(lambda oid, value: None,
                       lambda owner, oid, value: heard.append((owner, oid)))
    return made, heard


FAILED = p.Failed(pickle.dumps(ValueError("boom")))


def test_a_failed_object_nobody_asked_for_is_reported_to_its_owner_when_it_goes(told):
    directory, heard = told
    directory.expect("x", "driver")
    directory.release("x")                        # dropped while its task ran
    assert heard == []
    directory.set_value("x", FAILED)
    assert heard == [("driver", "x")]


def test_a_failed_object_got_read_freed_or_stored_is_not_reported(told):
    directory, heard = told
    for oid in "abcde":
        directory.expect(oid, "driver")
    directory.subscribe("a", "driver")            # a get asked for it ...
    directory.add_reader("b")                     # a task reads it: its error goes on there
    directory.subscribe("e", ("node", "node-1"), reads=True)    # a node, for a task
    directory.set_value("a", FAILED)
    directory.handled("a")                        # ... and raised its error
    directory.set_value("b", FAILED)
    directory.set_value("e", FAILED)
    directory.set_value("c", stored())            # no error to report
    directory.force_free("d")                     # plait.free: the program let it go itself
    for oid in "ace":
        directory.release(oid)
    directory.drop_reader("b"), directory.release("b")
    assert heard == [] and not directory.entries


def test_a_failed_object_only_waited_on_is_reported_as_ray_does(told):
    directory, heard = told
    directory.expect("w", "driver")
    directory.subscribe("w", "driver")            # a wait: its error was never raised
    directory.set_value("w", FAILED)
    directory.release("w")
    assert heard == [("driver", "w")]
