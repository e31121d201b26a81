"""A long run on Ray or Dask stays flat: the trace is a ring of the newest events (as the
native head's), Ray's task reports not read yet are read in batches, never held one per
task forever (a trace block that runs long), and the engine keeps nothing of an object
once it is gone and no report to come can name it. On Ray only tasks launched inside a
``plait.trace()`` block report how they ran. Small limits here, patched before the session
starts."""

from __future__ import annotations

import gc
import sys
from collections import deque

import pytest

import plait
import plait.api
from plait.engines import base
from tests.conftest import assert_nothing_leaked
from tests.engines.conftest import started

pytestmark = pytest.mark.cluster
KEPT = 20           # trace events kept (MAX_EVENTS)
PENDING = 8         # Ray: task reports not read yet before the finished ones are read
DYING = 8           # records of dead objects waiting before the reports are read


@plait.remote
def older(x):
    return x + 1


@plait.remote
def newer(x):
    return x * 2


@pytest.fixture(params=["ray", "dask"])
def small_session(request, monkeypatch):
    """A session whose trace keeps KEPT events (and Ray's, PENDING unread reports)."""
    monkeypatch.setattr(base, "MAX_EVENTS", KEPT)
    if request.param == "ray":
        ray_engine = pytest.importorskip("plait.engines.ray")
        monkeypatch.setattr(ray_engine, "PENDING_REPORTS", PENDING)
    with started(request.param, sys.modules[__name__]):
        yield plait.api.session()
    assert_nothing_leaked()


def test_the_trace_keeps_the_newest_events_and_counts_the_dropped(small_session):
    with plait.trace() as trace:
        for i in range(40):
            plait.get(older.remote(i))
        for i in range(KEPT):
            plait.get(newer.remote(i))
    assert [t.function_name for t in trace.tasks] == ["newer"] * KEPT
    assert trace.dropped == 40


@pytest.mark.parametrize("small_session", ["ray"], indirect=True)
def test_ray_holds_few_unread_reports_while_a_long_trace_is_not_read(small_session):
    most = 0
    with plait.trace() as trace:
        for i in range(60):
            plait.get(older.remote(i))        # one task at a time: none left running
            most = max(most, len(small_session.reports))
    assert most == PENDING + 1                # read as soon as there are more than PENDING
    assert len(trace.tasks) == KEPT and trace.dropped == 60 - KEPT


@plait.remote(num_returns=2)
def pair(x):
    return x, -x


@pytest.mark.parametrize("small_session", ["ray"], indirect=True)
def test_ray_tasks_report_how_they_ran_only_inside_a_trace(small_session):
    """Outside a trace block a task returns the user's results alone (a report costs Ray a
    return per task): nothing waits to be read, nothing is recorded."""
    assert plait.get([older.remote(1), *pair.remote(2)]) == [2, 2, -2]
    assert small_session.reports == [] and len(small_session.events) == 0
    before = older.remote(3)                  # made before the block, launched inside it
    with plait.trace() as trace:
        assert plait.get([before, *pair.remote(4)]) == [4, 4, -4]
    assert sorted(t.function_name for t in trace.tasks) == ["older", "pair"]
    assert plait.get(older.remote(5)) == 6
    assert small_session.reports == [] and len(small_session.events) == 2


def test_the_ring_holds_nothing_the_cyclic_collector_walks(small_session):
    """Events wait in the ring as plain tuples, which CPython stops tracking at their first
    collection: an event object per task, kept for good, would bring the driver's next
    full collection nearer and make it longer (W3 on Ray)."""
    with plait.trace() as trace:
        plait.get([older.remote(i) for i in range(KEPT)])
    gc.collect()
    assert len(small_session.events) == KEPT
    assert [kept for kept in small_session.events if gc.is_tracked(kept)] == []
    assert sorted(t.task_id for t in trace.tasks) == sorted(kept[1] for kept in
                                                           small_session.events)


def test_dask_reads_what_came_after_its_last_read_though_the_log_moved():
    dask_engine = pytest.importorskip("plait.engines.dask")
    new, read = dask_engine._unread([(1.0, "a"), (2.0, "b")], (0.0, 0))
    assert (new, read) == (["a", "b"], (2.0, 1))
    full = [(2.0, "b"), (2.0, "c")]          # the scheduler's log is full: "a" went
    assert dask_engine._unread(full, read) == (["c"], (2.0, 2))


