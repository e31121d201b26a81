"""The log of errors nobody asked for, without processes: what is logged and what is not."""

from __future__ import annotations

import logging
import pickle

from plait.errors import TaskCancelledError, TaskError
from plait.executor.driver.unhandled import log_unhandled


def failed(error: BaseException) -> bytes:
    return pickle.dumps(error)


def test_each_error_is_logged_as_rays_unhandled_error_but_a_cancelled_task(caplog):
    error = TaskError.wrap("f", "f-1", "node-0", "Traceback ...", ValueError("bad"))
    with caplog.at_level(logging.ERROR, logger="plait.session"):
        log_unhandled((("f-1", failed(error)), ("g-2", failed(TaskCancelledError("g-2")))))
    assert [r.getMessage() for r in caplog.records] == [
        f"Unhandled error (suppress with 'RAY_IGNORE_UNHANDLED_ERRORS=1'): {error}"]


def test_rays_variable_silences_it_and_an_unreadable_error_is_still_named(caplog, monkeypatch):
    with caplog.at_level(logging.ERROR, logger="plait.session"):
        monkeypatch.setenv("RAY_IGNORE_UNHANDLED_ERRORS", "1")
        log_unhandled((("f-1", failed(ValueError("quiet"))),))
        assert caplog.records == []
        monkeypatch.delenv("RAY_IGNORE_UNHANDLED_ERRORS")
        log_unhandled((("f-2", b"not a pickle"),))
    assert "f-2 failed with an error this process cannot read" in caplog.records[0].getMessage()
