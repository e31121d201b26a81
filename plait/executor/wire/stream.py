"""TCP streams for the bytes of large objects between hosts, beside ZeroMQ.

A large object's runs travel over TCP connections of their own rather than as ZeroMQ
frames on the node's loop. ZeroMQ's I/O thread reads each frame from the kernel into a
message of its own, and the node's loop then copies (or, sealed, opens) that into the
replica block, one chunk at a time for every stream, on one core. Here a thread per run
reads from the kernel straight into the block (sealed: into one chunk's buffer, opened
into the block), and a thread per run of the sending node writes from its arena (sealed:
seals a chunk at a time) straight to the kernel. Over loopback on this 2-core machine,
two plain streams moved 512 MiB at 3.5 GB/s where two ZeroMQ streams moved 2.7 (probes
beside ``benchmarks/rawzmq.py``).

In a keyed cluster every chunk is sealed as on the ZeroMQ streams (wire/bulk.py, bound
to the Fetch's ticket and the chunk's offset), and the token travels in the sealed
header: a peer without the key learns no token from the header, and what a token gets is
ciphertext. The token itself crosses the wire in clear once, when the puller connects, so
an eavesdropper that races the puller to the holder can spoil that one transfer (the pull
fails and is asked for again); it learns nothing of the object.

The control stays on the transfer ROUTER (plait.executor.node.transfers): a Fetch asks
for a run with ``stream``; the holder pins the object, offers the run here under a token
of 16 random bytes and answers with the token and this server's port; the puller connects,
sends the token, reads the run, and sends FetchDone on the ROUTER as for any pull, so the
holder unpins only after the bytes are in. A token is good for one connection, and only
while its Fetch is being served.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from plait.executor.wire.bulk import OVERHEAD, ForgedFrame, Frames, SealedFrames, reply_data

TOKEN_BYTES = 16
ACCEPT_TIMEOUT = 10.0          # a connection that sends no token in this long is dropped
SILENCE_TIMEOUT = 60.0         # a stream silent this long fails (as a ZeroMQ pull's does)
MAX_CONNECTIONS = 64           # served at once; more are closed unread (a thread each)

# Sealing a run: (a chunk of it, the chunk's offset in the run) -> the frame to send. The
# chunks are of the size the caller gives with it (plait.executor.wire.fetch.CHUNK).
Seal = Callable[[memoryview, int], memoryview]
# Opening one: (the frame received, where its chunk goes, the chunk's offset in the run);
# raises when the frame fails authentication.
Open = Callable[[memoryview, memoryview, int], None]


class StreamServer:
    """A node's listening socket for streams, and a thread per connection it serves."""

    def __init__(self, host: str) -> None:
        host = host.strip("[]")                 # an IPv6 address, as ZeroMQ writes it
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.create_server((host, 0), family=family, backlog=64)
        self.port = self.listener.getsockname()[1]
        self.offers: dict[bytes, tuple[memoryview, Seal | None, int]] = {}
        self.lock = threading.Lock()
        self.connections: set[socket.socket] = set()
        self.threads: set[threading.Thread] = set()
        self.closed = False
        self.acceptor = threading.Thread(target=self.accept, name="plait-stream-accept",
                                         daemon=True)
        self.acceptor.start()

    def offer(self, run: memoryview, seal: Seal | None = None, chunk: int = 0) -> bytes:
        """A token the puller sends to be given ``run`` (a view of pinned arena bytes),
        sealed ``chunk`` bytes at a time by ``seal`` in a keyed cluster."""
        token = secrets.token_bytes(TOKEN_BYTES)
        with self.lock:
            self.offers[token] = (run, seal, chunk)
        return token

    def withdraw(self, token: bytes) -> None:
        """The Fetch is over: its token, if never used, is good for nothing now."""
        with self.lock:
            offer = self.offers.pop(token, None)
        if offer is not None:
            offer[0].release()

    def accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return                  # closed
            with self.lock:
                if self.closed:
                    conn.close()
                    return
                if len(self.connections) >= MAX_CONNECTIONS:
                    conn.close()
                    continue
                self.connections.add(conn)
                thread = threading.Thread(target=self.serve, args=(conn,), daemon=True,
                                          name="plait-stream-send")
                self.threads.add(thread)
            thread.start()

    def serve(self, conn: socket.socket) -> None:
        """Read a token, send its run, close; a connection with no good token gets
        nothing (a stranger cannot name an object, only guess a token)."""
        try:
            conn.settimeout(ACCEPT_TIMEOUT)
            token = _read_exactly(conn, TOKEN_BYTES)
            with self.lock:
                offer = self.offers.pop(token, None) if token is not None else None
            if offer is not None:
                run, seal, chunk = offer
                conn.settimeout(SILENCE_TIMEOUT)
                try:
                    if seal is None:
                        conn.sendall(run)
                    else:
                        for at in range(0, run.nbytes, chunk):
                            conn.sendall(seal(run[at:at + chunk], at))
                finally:
                    run.release()
        except OSError:
            pass                        # the puller went, or the server is closing
        finally:
            with self.lock:
                self.connections.discard(conn)
                self.threads.discard(threading.current_thread())
            conn.close()

    def close(self) -> None:
        """Stop serving: no new connections, those in progress cut, every thread joined
        (so no view of the arena outlives this)."""
        with self.lock:
            self.closed = True
            for conn in self.connections:
                _cut(conn)
            threads = list(self.threads)
            offers, self.offers = self.offers, {}
        _cut(self.listener)
        self.listener.close()
        self.acceptor.join(5)
        for thread in threads:
            thread.join(5)
        for run, _, _ in offers.values():
            run.release()


