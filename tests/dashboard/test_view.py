"""What the pages are given, from the head's data (pure: no server, no cluster)."""

from __future__ import annotations

import cloudpickle

from plait.dashboard import view
from plait.errors import TaskError
from plait.executor.wire import protocol as p
from plait.store.store import StoreSummary


def test_the_stream_keeps_the_last_minute_and_its_newest_bars_only():
    now = 1000.0
    old = [p.TaskEvent("old", "f", "node-0", 0, now - 100, now - 99, True)]
    recent = [p.TaskEvent(f"t{i}", "f", "node-0", 0, now - 5, now - 4, True)
              for i in range(view.STREAM_BARS + 10)]
    shown = view.stream(old + recent, now)["tasks"]
    assert len(shown) == view.STREAM_BARS and shown[-1]["task"] == recent[-1].task_id
    assert shown[0]["task"] == "t10" and shown[0]["start"] == -5.0


def test_a_tasks_traceback_is_read_without_unpickling_its_error():
    """A class the dashboard cannot import still shows its traceback: nothing is loaded."""
    class Unimportable(Exception):
        pass

    error = TaskError.wrap("f", "f-1", "node-1", "Traceback (most recent call last):\n"
                           "  ...\nUnimportable: no\n", Unimportable("no"))
    frame = cloudpickle.dumps(error)
    row = view.event_row(p.Notice(1.0, "error", "f-1", "f failed on node-1", frame))
    assert row["traceback"].endswith("Unimportable: no\n") and row["text"] == "f failed on node-1"
    assert view.traceback_of(b"") == "" and view.traceback_of(frame[:40]) == ""


def test_a_node_whose_counted_process_exited_shows_no_cpu_rather_than_a_negative_one():
    def snapshot(at: float, cpu: float) -> p.Snapshot:
        info = p.NodeInfo("node-0", "ipc://x", 1, True, 1, "arena", 1 << 20)
        store = StoreSummary("node-0", 1 << 20, 0, 0, 0, 0, 0, 0.0, 0.0, ())
        node = p.NodeSnapshot(0, "node-0", store, (), (), cpu, 1 << 20)
        return p.Snapshot(0, "s", at, (info,), (0.0,), (node,), (), (), 0, 0, 0, (), 0, (), 0)

    assert view.cluster_rows(snapshot(11.0, 3.0), snapshot(10.0, 2.5))[0]["cpu"] == 50.0
    assert view.cluster_rows(snapshot(11.0, 1.0), snapshot(10.0, 2.5))[0]["cpu"] is None
