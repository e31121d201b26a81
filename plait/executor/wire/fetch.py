"""Fetching an object's bytes over TCP: how a large object is cut into chunks and streams,
and the client side of the transfer protocol for a driver that cannot map the holding
node's store (the node's side, serving and pulling, is plait.executor.node.transfers).

    reader --Fetch(object, same_host=False, start, stop)--> node's transfer ROUTER  (each stream)
    reader <--FetchHeader(nbytes | error)--------------------
    reader <--raw chunks of [start, stop), received in place-  (into one buffer of nbytes)
    reader --FetchDone-------------------------------------->

A large object comes over ``STREAMS`` connections at once, each asked for one run of whole
chunks (``spans``): ZeroMQ gives each connection to one of a context's ``IO_THREADS`` I/O
threads, so the kernel copies proceed on several cores at once. (In a keyed cluster each
chunk is sealed in the sending process's own thread and opened in the receiving one's:
~0.12 CPU s/GB each, below.)

Every frame goes through a ``Frames`` (wire/bulk.py): plain in an unkeyed cluster, sealed
with AES-256-GCM under the cluster's bulk key in a keyed one. Until issue 15 these streams
used CurveZMQ, like the control sockets: libsodium's XSalsa20-Poly1305, in the I/O thread,
cost about 1 CPU second per GB on each side against about 0.3 for the plain copies
(benchmarks/rawzmq.py, 512 MiB, from /proc CPU times), so one encrypted stream was bound to
one core per side, and plait's encrypted transfers reached 0.94-1.06 GB/s (1.75-1.87 CPU
s/GB for both sides) where plain ones reached 3.1-5.0. AES-256-GCM with AES-NI seals or
opens ~8 GB/s per core (~0.12 CPU s/GB per side), into the receiver's block directly.
Between nodes, a run of a large object does not come as ZeroMQ frames but over a TCP
connection of its own, read and written by threads (plait.executor.wire.stream); the
frames here carry small objects, and large ones to a driver on another host.
Chunks are 1 MiB: the size that moved ZeroMQ fastest here (~3.7 GB/s over loopback,
against ~1.0 GB/s with 64 MiB frames); 32 KiB and 256 KiB cost more CPU per GB.
"""

from __future__ import annotations

import contextlib
import pickle
from dataclasses import dataclass
from typing import Any

import zmq

from plait.errors import HeadUnavailableError, ObjectLostError
from plait.executor.wire import protocol as p
from plait.executor.wire.bulk import REQUEST, ForgedFrame, Frames, reply_data

CHUNK = 1 << 20
STREAMS = 2                         # connections a large object is split across
IO_THREADS = STREAMS                # per context that pulls or serves objects
STREAM_MIN_BYTES = 16 * CHUNK       # below this, one stream: a split would buy nothing


