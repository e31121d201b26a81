"""Connection.hello, the one Hello/Welcome exchange of every client, against a scripted head.

The Connection's socket is swapped for ``ScriptedHead``, which answers a Hello with the
messages a test gives it and is silent otherwise: no process, no thread, no sleep. Waits
that must run out are given a few milliseconds, or find the head silent for longer than
a driver allows from the start.
"""

from __future__ import annotations

import os
import pickle
from types import SimpleNamespace

import pytest
import zmq

from plait.errors import ClusterError, HeadUnavailableError
from plait.executor.driver.cluster import JoinedCluster, LocalCluster
from plait.executor.driver.connection import DRIVER_TIMEOUT_SECONDS, Connection
from plait.executor.wire import protocol as p
from plait.executor.wire.hostid import host_id

NODE = p.NodeInfo("node-0", "tcp://127.0.0.1:1", 1, True, 1, "arena", 1 << 20, "host-0")
WELCOME = p.Welcome("s-1", (NODE,))
SHORT = 0.02                    # seconds: a wait that is meant to run out


class ScriptedHead:
    """Stands in for the DEALER socket: records what is sent; a Hello queues ``answers``."""

    def __init__(self, answers: list[p.Message]) -> None:
        self.answers = answers
        self.sent: list[p.Message] = []
        self.inbox: list[bytes] = []

    def send(self, data: bytes, flags: int = 0, copy: bool = True) -> None:
        message = p.decode(data)
        self.sent.append(message)
        if isinstance(message, p.Hello):
            self.inbox += [p.encode(answer) for answer in self.answers]

    def poll(self, timeout_ms: int, flags: int = 0) -> bool:
        return bool(self.inbox)       # never blocks: a silent head answers at once, "no"

    def recv(self, copy: bool = True) -> SimpleNamespace:
        return SimpleNamespace(buffer=self.inbox.pop(0))

    def close(self, linger: int = 0) -> None:
        pass


def connect(cluster, answers: list[p.Message]) -> tuple[Connection, ScriptedHead]:
    conn = Connection(cluster)
    conn.sock.close()
    conn.sock = head = ScriptedHead(answers)
    return conn, head


@pytest.fixture
def joined():
    conns = []

    def make(*answers: p.Message) -> tuple[Connection, ScriptedHead]:
        conns.append(connect(JoinedCluster("ipc:///nonexistent/plait-test", None), list(answers)))
        return conns[-1]

    yield make
    for conn, _ in conns:
        conn.close()


def test_hello_skips_heartbeats_hands_on_other_messages_and_returns_the_welcome(joined):
    ready = p.Ready((("o-1", p.Inline(b"x")),))
    conn, head = joined(p.Heartbeat("node-0", 0), ready, WELCOME)
    others = []
    assert conn.hello(2, other=others.append) == WELCOME
    assert others == [ready]
    assert head.sent == [p.Hello(os.getpid(), 2, "")]


def test_only_a_watched_hello_names_this_host(joined):
    conn, head = joined(WELCOME)
    assert conn.hello(watched=True) == WELCOME
    assert head.sent == [p.Hello(os.getpid(), 1, host_id())]


def test_no_welcome_within_the_timeout_is_none_and_fails_a_handshake(joined, monkeypatch):
    conn, _ = joined()
    assert conn.hello(timeout=SHORT) is None
    monkeypatch.setattr("plait.executor.driver.connection.START_TIMEOUT_S", SHORT)
    with pytest.raises(ClusterError, match="did not answer within"):
        conn.handshake(1)


def test_a_hello_the_head_refuses_raises_the_heads_reason(joined):
    refusal = ClusterError("this client speaks plait's messages of version x")
    conn, _ = joined(p.Refused(p.HELLO_REFUSED, pickle.dumps(refusal)))
    with pytest.raises(ClusterError, match="messages of version x"):
        conn.hello(timeout=60)


def test_a_joined_heads_silence_ends_only_a_wait_without_timeout(joined):
    conn, _ = joined()
    conn.heard -= DRIVER_TIMEOUT_SECONDS + 1      # silent for longer than a driver allows
    assert conn.hello(timeout=SHORT) is None     # it may still be starting: wait on
    conn.heard -= DRIVER_TIMEOUT_SECONDS + 1
    with pytest.raises(HeadUnavailableError, match="has not answered"):
        conn.hello()


def test_alive_ends_the_wait_with_its_error(joined):
    conn, head = joined()

    def exited() -> None:
        raise ClusterError("its process exited with code 1")

    with pytest.raises(ClusterError, match="exited with code 1"):
        conn.hello(timeout=60, alive=exited)
    assert head.sent == [p.Hello(os.getpid(), 1, "")]


def test_a_started_heads_exit_fails_the_handshake_at_once():
    head_process = SimpleNamespace(pid=12345, returncode=1, poll=lambda: 1)
    config = SimpleNamespace(client_address="ipc:///nonexistent/plait-test")
    conn, _ = connect(LocalCluster("s", "/nonexistent", [config], [head_process]), [])
    try:
        with pytest.raises(ClusterError, match="failed to start: .*pid 12345.* code 1"):
            conn.handshake(1)
    finally:
        conn.close()


def test_a_connection_to_a_head_on_this_host_retries_within_milliseconds():
    """An embedded head binds its ipc socket a moment after the driver connects: ZeroMQ's
    100 ms between retries would be added to init; a TCP head keeps ZeroMQ's default."""
    from plait.executor.wire.config import LOCAL_RECONNECT_MS

    local = Connection(JoinedCluster("ipc:///nonexistent/plait-test/head.sock", None))
    remote = Connection(JoinedCluster("tcp://127.0.0.1:1", None))
    try:
        assert local.sock.getsockopt(zmq.RECONNECT_IVL) == LOCAL_RECONNECT_MS
        assert remote.sock.getsockopt(zmq.RECONNECT_IVL) == 100
    finally:
        local.close()
        remote.close()


def test_a_connection_given_a_context_leaves_it_open_when_it_closes():
    """A worker's nested session rides the worker's own context: closing the session's
    connection must not end the context the worker's socket to its node still uses."""
    ctx = zmq.Context()
    conn = Connection(JoinedCluster("ipc:///nonexistent/plait-test", None), ctx)
    conn.close()
    assert not ctx.closed
    ctx.socket(zmq.DEALER).close()            # still usable
    ctx.term()


def test_a_connection_counts_the_bytes_it_receives_for_the_heap_trim(joined):
    ready = p.Ready((("o-1", p.Inline(b"x" * 1000)),))
    conn, head = joined(ready, WELCOME)
    conn.hello(1, other=lambda message: None)
    assert conn.heap.received == len(p.encode(ready)) + len(p.encode(WELCOME))