@dataclass
class Receive:
    """One run being read into ``target`` by a thread of its own; ``error`` once it ended
    badly (None: every byte came)."""

    key: object
    target: memoryview
    prefault: Callable[[int, int], None]     # (offset in target, length): fault pages in
    first_bytes: Callable[[], None]          # its first bytes are in (the kill point)
    open: Open | None = None                 # a keyed cluster's: each chunk comes sealed
    chunk: int = 0                           # the sealed chunks' size
    conn: socket.socket | None = None
    error: str | None = None
    thread: threading.Thread | None = None
    cut: bool = False


class Receiver:
    """The pulling side: a thread per run, and an eventfd that the node's loop polls to
    hear that runs ended (``ended`` hands them over)."""

    def __init__(self, prefault_step: int) -> None:
        self.step = prefault_step
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.running: dict[object, Receive] = {}
        self.done: list[Receive] = []
        self.threads: set[threading.Thread] = set()     # every one not ended, aborted too
        self.lock = threading.Lock()

    def start(self, receive: Receive, host: str, port: int, token: bytes) -> None:
        receive.thread = threading.Thread(target=self.read, name="plait-stream-recv",
                                          args=(receive, host, port, token), daemon=True)
        self.running[receive.key] = receive
        with self.lock:
            self.threads.add(receive.thread)
        receive.thread.start()

    def read(self, receive: Receive, host: str, port: int, token: bytes) -> None:
        try:
            conn = socket.create_connection((host.strip("[]"), port), timeout=ACCEPT_TIMEOUT)
            with self.lock:
                receive.conn = conn
                if receive.cut:
                    _cut(conn)
            conn.settimeout(SILENCE_TIMEOUT)
            conn.sendall(token)
            self.fill(receive, conn)
        except OSError as error:
            receive.error = f"the stream broke: {error}"
        finally:
            if receive.conn is not None:
                receive.conn.close()
            receive.target.release()
            with self.lock:
                self.done.append(receive)
                os.eventfd_write(self.fd, 1)
                self.threads.discard(threading.current_thread())

    def fill(self, receive: Receive, conn: socket.socket) -> None:
        """Read the run straight into its target, faulting pages in a step ahead."""
        if receive.open is not None:
            self.fill_sealed(receive, conn)
            return
        target, at, size, step = receive.target, 0, receive.target.nbytes, self.step
        while at < size:
            if at % step == 0:
                receive.prefault(at, min(step, size - at))
            n = conn.recv_into(target[at:min(size, at - at % step + step)])
            if n == 0:
                receive.error = f"the holder closed the stream after {at} of {size} bytes"
                return
            if at == 0:
                receive.first_bytes()
            at += n

    def fill_sealed(self, receive: Receive, conn: socket.socket) -> None:
        """Read each sealed chunk into one buffer and open it into the target."""
        chunk = receive.chunk
        assert receive.open is not None and chunk > 0 and self.step % chunk == 0
        target, size = receive.target, receive.target.nbytes
        frame = memoryview(bytearray(chunk + OVERHEAD))
        for at in range(0, size, chunk):
            if at % self.step == 0:
                receive.prefault(at, min(self.step, size - at))
            n = min(chunk, size - at)
            got = _read_into(conn, frame[:n + OVERHEAD])
            if got < n + OVERHEAD:
                receive.error = f"the holder closed the stream after {at} of {size} bytes"
                return
            try:
                receive.open(frame[:n + OVERHEAD], target[at:at + n], at)
            except ForgedFrame as error:
                receive.error = f"a chunk failed authentication ({error})"
                return
            if at == 0:
                receive.first_bytes()

    def ended(self) -> list[Receive]:
        """The runs that ended since the last call (each exactly once)."""
        try:
            os.eventfd_read(self.fd)
        except BlockingIOError:
            pass
        with self.lock:
            done, self.done = self.done, []
        ended = [receive for receive in done if not receive.cut]    # (aborted: not news)
        for receive in ended:
            self.running.pop(receive.key, None)
        return ended

    def abort(self, key: object) -> None:
        """Cut a run: its target may be freed once this returns. A thread reading is
        waited for (cut, it stops at once); one still connecting is not (to a host that
        died, that could take ACCEPT_TIMEOUT, and the node's loop must go on): it finds
        itself cut once connected, and writes nothing."""
        receive = self.running.pop(key, None)
        if receive is None:
            return
        with self.lock:
            receive.cut = True
            conn = receive.conn
            if conn is not None:
                _cut(conn)
        if conn is not None and receive.thread is not None:
            receive.thread.join()

    def close(self) -> None:
        """Abort every run and wait for every thread (those still connecting too: none
        may signal the eventfd once it is closed)."""
        for key in list(self.running):
            self.abort(key)
        with self.lock:
            threads = list(self.threads)
        for thread in threads:
            thread.join()
        os.close(self.fd)