def spans(nbytes: int, streams: int = STREAMS) -> list[tuple[int, int]]:
    """The runs [start, stop) of an ``nbytes`` object that each stream asks for: near-equal
    runs of whole chunks, or the whole object on one stream when it is small.

    >>> spans(1000)
    [(0, 1000)]
    >>> spans(40 * CHUNK + 5, 2) == [(0, 20 * CHUNK), (20 * CHUNK, 40 * CHUNK + 5)]
    True
    """
    if nbytes < STREAM_MIN_BYTES or streams <= 1:
        return [(0, nbytes)]
    chunks = -(-nbytes // CHUNK)
    cuts = [min(nbytes, chunks * k // streams * CHUNK) for k in range(streams + 1)]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def chunks(start: int, stop: int) -> range:
    """Where each chunk of the run [start, stop) starts: the sender's frames and the
    receiver's ``recv_into`` targets must agree, so both cut here."""
    return range(start, stop, CHUNK)


def pull_object(ctx: zmq.Context, address: str, frames: Frames, object_id: str,
                nbytes: int, timeout: float = 60.0) -> bytearray:
    """Fetch an object's bytes from a node on another host, over ``spans(nbytes)`` streams.

    Each stream is a socket of its own; ``timeout`` bounds the silence of all of them. A
    frame that fails authentication (sealed ``frames``) fails the pull with ObjectLostError.
    Over TCP, a large object's runs come over TCP streams of their own, each read by a
    thread straight into the buffer (plait.executor.wire.stream), as between nodes: those
    wake this loop only when they end, so while one is read, its thread bounds its
    silence (stream.SILENCE_TIMEOUT), not ``timeout``. Done or failed, the holder is sent
    FetchDone for every run, so it lets go of its pin and offers.
    """
    from plait.executor.wire.stream import Receiver

    data = bytearray(nbytes)
    view = memoryview(data)
    runs: dict[zmq.Socket, Run] = {}
    stream = address.startswith("tcp://") and nbytes >= STREAM_MIN_BYTES
    receiver = Receiver(STREAM_MIN_BYTES) if stream else None
    try:
        for start, stop in spans(nbytes):
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(address)
            request = frames.message(p.Fetch(1, object_id, False, start, stop, stream),
                                     REQUEST)
            sock.send(request)
            runs[sock] = Run(object_id, frames.ticket(request), start, start, stop)
        poller = zmq.Poller()
        for sock in runs:
            poller.register(sock, zmq.POLLIN)
        if receiver is not None:
            poller.register(receiver.fd, zmq.POLLIN)
        while not all(run.seen and run.at >= run.stop for run in runs.values()):
            ready = poller.poll(int(timeout * 1000))
            if not ready and receiver is not None and receiver.running:
                continue                # a run is being read: its thread watches the silence
            if not ready:
                raise HeadUnavailableError(f"{address} sent no data for {object_id} "
                                           f"in {timeout} s")
            for sock, _ in ready:
                if receiver is not None and sock == receiver.fd:
                    streamed(receiver, address)
                    continue
                try:
                    header = receive(sock, frames, runs[sock], view, nbytes)
                except ForgedFrame as error:
                    raise ObjectLostError(object_id, f"{address} sent a frame that failed "
                                                     f"authentication ({error})") from None
                if header is not None and header.port:
                    if receiver is None:
                        raise ObjectLostError(object_id, f"{address} offered a stream "
                                                         f"that was not asked for")
                    receiver.start(stream_receive(frames, runs[sock], view),
                                   p.host_of(address), header.port, header.token)
        return data
    finally:
        if receiver is not None:
            receiver.close()
        for sock in runs:
            with contextlib.suppress(zmq.Again):
                sock.send(frames.message(p.FetchDone(1), REQUEST), zmq.NOBLOCK)
            sock.close(linger=100)


def stream_receive(frames: Frames, run: Run, view: memoryview) -> Any:
    """What a thread reads ``run`` over a stream with: into its part of ``view``, opened
    chunk by chunk when ``frames`` are sealed."""
    from plait.executor.wire.stream import Receive, opening

    return Receive(run, view[run.start:run.stop], lambda at, n: None, lambda: None,
                   opening(frames, run.ticket, run.object_id, run.start), CHUNK)


def streamed(receiver: Any, address: str) -> None:
    """Runs read over streams ended: each is in, or the pull fails."""
    for receive in receiver.ended():
        run = receive.key
        if receive.error is not None:
            raise ObjectLostError(run.object_id, f"{address}: {receive.error}")
        run.at = run.stop


@dataclass(eq=False)            # hashed by identity: a streamed run is a Receiver's key
class Run:
    """One stream's run [start, stop) of a driver's pull."""

    object_id: str
    ticket: bytes               # binds the holder's answers to our Fetch (wire/bulk.py)
    start: int
    at: int                     # the next byte to receive
    stop: int
    seen: bool = False          # its header came


def receive(sock: zmq.Socket, frames: Frames, run: Run, view: memoryview, nbytes: int
            ) -> p.FetchHeader | None:
    """One frame of a stream: its header (checked, and returned), or the run's next chunk,
    in place."""
    if not run.seen:
        header = frames.read(sock.recv(), reply_data(run.ticket, run.object_id, -1))
        if not isinstance(header, p.FetchHeader):
            raise ForgedFrame(f"a {type(header).__name__}, not a FetchHeader")
        if header.error is not None:
            raise pickle.loads(header.error)
        if header.nbytes != nbytes:
            raise ObjectLostError(header.object_id, f"its holder sent {header.nbytes} bytes, "
                                                    f"not the {nbytes} recorded")
        run.seen = True
        return header
    end = min(run.at + CHUNK, run.stop)
    frames.receive_chunk(sock, view[run.at:end], reply_data(run.ticket, run.object_id, run.at))
    run.at = end
    return None
