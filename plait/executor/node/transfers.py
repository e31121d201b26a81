"""Transfers: copying an object from a peer node's store into this node's store.

Pull protocol (B pulls object X from A; B's DEALERs talk to A's transfer ROUTER)::

    B --Fetch(X, same_host, start, stop)--> A     A pins X (restoring it if spilled)
    same host:   A --FetchHeader(offset)--> B   B copies from A's arena, which it maps
    other host:  A --FetchHeader(nbytes), then raw chunks of [start, stop), sent zero-copy
                 from A's arena--> B   B receives each chunk straight into its own block
    B --FetchDone--> A                    A unpins X (once per Fetch; or when the head
                                          says B is lost, as the Fetch names B)

Across hosts a large object comes over several streams (plait.executor.wire.fetch: which
runs, how many streams, the chunk size and the figures behind them): one DEALER per (peer,
stream), each sent one Fetch per pull for its run. One connection per stream keeps its
frames in order, so B knows that the frames after a header are that run's chunks. A pull
ends when every stream's run has (``Piece``): stored and sealed, or, if any header carried
an error or the block could not be allocated, failed, the other runs' chunks drained and
dropped so that the streams stay in step. Concurrent requests for one object on one node
share one transfer. The copy becomes a replica in B's store.

What a store cannot hold goes through disks, as Ray copies it: an object A's store has no
room to bring back (larger than the whole store, or its room pinned) is served from its
spill file, mapped once its CRCs are checked (on one host B maps the file itself: the
header's ``path``); a replica larger than B's whole store is a file of B's spill directory
(``DiskBlock``), mapped for writing as a block would be, its CRCs taken once it is in.

The ``mid-transfer`` kill point is on the receiving side (B), in both paths: B has
allocated its unsealed replica block and, across hosts, received the first chunk. B's
death there is what a transfer must survive: A is left with a pinned object and a
half-served request, the head with a task to place elsewhere.

Over TCP a run of a large object (at least STREAM_MIN_BYTES) does not come as frames: the
Fetch asks for a ``stream``, A offers the run on its stream server and answers with a port
and a token, and a thread of B reads the run over a TCP connection of its own straight
into the replica block, sealed chunk by chunk in a keyed cluster as the frames below are
(plait.executor.wire.stream: one copy per side instead of ZeroMQ's two on the receiving
side). B sends FetchDone on the link once the thread ends, so A unpins only after the
bytes are in; a holder lost mid-run has its threads cut before the replica block is
freed, and a puller lost has what A pinned and offered for it let go.

In a keyed cluster every frame of these streams is sealed with AES-256-GCM (wire/bulk.py):
A seals each chunk from its arena into a buffer of a small window per run (``Serve``),
sending the next once ZeroMQ is done with one, so a run never holds more than
SEAL_WINDOW chunks of memory; B opens each chunk straight into its replica block. A frame
that fails authentication is dropped unread: at A, a request; at B, the pull fails
(ObjectLostError), and a header it cannot trust breaks the link (``break_link``).
"""

from __future__ import annotations

import logging
import pickle
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import zmq

from plait.errors import ObjectLostError, PlaitError
from plait.executor.wire import killpoints
from plait.executor.wire import protocol as p
from plait.executor.wire.bulk import (OVERHEAD, REQUEST, ForgedFrame, Frames, PlainFrames,
                                      SealedFrames, reply_data)
from plait.executor.wire.dispatch import handlers
from plait.executor.wire.fetch import CHUNK, STREAM_MIN_BYTES, chunks, spans
from plait.executor.wire.stream import Receive, Receiver, StreamServer, opening, sealing
from plait.store.arena import Arena
from plait.store.copying import copy_bytes
from plait.store.spill import DiskBlock, SpillRecord, mapped
from plait.store.store import ObjectStore

