"""The stream server and receiver (wire/stream.py) alone, over loopback TCP."""

from __future__ import annotations

import socket
import threading

import pytest

from plait.executor.wire.stream import TOKEN_BYTES, Receive, Receiver, StreamServer

TIMEOUT = 10.0


@pytest.fixture
def server():
    server = StreamServer("127.0.0.1")
    yield server
    server.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("plait-stream")]


def fetch(server: StreamServer, token: bytes) -> bytes:
    """What a connection that sends ``token`` is given before the server hangs up."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as conn:
        conn.settimeout(TIMEOUT)
        conn.sendall(token)
        conn.shutdown(socket.SHUT_WR)           # all we send
        got = b""
        while part := conn.recv(1 << 16):
            got += part
        return got


def test_a_token_gets_its_run_once(server):
    data = bytes(range(256)) * 4096
    token = server.offer(memoryview(data)[100:200_000])
    assert fetch(server, token) == data[100:200_000]
    assert fetch(server, token) == b""          # used: good for nothing now
    assert not server.offers


def test_a_wrong_or_withdrawn_token_gets_nothing(server):
    token = server.offer(memoryview(b"secret" * 1000))
    assert fetch(server, bytes(TOKEN_BYTES)) == b""
    assert fetch(server, token[:8]) == b""      # short
    server.withdraw(token)
    assert fetch(server, token) == b""


def test_a_receiver_reads_a_run_into_its_target_and_reports_it_once(server):
    data = bytes(range(251)) * 40_000
    target = bytearray(len(data))
    receiver = Receiver(prefault_step=1 << 20)
    faulted: list[tuple[int, int]] = []
    firsts: list[bool] = []
    try:
        receiver.start(Receive("run", memoryview(target), lambda at, n: faulted.append((at, n)),
                               lambda: firsts.append(True)),
                       "127.0.0.1", server.port, server.offer(memoryview(data)))
        ended = wait_ended(receiver)
    finally:
        receiver.close()
    assert [r.key for r in ended] == ["run"] and ended[0].error is None
    assert bytes(target) == data and firsts == [True]
    assert [at for at, _ in faulted] == list(range(0, len(data), 1 << 20))


def test_a_receiver_given_a_bad_token_ends_with_an_error(server):
    receiver = Receiver(prefault_step=1 << 20)
    try:
        receiver.start(Receive("run", memoryview(bytearray(10)), lambda at, n: None,
                               lambda: None), "127.0.0.1", server.port, bytes(TOKEN_BYTES))
        (ended,) = wait_ended(receiver)
    finally:
        receiver.close()
    assert "closed the stream after 0 of 10 bytes" in ended.error


def wait_ended(receiver: Receiver) -> list[Receive]:
    import select

    ready, _, _ = select.select([receiver.fd], [], [], TIMEOUT)
    assert ready, "the receiver's run did not end"
    return receiver.ended()


def test_an_abort_while_connecting_returns_at_once_and_nothing_is_written():
    """A holder whose host died does not answer a connect: the node's loop must not wait
    for it (a cut run's thread, once connected, writes nothing), and close still waits
    for that thread before it closes the eventfd."""
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)                          # one connection queued; the next hangs
    port = listener.getsockname()[1]
    queued = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    target = bytearray(b"untouched")
    receiver = Receiver(prefault_step=1 << 20)
    try:
        receiver.start(Receive("run", memoryview(target), lambda at, n: None, lambda: None),
                       "127.0.0.1", port, bytes(TOKEN_BYTES))
        began = time.monotonic()
        receiver.abort("run")
        assert time.monotonic() - began < 1.0
        assert not receiver.running and receiver.threads     # still connecting
        listener.close()                        # the connect now fails, or comes through
        queued.close()
    finally:
        receiver.close()
    assert not receiver.threads and bytes(target) == b"untouched"
    assert not [t for t in threading.enumerate() if t.name == "plait-stream-recv"]
