"""A session's shutdown closes its socket whatever happens before: a worker's nested session
shares the worker's ZeroMQ context, and the worker's ``ctx.term()`` on its way out waits
for every socket of that context to close."""

from __future__ import annotations

from collections import deque
from types import SimpleNamespace

import pytest

from plait.errors import HeadUnavailableError
from plait.executor.driver.futures import SessionLock
from plait.executor.driver.session import Session


class Recorded:
    def __init__(self) -> None:
        self.closed = False
        self.stopped = False

    def close(self) -> None:
        self.closed = True

    def stop(self) -> None:
        self.stopped = True


def joined_session(flush_frees) -> tuple[Session, Recorded]:
    """A session of a joined cluster (a worker's), built without a head."""
    session = Session.__new__(Session)
    conn = Recorded()
    session.lock = SessionLock()
    session.futures = None
    session.flusher = SimpleNamespace(stop=lambda: None)
    session.unsubmitted = deque()
    session.owns_cluster = False
    session.flush_frees = flush_frees
    session.held = set()
    session.spare = None
    session.cluster = conn
    session.conn = conn
    session.arenas = {}
    return session, conn


def test_a_joined_sessions_shutdown_closes_its_socket_even_when_its_last_free_fails():
    def head_gone() -> None:
        raise HeadUnavailableError("the plait head at ipc://x has not answered")

    session, conn = joined_session(head_gone)
    with pytest.raises(HeadUnavailableError):
        session.shutdown()
    assert conn.closed and conn.stopped


def test_a_joined_sessions_shutdown_closes_its_socket():
    session, conn = joined_session(lambda: None)
    session.shutdown()
    assert conn.closed