Link = tuple[str, int]          # (peer node, stream)
# Chunks a link's socket takes in ahead of the loop (ZeroMQ then stops reading the
# connection until the loop catches up): bounds the memory a pull holds in flight.
LINK_BUFFER_CHUNKS = 32
# The replica block's pages are faulted in a run this long at a time, ahead of the chunks
# that fill it: a page fault per 4 KiB page inside the copies cost the receiver up to 1 CPU
# s/GB (benchmarks/rawzmq.py's receiver into untouched memory), and one call for a whole
# 1 GiB block would hold the node's loop (heartbeats) for a second on a busy machine.
PREFAULT_BYTES = 32 * CHUNK
# Sealed chunks of one run in ZeroMQ's hands at once (each in its own CHUNK + OVERHEAD
# buffer, reused when its tracker says ZeroMQ let go): bounds the memory a sealed serve
# holds, as the arena itself does for plain zero-copy chunks; 8 MiB keeps a stream busy for
# the ~1 ms between two turns of the node's loop at 8 GB/s.
SEAL_WINDOW = 8
# The largest frame a transfer ROUTER takes in a keyed cluster: requests are small, and a
# peer without the key should not make it allocate more before a frame is found forged.
REQUEST_MAX_BYTES = 64 << 10

log = logging.getLogger("plait.transfers")


@dataclass
class Pull:
    request: int
    object_id: str
    source: str
    nbytes: int                 # as the directory recorded it; each header must agree
    pieces: int = 1             # streams whose run has not ended yet
    offset: int = -1            # of our replica block, once the first header came
    error: bytes | None = None  # why it failed, once a header (or the allocation) said so
    began: float = 0.0          # wall clock, for traces
    disk: DiskBlock | None = None   # the replica's file, if this store cannot hold it

    @property
    def allocated(self) -> bool:
        return self.offset >= 0 or self.disk is not None


@dataclass(eq=False)          # hashed by identity: a streamed run is a key (``streamed``)
class Piece:
    """One stream's run [start, stop) of a pull."""

    pull: Pull
    start: int
    stop: int
    at: int = -1                # the next byte to receive; -1 until the run's header came
    ticket: bytes = b""         # binds the holder's answers to our Fetch (wire/bulk.py)

    @property
    def receiving(self) -> bool:
        return 0 <= self.at < self.stop


@dataclass
class Serving:
    """A Fetch this node answers, from its answer until its puller's FetchDone (or death):
    the object it pins, the node asking (if it said), and the token of the run it offers
    over a stream (if any, until the puller connects or the serve ends)."""

    object_id: str
    puller: str = ""
    token: bytes | None = None
    # served from its spill file, checked and mapped (the store had no room): no pin
    file: tuple[SpillRecord, memoryview] | None = None

    @property
    def pinned(self) -> bool:
        return self.file is None


@dataclass
class Serve:
    """An answer to a Fetch: its header, then the chunks of the run [at, stop) of ``block``
    (none when the header says where the object is, or why not); sealed, SEAL_WINDOW chunks
    in flight at a time."""

    identity: bytes
    ticket: bytes               # the Fetch's: binds each frame to the request and offset
    header: p.FetchHeader
    block: memoryview = memoryview(b"")
    at: int = 0
    stop: int = 0
    header_sent: bool = False
    flight: deque[tuple[zmq.MessageTracker, bytearray]] = field(default_factory=deque)

    def buffer(self) -> bytearray | None:
        """A buffer to seal the next chunk into: a new one while the window has room, the
        oldest once ZeroMQ is done with it, or None: wait."""
        if len(self.flight) < SEAL_WINDOW:
            return bytearray(CHUNK + OVERHEAD)
        tracker, buffer = self.flight[0]
        if not tracker.done:
            return None
        self.flight.popleft()
        return buffer


class PullOwner(Protocol):
    """What Transfers tells the node it belongs to (node.py's Node, which makes it)."""

    def pulled(self, object_id: str, value: p.ObjectValue,
               record: tuple[str, float, float] = ("", 0.0, 0.0)) -> None:
        """A pull ended: a replica here (Stored, with its source and times) or Failed."""

    def copy_lost(self, object_id: str, error: Exception) -> None:
        """A copy here that a peer asked for is gone for good (its spill file was lost)."""