@pytest.mark.parametrize("small_session", ["ray"], indirect=True)
def test_ray_reads_the_reports_of_a_get_that_saw_more_than_a_few_tasks(small_session,
                                                                        monkeypatch):
    ray_engine = sys.modules["plait.engines.ray"]
    monkeypatch.setattr(ray_engine, "REPORTS_AFTER_GET", 4)
    with plait.trace() as trace:
        plait.get([older.remote(i) for i in range(3)])
        assert len(small_session.reports) == 3        # a few: kept for a later read
        plait.get([older.remote(i) for i in range(3, 6)])
        assert small_session.reports == []            # more than 4: read at the get
    assert sorted(t.function_name for t in trace.tasks) == ["older"] * 6


def object_records(session) -> set[str]:
    """The names kept in the session's tables (its dicts, sets, deques and lists, tuples
    opened), but for the trace's ring (MAX_EVENTS): the objects it still keeps a record
    of, whatever the table."""
    found = set()
    with session.lock:                        # (the idle flusher counts dead refs down)
        for name, table in vars(session).items():
            if name == "events" or not isinstance(table, (dict, set, deque, list)):
                continue
            for item in table:
                found.update(part for part in (item if isinstance(item, tuple) else (item,))
                             if isinstance(part, str))
    return found


def test_the_engine_keeps_nothing_of_objects_gone(small_session):
    made = []
    with plait.trace():                       # (Ray: its tasks report)
        for _ in range(3):
            inputs = [older.remote(i) for i in range(KEPT)]
            outputs = [newer.remote(x) for x in inputs]
            assert plait.get(outputs) == [(i + 1) * 2 for i in range(KEPT)]
            made += [ref.id for ref in inputs + outputs]
            made += [older.remote(i).id for i in range(5)]  # called for side effects alone
            del inputs, outputs
        freed = plait.put(1)
        plait.free(freed)
        plait.put(0)                          # counts the dropped refs down
    with plait.trace():                       # reads the reports: none to come names them
        pass
    assert object_records(small_session) & set(made) == set()
    assert freed.id not in small_session.holders      # (its ref lives: get raises)


def test_a_driver_that_never_reads_its_trace_keeps_few_records_of_dead_objects(
        small_session, monkeypatch):
    """Dask reads no report unless asked: past DYING_RECORDS records of dead objects
    waiting, the reports are read and the records go."""
    monkeypatch.setattr(base, "DYING_RECORDS", DYING)
    small_session.dying_limit = DYING
    most = 0
    with plait.trace():                       # (Ray: its tasks report; the block is long)
        for i in range(40):
            assert plait.get(newer.remote(older.remote(i))) == (i + 1) * 2
            most = max(most, len(small_session.holders))
    assert most <= DYING + 2                  # and the two of the get at hand


@pytest.mark.parametrize("small_session", ["dask"], indirect=True)
def test_a_transfer_is_traced_though_its_object_went_before_the_report_was_read(
        small_session):
    """A task may read an object whose last ref went at the task's launch: the object's
    record of where it was made waits for the task's report (Ray: test_ray_nodes.py)."""
    with plait.trace() as trace:
        made = older.options(node="node-1").remote(1)
        made_id = made.id
        read = newer.options(node="node-2").remote(made)
        del made                              # its reader holds it until its launch
        assert plait.get(read) == 4
        del read
        plait.put(0)                          # counts them down; the reports are unread
    assert [(t.object_id, t.src, t.dst) for t in trace.transfers] == \
        [(made_id, "node-1", "node-2")]
    assert made_id not in object_records(small_session)


@plait.remote
def append_line(path, line):
    with open(path, "a") as file:
        file.write(line + "\n")


def test_a_call_for_its_side_effects_alone_runs_before_the_session_shuts_down(
        small_session, tmp_path):
    """Its ref is gone before its launch, so the engine keeps no handle of its result; a
    call not launched yet at shutdown is still waited for."""
    small_session.flusher.quiet = 3600        # not launched before the shutdown
    append_line.remote(str(tmp_path / "ran"), "side effect")
    plait.shutdown()
    assert (tmp_path / "ran").read_text() == "side effect\n"
