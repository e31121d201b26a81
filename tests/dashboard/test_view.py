"""What the pages are given, from the head's data (pure: no server, no cluster)."""

from __future__ import annotations

import cloudpickle

from plait.dashboard import view
from plait.errors import TaskError
from plait.executor.wire import protocol as p


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
