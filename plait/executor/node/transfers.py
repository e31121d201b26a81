"""Transfers: copying an object from a peer node's store into this node's store.

Pull protocol (B pulls object X from A; B's DEALERs talk to A's transfer ROUTER)::

    B --Fetch(X, same_host, start, stop)--> A     A pins X (restoring it if spilled)
    same host:   A --FetchHeader(offset)--> B   B copies from A's arena, which it maps
    other host:  A --FetchHeader(nbytes), then raw chunks of [start, stop), sent zero-copy
                 from A's arena--> B   B receives each chunk straight into its own block
    B --FetchDone--> A                    A unpins X (once per Fetch)

Across hosts a large object comes over several streams (plait.executor.wire.fetch: which
runs, how many streams, the chunk size and the figures behind them): one DEALER per (peer,
stream), each sent one Fetch per pull for its run. One connection per stream keeps its
frames in order, so B knows that the frames after a header are that run's chunks. A pull
ends when every stream's run has (``Piece``): stored and sealed, or, if any header carried
an error or the block could not be allocated, failed, the other runs' chunks drained and
dropped so that the streams stay in step. Concurrent requests for one object on one node
share one transfer. The copy becomes a replica in B's store.

The ``mid-transfer`` kill point is on the receiving side (B), in both paths: B has
allocated its unsealed replica block and, across hosts, received the first chunk. B's
death there is what a transfer must survive: A is left with a pinned object and a
half-served request, the head with a task to place elsewhere.
"""

from __future__ import annotations

import pickle
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import zmq

from plait.executor.wire import killpoints
from plait.executor.wire import protocol as p
from plait.executor.wire.dispatch import handlers
from plait.executor.wire.fetch import CHUNK, chunks, spans
from plait.store.arena import Arena
from plait.store.serialization import copy_bytes
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