class Transfers:
    """This node's side of transfers: serving its objects and pulling others'."""

    def __init__(self, node_id: str, host: str, store: ObjectStore, ctx: zmq.Context,
                 serve_address: str, owner: PullOwner,
                 frames: Frames | None = None,
                 streaming: Callable[[bool], None] = lambda on: None) -> None:
        self.node = node_id
        self.host = host
        self.store = store
        self.ctx = ctx
        self.owner = owner                        # told how pulls end, and of lost copies
        self.frames = frames or PlainFrames()     # sealed when the cluster has a key
        self.streaming = streaming                # told when chunks start and stop flowing
        self.server = ctx.socket(zmq.ROUTER)
        if self.frames.sealed:
            self.server.setsockopt(zmq.MAXMSGSIZE, REQUEST_MAX_BYTES)
        self.server.setsockopt(zmq.SNDHWM, 0)     # a ROUTER drops frames past its HWM
        self.server.setsockopt(zmq.LINGER, 0)
        self.server.bind(serve_address)
        # Over TCP, large runs go over TCP streams of their own (wire/stream.py).
        endpoint = self.server.getsockopt_string(zmq.LAST_ENDPOINT)
        tcp = endpoint.startswith("tcp://")
        self.streams = StreamServer(p.host_of(endpoint)) if tcp else None
        self.receiver = Receiver(PREFAULT_BYTES) if tcp else None
        self.streamed: dict[Piece, Link] = {}     # runs arriving over streams, and links
        self.peers: dict[str, p.NodeInfo] = {}
        self.links: dict[Link, zmq.Socket] = {}
        self.arenas: dict[str, Arena] = {}
        self.pulls: dict[str, Pull] = {}          # object -> its pull in progress
        self.order: dict[Link, deque[Piece]] = {}   # link -> runs, in request order
        self.serving: dict[tuple[bytes, int], Serving] = {}   # (peer, request) -> its serve
        self.bulk: set[object] = set()            # pulls and serves streaming chunks now
        self.sends: list[Serve] = []              # sealed runs with chunks left to send
        self.forged = 0                           # requests dropped unauthenticated
        self.requests = 0

    # -- pulling -----------------------------------------------------------------------------

    def fetch(self, object_id: str, value: p.Stored) -> None:
        """Start pulling ``object_id`` from ``value.node`` (once, however often asked)."""
        if object_id in self.pulls:
            return
        source = value.node
        if source not in self.peers:
            self.fail(object_id, f"{source} is not in the cluster")
            return
        self.requests += 1
        same_host = self.peers[source].host == self.host
        runs = [(0, value.nbytes)] if same_host else spans(value.nbytes)
        pull = Pull(self.requests, object_id, source, value.nbytes, len(runs), began=time.time())
        self.pulls[object_id] = pull
        stream = self.receiver is not None and not same_host and \
            value.nbytes >= STREAM_MIN_BYTES and self.peers[source].address.startswith("tcp://")
        if not same_host and not stream:
            self.chunks_flow(object_id, True)
        for number, (start, stop) in enumerate(runs):
            link = (source, number)
            fetch = self.frames.message(p.Fetch(pull.request, object_id, same_host, start,
                                                stop, stream, self.node), REQUEST)
            piece = Piece(pull, start, stop, ticket=self.frames.ticket(fetch))
            self.order.setdefault(link, deque()).append(piece)
            self.link(link).send(fetch)

    def link(self, link: Link) -> zmq.Socket:
        sock = self.links.get(link)
        if sock is None:
            sock = self.links[link] = self.ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.RCVHWM, LINK_BUFFER_CHUNKS)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(self.peers[link[0]].address)
        return sock

    def on_link(self, link: Link) -> None:
        """Frames from a peer we pull from: headers, then the chunks that follow them."""
        sock = self.links[link]
        while link in self.links and sock.poll(0):
            queue = self.order.get(link)
            piece = queue[0] if queue else None
            if piece is None:
                sock.recv()                     # nothing asked for: dropped unread
            elif piece.receiving:
                self.receive_chunk(link, piece)
            else:
                self.read_header(link, piece)

    def read_header(self, link: Link, piece: Piece) -> None:
        """The next frame of ``link`` is ``piece``'s header: opened, decoded, then handled;
        one that fails either breaks the link (nothing after it can be read in step)."""
        data = reply_data(piece.ticket, piece.pull.object_id, -1)
        try:
            header = self.frames.read(self.links[link].recv(), data)
        except (ForgedFrame, p.MalformedMessage) as error:
            self.break_link(link, f"{link[0]} sent a header that failed authentication or "
                                  f"decoding ({error})")
            return
        if not isinstance(header, p.FetchHeader) or header.request != piece.pull.request:
            self.break_link(link, f"{link[0]} sent {type(header).__name__} out of turn")
            return
        self.on_header(link, header)

    def break_link(self, link: Link, reason: str) -> None:
        """Fail every run queued on ``link`` (ObjectLostError: ``reason``), tell the holder
        each is done so that it unpins, and close the link; the next pull opens a new one."""
        log.warning("%s: %s; the link closes", self.node, reason)
        sock = self.links.pop(link)
        streamed = [piece for piece, on in self.streamed.items() if on == link]
        for piece in streamed:
            assert self.receiver is not None
            self.receiver.abort(piece)
            del self.streamed[piece]
        for piece in [*streamed, *self.order.pop(link, ())]:
            sock.send(self.frames.message(p.FetchDone(piece.pull.request), REQUEST))
            error = pickle.dumps(ObjectLostError(piece.pull.object_id, reason))
            self.count_down(piece.pull, error)
        sock.close(linger=1000)

    def on_header(self, link: Link, header: p.FetchHeader) -> None:
        piece = self.order[link][0]
        pull = piece.pull
        assert pull.request == header.request, (pull, header)
        if header.error is not None:
            self.end_piece(link, piece, header.error, answered=False)
            return
        if header.nbytes != pull.nbytes and pull.error is None:
            pull.error = pickle.dumps(ObjectLostError(pull.object_id, (
                f"{link[0]} sent {header.nbytes} bytes, not the {pull.nbytes} recorded")))
        if not pull.allocated and pull.error is None:
            self.allocate(pull)
        piece.stop = min(piece.stop, header.nbytes)
        piece.at = piece.start
        if header.port and pull.error is None:       # over a stream, read by a thread
            self.order[link].popleft()
            self.receive_stream(link, piece, header)
            return
        if header.port:                 # failed here: the holder withdraws the offer
            piece.at = piece.stop
        if header.offset is not None or header.path:   # same host: no chunks
            if pull.error is None:
                killpoints.reached("mid-transfer", self.node, pull.object_id)
                self.copy_same_host(link[0], pull, header)
            piece.at = piece.stop
        if not piece.receiving:
            self.end_piece(link, piece)

    def copy_same_host(self, holder: str, pull: Pull, header: p.FetchHeader) -> None:
        """Copy the object from the holder's arena, which this node maps, or from its
        spill file (``header.path``: the holder's store cannot hold it), checked first."""
        if header.path:
            try:                                  # (the holder checked its CRCs just now)
                source = mapped(pull.object_id, SpillRecord(header.path, header.nbytes,
                                                            header.crc), checked=False)
            except PlaitError as error:           # its file gone since
                pull.error = pickle.dumps(error)
                return
        else:
            assert header.offset is not None
            source = self.arena_of(holder).block(header.offset, header.nbytes)
        self.prefault(pull, 0, header.nbytes)
        copy_bytes(self.target(pull, 0, header.nbytes), source)

    def target(self, pull: Pull, at: int, nbytes: int) -> memoryview:
        """Bytes [at, at + nbytes) of the pull's replica: in the arena, or in its file."""
        if pull.disk is not None:
            return pull.disk.view[at:at + nbytes]
        return self.store.arena.block(pull.offset + at, nbytes)

    def prefault(self, pull: Pull, at: int, nbytes: int) -> None:
        if pull.disk is None:                          # (a file's blocks are reserved)
            self.store.arena.prefault(pull.offset + at, nbytes)

    def receive_stream(self, link: Link, piece: Piece, header: p.FetchHeader) -> None:
        """Read ``piece``'s run from the holder's stream server into the replica block, on
        a thread of its own (``on_streams`` hears when it ends)."""
        assert self.receiver is not None
        pull = piece.pull

        def prefault(at: int, nbytes: int) -> None:
            self.prefault(pull, piece.start + at, nbytes)

        def first_bytes() -> None:
            killpoints.reached("mid-transfer", self.node, pull.object_id)

        target = self.target(pull, piece.start, piece.stop - piece.start)
        self.streamed[piece] = link
        receive = Receive(piece, target, prefault, first_bytes,
                          opening(self.frames, piece.ticket, pull.object_id, piece.start), CHUNK)
        self.receiver.start(receive, p.host_of(self.peers[link[0]].address), header.port,
                            header.token)

    def on_streams(self) -> None:
        """Runs read over streams ended: each pull counts down as a run over frames does."""
        assert self.receiver is not None
        for receive in self.receiver.ended():
            piece = receive.key
            assert isinstance(piece, Piece)
            link = self.streamed.pop(piece)
            if link in self.links:
                self.links[link].send(self.frames.message(p.FetchDone(piece.pull.request),
                                                          REQUEST))
            error = None if receive.error is None else pickle.dumps(
                ObjectLostError(piece.pull.object_id, f"from {link[0]}: {receive.error}"))
            self.count_down(piece.pull, error)

    def allocate(self, pull: Pull) -> None:
        """The replica's block, or, larger than the whole store, its file in the spill
        directory (as Ray copies such an object through its disk); else the pull's error."""
        created_by = f"copy from {pull.source}"
        try:
            if self.store.too_large(pull.nbytes) and self.store.spiller is not None:
                path = self.store.allocate_on_disk(pull.object_id, pull.nbytes, created_by)
                try:
                    pull.disk = DiskBlock(pull.object_id, path, pull.nbytes)
                except MemoryError:
                    self.store.delete(pull.object_id)
                    raise
            else:
                pull.offset = self.store.allocate(pull.object_id, pull.nbytes, created_by,
                                                  replica=True)
        except MemoryError as error:
            pull.error = pickle.dumps(error)

    def receive_chunk(self, link: Link, piece: Piece) -> None:
        """The run's next chunk, straight into the replica block (dropped if the pull
        failed: the stream must still be read up to the next header)."""
        sock = self.links[link]
        pull = piece.pull
        size = min(CHUNK, piece.stop - piece.at)
        if pull.error is None:
            if (piece.at - piece.start) % PREFAULT_BYTES == 0:
                self.prefault(pull, piece.at, min(PREFAULT_BYTES, piece.stop - piece.at))
            data = reply_data(piece.ticket, pull.object_id, piece.at)
            try:
                self.frames.receive_chunk(sock, self.target(pull, piece.at, size), data)
            except ForgedFrame as error:
                log.warning("%s: a chunk of %s from %s failed authentication", self.node,
                            pull.object_id, link[0])
                pull.error = pickle.dumps(ObjectLostError(pull.object_id, (
                    f"{link[0]} sent a chunk that failed authentication ({error})")))
        else:
            sock.recv(copy=False)
        if piece.at == 0:
            killpoints.reached("mid-transfer", self.node, pull.object_id)
        piece.at += size
        if not piece.receiving:
            self.end_piece(link, piece)

    def end_piece(self, link: Link, piece: Piece, error: bytes | None = None,
                  answered: bool = True) -> None:
        """A stream's run is in (or was refused: ``error``); the pull ends with its last."""
        self.order[link].popleft()
        pull = piece.pull
        if answered:
            self.links[link].send(self.frames.message(p.FetchDone(pull.request), REQUEST))
        self.count_down(pull, error)

    def count_down(self, pull: Pull, error: bytes | None) -> None:
        """One of ``pull``'s runs ended (``error``: failed); the pull ends with its last."""
        if pull.error is None:
            pull.error = error
        pull.pieces -= 1
        if pull.pieces == 0:
            self.finish(pull)

    def finish(self, pull: Pull) -> None:
        del self.pulls[pull.object_id]
        self.chunks_flow(pull.object_id, False)
        crc = pull.disk.crcs() if pull.disk is not None and pull.error is None else ()
        if pull.error is not None:
            self.drop_replica(pull)
            self.owner.pulled(pull.object_id, p.Failed(pull.error))
            return
        if pull.disk is not None:
            pull.disk.close()
        self.store.seal(pull.object_id, crc)
        self.owner.pulled(pull.object_id, p.Stored(self.node, pull.nbytes),
                          (pull.source, pull.began, time.time()))

    def drop_replica(self, pull: Pull) -> None:
        """A pull that failed, or whose holder died: its block, or its file, goes."""
        if pull.disk is not None:
            pull.disk.close()
        if pull.allocated:
            self.store.delete(pull.object_id)

    def chunks_flow(self, key: object, flowing: bool) -> None:
        """Track the pulls and serves streaming chunks (``key``), and tell ``streaming``
        when the first starts and the last ends."""
        was = bool(self.bulk)
        (self.bulk.add if flowing else self.bulk.discard)(key)
        if was != bool(self.bulk):
            self.streaming(not was)

    def arena_of(self, node: str) -> Arena:
        if node not in self.arenas:
            self.arenas[node] = Arena.attach(self.peers[node].arena)
        return self.arenas[node]

    def fail(self, object_id: str, reason: str) -> None:
        self.owner.pulled(object_id, p.Failed(pickle.dumps(ObjectLostError(object_id, reason))))

    def lost(self, node: str) -> list[str]:
        """A peer died: drop its links and half-done pulls (returns their objects), and
        end what we served it, as its FetchDone would have (it will send none)."""
        self.peers.pop(node, None)
        ended = {key for key, serving in self.serving.items() if serving.puller == node}
        for identity, request in ended:
            self.end_serve(identity, request)
        self.sends = [s for s in self.sends if (s.identity, s.header.request) not in ended]
        aborted: dict[str, Pull] = {}
        for link in [link for link in self.order if link[0] == node]:
            for piece in self.order.pop(link):
                aborted[piece.pull.object_id] = piece.pull
        for piece in [piece for piece, link in self.streamed.items() if link[0] == node]:
            assert self.receiver is not None
            self.receiver.abort(piece)            # before its block goes
            del self.streamed[piece]
            aborted[piece.pull.object_id] = piece.pull
        for oid, pull in aborted.items():
            del self.pulls[oid]
            self.chunks_flow(oid, False)
            self.drop_replica(pull)
        for link in [link for link in self.links if link[0] == node]:
            self.links.pop(link).close(linger=0)
        arena = self.arenas.pop(node, None)
        if arena is not None:
            try:
                arena.close()
            except BufferError:
                pass
        return list(aborted)

    # -- serving -----------------------------------------------------------------------------

    def on_server(self) -> None:
        while self.server.poll(0):
            frames = self.server.recv_multipart()
            try:
                identity, frame = frames
                message = self.frames.read_request(frame)
            except ForgedFrame as error:
                self.refuse_forged(error)
                continue
            except (ValueError, p.MalformedMessage):
                continue                  # not a transfer request: dropped, never answered
            handler = FROM_PEER.get(type(message))
            if handler is not None:       # (any other message is dropped too)
                handler(self, identity, self.frames.ticket(frame), message)

    def refuse_forged(self, error: ForgedFrame) -> None:
        """A request that failed authentication (or came again, or too late) is dropped
        unread and unanswered; logged the 1st, 2nd, 4th, 8th... time, so a flood cannot
        fill the log."""
        self.forged += 1
        if self.forged & (self.forged - 1) == 0:
            log.warning("%s: dropped a transfer request: %s (a peer without the cluster "
                        "key?); %d so far", self.node, error, self.forged)

    def on_FetchDone(self, identity: bytes, ticket: bytes, message: p.FetchDone) -> None:
        self.end_serve(identity, message.request)

    def end_serve(self, identity: bytes, request: int) -> None:
        """A Fetch is over (its puller said so, or died): its unused offer withdrawn, its
        pin let go."""
        serving = self.serving.pop((identity, request), None)
        if serving is None:
            return
        if serving.token is not None and self.streams is not None:
            self.streams.withdraw(serving.token)
        if serving.pinned:
            self.store.unpin(serving.object_id)
        self.chunks_flow((identity, request), False)

    def on_Fetch(self, identity: bytes, ticket: bytes, fetch: p.Fetch) -> None:
        """Serve a run of the object from the arena, pinned there, or, when the store has
        no room to bring it back (larger than the whole store, or the room pinned), from
        its spill file: mapped and checked, as Ray serves its fallback files."""
        oid = fetch.object_id
        held = oid in self.store.objects
        try:
            offset, record = self.pin_or_file(oid)
            source = None if fetch.same_host and record is None else \
                self.source(oid, offset, record)
        except Exception as error:           # not here (deleted), or lost from disk
            if isinstance(error, ObjectLostError) and self.store.on_disk(oid) is not None:
                self.store.delete(oid)       # its file is gone or altered: no copy here
            if held and oid not in self.store.objects:
                self.owner.copy_lost(oid, error)
            header = p.FetchHeader(fetch.request, oid, 0, error=pickle.dumps(error))
            self.answer(Serve(identity, ticket, header))
            return
        nbytes = self.store.nbytes(oid)
        serving = self.serving[(identity, fetch.request)] = Serving(
            oid, fetch.puller, file=None if record is None else (record, source))
        if fetch.same_host:          # the puller copies from our arena, or maps the file
            where: dict = {"offset": offset} if record is None else \
                {"path": record.path, "crc": record.crc}
            self.answer(Serve(identity, ticket, p.FetchHeader(fetch.request, oid, nbytes,
                                                              **where)))
            return
        assert source is not None
        stop = nbytes if fetch.stop is None else max(0, min(fetch.stop, nbytes))
        start = min(max(0, fetch.start), stop)
        if fetch.stream and self.streams is not None:
            token = self.streams.offer(source[start:stop],
                                       sealing(self.frames, ticket, oid, start, CHUNK), CHUNK)
            serving.token = token
            self.answer(Serve(identity, ticket, p.FetchHeader(
                fetch.request, oid, nbytes, port=self.streams.port, token=token)))
            return
        self.chunks_flow((identity, fetch.request), True)
        self.answer(Serve(identity, ticket, p.FetchHeader(fetch.request, oid, nbytes),
                          source, start, stop))

    def pin_or_file(self, object_id: str) -> tuple[int, SpillRecord | None]:
        """The object pinned in the arena (its offset), or, if the store has no room to
        bring it back, its spill file's record (no pin: the file never changes while the
        object lives, and a mapping outlives its deletion)."""
        try:
            return self.store.pin(object_id), None
        except MemoryError:
            record = self.store.on_disk(object_id)
            if record is None:
                raise
            return -1, record

    def source(self, object_id: str, offset: int, record: SpillRecord | None) -> memoryview:
        """What a run is served from: the pinned block, or the spill file, mapped once its
        CRCs are checked here, where a file found gone or altered is dropped and the head
        told (it rebuilds the object from its lineage, as when a restore finds it so). The
        check reads the whole file in this loop (once while any serve of it lasts: a pull
        over two streams asks twice): objects larger than a store are rare, and a copy on
        one host takes this loop as long; a puller on this host then maps the file
        unchecked."""
        if record is None:
            return self.store.arena.block(offset, self.store.nbytes(object_id))
        for serving in self.serving.values():    # another stream's run of it: checked once
            if serving.object_id == object_id and serving.file and serving.file[0] == record:
                return serving.file[1]
        return mapped(object_id, record)

    def answer(self, serve: Serve) -> None:
        """Send a header and its run: plain, at once (the chunks zero-copy from the arena);
        sealed, after whatever this peer's connection still has to send (``pump``)."""
        if self.frames.sealed:
            self.sends.append(serve)
            self.pump()
            return
        self.server.send_multipart([serve.identity, p.encode(serve.header)])
        for start in chunks(serve.at, serve.stop):
            chunk = serve.block[start:min(start + CHUNK, serve.stop)]
            self.server.send_multipart([serve.identity, chunk], copy=False)

    def send_sealed(self, serve: Serve) -> bool:
        """Seal and send ``serve``'s header, then what the window allows of its run; True
        once all is sent."""
        sealer = self.frames
        assert isinstance(sealer, SealedFrames)
        if not serve.header_sent:
            data = reply_data(serve.ticket, serve.header.object_id, -1)
            self.server.send_multipart([serve.identity, sealer.message(serve.header, data)])
            serve.header_sent = True
        while serve.at < serve.stop:
            buffer = serve.buffer()
            if buffer is None:
                return False
            end = min(serve.at + CHUNK, serve.stop)
            frame = sealer.seal_chunk(buffer, serve.block[serve.at:end],
                                      reply_data(serve.ticket, serve.header.object_id,
                                                 serve.at))
            tracker = self.server.send_multipart([serve.identity, frame], copy=False,
                                                 track=True)
            serve.flight.append((tracker, buffer))
            serve.at = end
        return True

    def pump(self) -> None:
        """Go on with the sealed answers, each peer's in the order asked (its frames must
        not interleave); the node's loop calls this each turn, every PUMP_MS while
        ``sends`` has any."""
        waiting: set[bytes] = set()
        left = []
        for serve in self.sends:
            if serve.identity in waiting or not self.send_sealed(serve):
                waiting.add(serve.identity)
                left.append(serve)
        self.sends = left

    def sockets(self) -> list[zmq.Socket]:
        return [self.server, *self.links.values()]

    def close(self) -> None:
        self.sends.clear()                  # their views of the arena go with them
        if self.streams is not None:
            self.streams.close()
        if self.receiver is not None:
            self.receiver.close()
        for sock in [self.server, *self.links.values()]:
            sock.close(linger=0)
        for arena in self.arenas.values():
            try:
                arena.close()
            except BufferError:
                pass


FROM_PEER = handlers(Transfers, "on_")   # Fetch -> Transfers.on_Fetch, ... (wire/dispatch.py)