def sealing(frames: Frames, ticket: bytes, object_id: str, start: int, chunk: int
            ) -> Seal | None:
    """How a holder seals the chunks of a run starting at ``start`` of the object in a
    keyed cluster (None: sent plain): each bound, as a frame's, to the Fetch's ``ticket``
    and the chunk's offset in the object."""
    if not isinstance(frames, SealedFrames):
        return None
    buffer = bytearray(chunk + OVERHEAD)        # one per run: its thread sends in turn

    def seal(part: memoryview, at: int) -> memoryview:
        return frames.seal_chunk(buffer, part, reply_data(ticket, object_id, start + at))
    return seal


def opening(frames: Frames, ticket: bytes, object_id: str, start: int) -> Open | None:
    """How a puller opens what ``sealing`` sealed (None: the run comes plain)."""
    if not isinstance(frames, SealedFrames):
        return None

    def open_chunk(frame: memoryview, target: memoryview, at: int) -> None:
        frames.open_into(frame, reply_data(ticket, object_id, start + at), target)
    return open_chunk


def _read_exactly(conn: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        part = conn.recv(n - len(data))
        if not part:
            return None
        data += part
    return data


def _read_into(conn: socket.socket, into: memoryview) -> int:
    """Fill ``into`` from ``conn``; how much came before the peer hung up."""
    got = 0
    while got < into.nbytes:
        n = conn.recv_into(into[got:])
        if n == 0:
            break
        got += n
    return got


def _cut(sock: socket.socket) -> None:
    """Wake a thread blocked on ``sock`` (shutdown, unlike close, makes its call return)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