@dataclass
class Piece:
    """One stream's run [start, stop) of a pull."""

    pull: Pull
    start: int
    stop: int
    at: int = -1                # the next byte to receive; -1 until the run's header came

    @property
    def receiving(self) -> bool:
        return 0 <= self.at < self.stop


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
                 socket_setup: Callable[[zmq.Socket, bool], None] = lambda s, server: None,
                 streaming: Callable[[bool], None] = lambda on: None) -> None:
        self.node = node_id
        self.host = host
        self.store = store
        self.ctx = ctx
        self.owner = owner                        # told how pulls end, and of lost copies
        self.setup = socket_setup                 # CurveZMQ keys, when the cluster has one
        self.streaming = streaming                # told when chunks start and stop flowing
        self.server = ctx.socket(zmq.ROUTER)
        self.setup(self.server, True)
        self.server.setsockopt(zmq.SNDHWM, 0)     # a ROUTER drops frames past its HWM
        self.server.setsockopt(zmq.LINGER, 0)
        self.server.bind(serve_address)
        self.peers: dict[str, p.NodeInfo] = {}
        self.links: dict[Link, zmq.Socket] = {}
        self.arenas: dict[str, Arena] = {}
        self.pulls: dict[str, Pull] = {}          # object -> its pull in progress
        self.order: dict[Link, deque[Piece]] = {}   # link -> runs, in request order
        self.serving: dict[tuple[bytes, int], str] = {}   # (peer, request) -> pinned object
        self.bulk: set[object] = set()            # pulls and serves streaming chunks now
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
        if not same_host:
            self.chunks_flow(object_id, True)
        for stream, (start, stop) in enumerate(runs):
            link = (source, stream)
            self.order.setdefault(link, deque()).append(Piece(pull, start, stop))
            fetch = p.Fetch(pull.request, object_id, same_host, start, stop)
            self.link(link).send(p.encode(fetch))

    def link(self, link: Link) -> zmq.Socket:
        sock = self.links.get(link)
        if sock is None:
            sock = self.links[link] = self.ctx.socket(zmq.DEALER)
            self.setup(sock, False)
            sock.setsockopt(zmq.RCVHWM, LINK_BUFFER_CHUNKS)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(self.peers[link[0]].address)
        return sock

    def on_link(self, link: Link) -> None:
        """Frames from a peer we pull from: headers, then the chunks that follow them."""
        sock = self.links[link]
        while sock.poll(0):
            queue = self.order.get(link)
            piece = queue[0] if queue else None
            if piece is not None and piece.receiving:
                self.receive_chunk(link, piece)
            else:
                self.on_header(link, p.decode(sock.recv()))

    def on_header(self, link: Link, header: p.FetchHeader) -> None:
        piece = self.order[link][0]
        pull = piece.pull
        assert pull.request == header.request, (pull, header)
        if header.error is not None:
            self.end_piece(link, piece, header.error, answered=False)
            return
        if header.nbytes != pull.nbytes and pull.error is None:
            from plait.errors import ObjectLostError

            pull.error = pickle.dumps(ObjectLostError(pull.object_id, (
                f"{link[0]} sent {header.nbytes} bytes, not the {pull.nbytes} recorded")))
        if pull.offset < 0 and pull.error is None:
            self.allocate(pull)
        piece.stop = min(piece.stop, header.nbytes)
        piece.at = piece.start
        if header.offset is not None:                  # same host: arena to arena, no chunks
            if pull.error is None:
                killpoints.reached("mid-transfer", self.node, pull.object_id)
                source = self.arena_of(link[0]).block(header.offset, header.nbytes)
                self.store.arena.prefault(pull.offset, header.nbytes)
                copy_bytes(self.store.arena.block(pull.offset, header.nbytes), source)
            piece.at = piece.stop
        if not piece.receiving:
            self.end_piece(link, piece)

    def allocate(self, pull: Pull) -> None:
        """The replica's block, or the pull's error."""
        try:
            pull.offset = self.store.allocate(pull.object_id, pull.nbytes,
                                              f"copy from {pull.source}", replica=True)
        except MemoryError as error:
            pull.error = pickle.dumps(error)

    def receive_chunk(self, link: Link, piece: Piece) -> None:
        """The run's next chunk, straight into the replica block (dropped if the pull
        failed: the stream must still be read up to the next header)."""
        sock = self.links[link]
        pull = piece.pull
        size = min(CHUNK, piece.stop - piece.at)
        if pull.error is None:
            target = pull.offset + piece.at
            if (piece.at - piece.start) % PREFAULT_BYTES == 0:
                self.store.arena.prefault(target, min(PREFAULT_BYTES, piece.stop - piece.at))
            sock.recv_into(self.store.arena.block(target, size))
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
            self.links[link].send(p.encode(p.FetchDone(pull.request)))
        if pull.error is None:
            pull.error = error
        pull.pieces -= 1
        if pull.pieces == 0:
            self.finish(pull)

    def finish(self, pull: Pull) -> None:
        del self.pulls[pull.object_id]
        self.chunks_flow(pull.object_id, False)
        if pull.error is not None:
            if pull.offset >= 0:
                self.store.delete(pull.object_id)
            self.owner.pulled(pull.object_id, p.Failed(pull.error))
            return
        self.store.seal(pull.object_id)
        self.owner.pulled(pull.object_id, p.Stored(self.node, pull.nbytes),
                          (pull.source, pull.began, time.time()))

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
        from plait.errors import ObjectLostError

        self.owner.pulled(object_id, p.Failed(pickle.dumps(ObjectLostError(object_id, reason))))

    def lost(self, node: str) -> list[str]:
        """A peer died: drop its links and half-done pulls; returns their objects."""
        self.peers.pop(node, None)
        aborted: dict[str, Pull] = {}
        for link in [link for link in self.order if link[0] == node]:
            for piece in self.order.pop(link):
                aborted[piece.pull.object_id] = piece.pull
        for oid, pull in aborted.items():
            del self.pulls[oid]
            self.chunks_flow(oid, False)
            if pull.offset >= 0:
                self.store.delete(oid)
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
                message = p.decode(frame)
            except (ValueError, p.MalformedMessage):
                continue                  # not a transfer request: dropped, never answered
            handler = FROM_PEER.get(type(message))
            if handler is not None:       # (any other message is dropped too)
                handler(self, identity, message)

    def on_FetchDone(self, identity: bytes, message: p.FetchDone) -> None:
        oid = self.serving.pop((identity, message.request), None)
        if oid is not None:
            self.store.unpin(oid)
            self.chunks_flow((identity, message.request), False)

    def on_Fetch(self, identity: bytes, fetch: p.Fetch) -> None:
        oid = fetch.object_id
        held = oid in self.store.objects
        try:
            offset = self.store.pin(oid)
        except Exception as error:           # not here (deleted), or lost from disk
            if held and oid not in self.store.objects:
                self.owner.copy_lost(oid, error)
            header = p.FetchHeader(fetch.request, oid, 0, error=pickle.dumps(error))
            self.server.send_multipart([identity, p.encode(header)])
            return
        nbytes = self.store.nbytes(oid)
        self.serving[(identity, fetch.request)] = oid
        if fetch.same_host:
            header = p.FetchHeader(fetch.request, oid, nbytes, offset=offset)
            self.server.send_multipart([identity, p.encode(header)])
            return
        self.chunks_flow((identity, fetch.request), True)
        self.server.send_multipart([identity, p.encode(p.FetchHeader(fetch.request, oid, nbytes))])
        block = self.store.arena.block(offset, nbytes)
        stop = nbytes if fetch.stop is None else max(0, min(fetch.stop, nbytes))
        for start in chunks(min(max(0, fetch.start), stop), stop):
            self.server.send_multipart([identity, block[start:min(start + CHUNK, stop)]],
                                       copy=False)

    def sockets(self) -> list[zmq.Socket]:
        return [self.server, *self.links.values()]

    def close(self) -> None:
        for sock in [self.server, *self.links.values()]:
            sock.close(linger=0)
        for arena in self.arenas.values():
            try:
                arena.close()
            except BufferError:
                pass


FROM_PEER = handlers(Transfers, "on_")   # Fetch -> Transfers.on_Fetch, ... (wire/dispatch.py)
