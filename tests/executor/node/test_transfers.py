"""Transfers between two nodes on different hosts, without processes: two real Transfers
over inproc sockets (a context with the node's I/O threads), each told the other is on
another host, so objects come as chunks over the streams the pull opens. Every test runs
with plain frames and with frames sealed under a bulk key (a keyed cluster's, wire/bulk.py)."""

from __future__ import annotations

import os
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import zmq

from plait.errors import ObjectLostError
from plait.executor.driver.reading import ObjectReading
from plait.executor.node.transfers import Transfers
from plait.executor.wire import protocol as p
from plait.executor.wire.bulk import (OVERHEAD, REQUEST, Frames, PlainFrames, SealedFrames,
                                      reply_data)
from plait.executor.wire.fetch import CHUNK, IO_THREADS, STREAM_MIN_BYTES, STREAMS
from plait.store.arena import Arena
from plait.store.store import ObjectStore
from tests.executor.wire.test_fetch import serve

MIB = 1 << 20
STEP_SECONDS = 10.0          # the longest a pull may take here before the test fails
BIG = 2 * STREAM_MIN_BYTES + 5          # split over the streams, the last chunk short


@dataclass
class Owner:
    """What a Transfers tells its node: how pulls ended, and when chunks flow."""

    ended: dict[str, p.ObjectValue] = field(default_factory=dict)
    flowing: list[bool] = field(default_factory=list)

    def pulled(self, object_id: str, value: p.ObjectValue, record: tuple = ()) -> None:
        self.ended[object_id] = value

    def copy_lost(self, object_id: str, error: Exception) -> None:
        raise AssertionError(f"no copy should be lost here: {object_id} {error}")


@dataclass
class Side:
    transfers: Transfers
    owner: Owner
    arena: Arena


KEY = bytes(range(32))


@pytest.fixture(params=["plain", "sealed"])
def sides(request) -> Iterator[dict[str, Side]]:
    """node-a (holds objects, 128 MiB) and node-b (pulls them, 48 MiB), on two hosts."""
    yield from two_nodes(PlainFrames if request.param == "plain" else lambda: SealedFrames(KEY))


@pytest.fixture
def sealed() -> Iterator[dict[str, Side]]:
    """The two nodes of a keyed cluster."""
    yield from two_nodes(lambda: SealedFrames(KEY))


@pytest.fixture(params=["plain", "sealed"])
def over_tcp(request) -> Iterator[dict[str, Side]]:
    """The two nodes of a cluster over TCP: large runs come over TCP streams of their own
    (wire/stream.py), read by threads into the replica block; sealed in a keyed cluster."""
    yield from two_nodes(PlainFrames if request.param == "plain" else lambda: SealedFrames(KEY),
                         "tcp://127.0.0.1:*")


@pytest.fixture
def sealed_over_tcp() -> Iterator[dict[str, Side]]:
    """The two nodes of a keyed cluster over TCP."""
    yield from two_nodes(lambda: SealedFrames(KEY), "tcp://127.0.0.1:*")


def two_nodes(make_frames: Callable[[], Frames], address: str = "") -> Iterator[dict[str, Side]]:
    ctx = zmq.Context(io_threads=IO_THREADS)
    made: dict[str, Side] = {}
    for name, capacity in (("node-a", 128 * MIB), ("node-b", 48 * MIB)):
        arena = Arena.create(f"plait-test-{os.getpid()}-{name}", capacity)
        owner = Owner()
        frames = make_frames()
        transfers = Transfers(name, f"host-{name}", ObjectStore(name, arena, None), ctx,
                              address or f"inproc://{os.getpid()}-{name}", owner, frames,
                              streaming=owner.flowing.append)
        made[name] = Side(transfers, owner, arena)
    infos = {name: p.NodeInfo(name, side.transfers.server.getsockopt_string(zmq.LAST_ENDPOINT),
                              os.getpid(), False, 0, side.arena.name, side.arena.capacity,
                              f"host-{name}")
             for name, side in made.items()}
    for side in made.values():
        side.transfers.peers = dict(infos)
    yield made
    for side in made.values():
        side.transfers.close()
        side.arena.unlink()
        try:
            side.arena.close()
        except BufferError:
            pass
    ctx.destroy(linger=0)


def hold(side: Side, object_id: str, data: bytes) -> p.Stored:
    store = side.transfers.store
    offset = store.allocate(object_id, len(data), "test")
    store.arena.block(offset, len(data))[:] = data
    store.seal(object_id)
    return p.Stored(store.node, len(data))


def content(nbytes: int, seed: int) -> bytes:
    return bytes((seed + i * 7) % 251 for i in range(251)) * (nbytes // 251) + \
        bytes(nbytes % 251)


def pump(sides: dict[str, Side], until: Callable[[], bool]) -> None:
    """Run both nodes' transfer loops until ``until()``, failing after STEP_SECONDS."""
    deadline = time.monotonic() + STEP_SECONDS
    while not until():
        assert time.monotonic() < deadline, "the transfer made no progress"
        socks = {}
        for side in sides.values():
            socks[side.transfers.server] = (side.transfers.on_server, ())
            if side.transfers.receiver is not None:
                socks[side.transfers.receiver.fd] = (side.transfers.on_streams, ())
            for link, sock in side.transfers.links.items():
                socks[sock] = (side.transfers.on_link, (link,))
        poller = zmq.Poller()
        for sock in socks:
            poller.register(sock, zmq.POLLIN)
        sending = any(side.transfers.sends for side in sides.values())
        for sock, _ in poller.poll(1 if sending else 100):
            handler, args = socks[sock]
            handler(*args)
        for side in sides.values():
            side.transfers.pump()


def read(side: Side, object_id: str) -> bytes:
    store = side.transfers.store
    offset = store.pin(object_id)
    try:
        return bytes(store.arena.block(offset, store.nbytes(object_id)))
    finally:
        store.unpin(object_id)


def test_a_large_object_from_another_host_comes_over_several_streams_intact(sides):
    a, b = sides["node-a"], sides["node-b"]
    data = content(BIG, 1)
    b.transfers.fetch("x", hold(a, "x", data))
    pump(sides, lambda: "x" in b.owner.ended and not a.transfers.serving)
    assert b.owner.ended["x"] == p.Stored("node-b", BIG)
    assert read(b, "x") == data
    assert sorted(b.transfers.links) == [("node-a", k) for k in range(STREAMS)]
    assert a.transfers.store.objects["x"].pins == 0        # each stream's pin given back
    assert a.owner.flowing == [True, False] and b.owner.flowing == [True, False]


def test_a_small_object_comes_over_one_stream(sides):
    a, b = sides["node-a"], sides["node-b"]
    data = content(3 * CHUNK + 1, 2)
    b.transfers.fetch("small", hold(a, "small", data))
    pump(sides, lambda: "small" in b.owner.ended)
    assert read(b, "small") == data
    assert list(b.transfers.links) == [("node-a", 0)]


def test_an_object_its_holder_lost_fails_the_pull_with_object_lost(sides):
    b = sides["node-b"]
    b.transfers.fetch("gone", p.Stored("node-a", BIG))
    pump(sides, lambda: "gone" in b.owner.ended)
    error = pickle.loads(b.owner.ended["gone"].error)
    assert isinstance(error, ObjectLostError) and error.object_id == "gone"
    assert "gone" not in b.transfers.store.objects and not b.transfers.pulls


def test_a_pull_that_finds_no_room_fails_and_the_streams_stay_in_step(sides):
    """The refused object's chunks still come on every stream: they are read and dropped,
    so the next pull over the same streams gets its own bytes."""
    a, b = sides["node-a"], sides["node-b"]
    too_big = hold(a, "too-big", content(64 * MIB, 3))
    b.transfers.fetch("too-big", too_big)
    data = content(BIG, 4)
    b.transfers.fetch("next", hold(a, "next", data))
    pump(sides, lambda: {"too-big", "next"} <= set(b.owner.ended))
    assert isinstance(pickle.loads(b.owner.ended["too-big"].error), MemoryError)
    assert "too-big" not in b.transfers.store.objects
    assert read(b, "next") == data
    pump(sides, lambda: not a.transfers.serving)
    assert a.transfers.store.objects["too-big"].pins == 0


def test_a_holder_lost_mid_pull_aborts_it_and_frees_the_block(sides):
    a, b = sides["node-a"], sides["node-b"]
    b.transfers.fetch("x", hold(a, "x", content(BIG, 5)))
    pump({"node-a": a}, lambda: len(a.transfers.serving) == STREAMS)
    link = ("node-a", 0)
    sock = b.transfers.links[link]
    assert sock.poll(STEP_SECONDS * 1000), "node-a sent no header"
    b.transfers.read_header(link, b.transfers.order[link][0])
    b.transfers.receive_chunk(link, b.transfers.order[link][0])     # one chunk in, then
    assert b.transfers.lost("node-a") == ["x"]                      # node-a is gone
    assert "x" not in b.transfers.store.objects and not b.transfers.pulls
    assert not b.transfers.links and b.owner.flowing == [True, False]
    assert "x" not in b.owner.ended          # the node asks the head where to find it now


def test_a_puller_lost_mid_pull_has_what_the_holder_pinned_for_it_let_go(sides):
    """node-b dies after asking for its runs and never sends FetchDone: when the head says
    it is lost, node-a unpins the object and drops what it still had to send it. Before,
    the pins stayed for good (benchmarks/transfer_chaos.py: objects pinned on holders after
    a puller's death, and ``serving`` never empty, so the node waited for room that no
    transfer would free)."""
    a, b = sides["node-a"], sides["node-b"]
    b.transfers.fetch("x", hold(a, "x", content(BIG, 16)))
    pump({"node-a": a}, lambda: len(a.transfers.serving) == STREAMS)
    assert a.transfers.store.objects["x"].pins == STREAMS
    assert a.transfers.lost("node-b") == []                         # node-b is gone
    assert a.transfers.store.objects["x"].pins == 0
    assert not a.transfers.serving and not a.transfers.sends and a.owner.flowing == [True, False]


def test_over_tcp_a_puller_lost_before_it_read_its_streams_has_its_offers_withdrawn(over_tcp):
    a, b = over_tcp["node-a"], over_tcp["node-b"]
    b.transfers.fetch("x", hold(a, "x", content(BIG, 17)))
    pump({"node-a": a}, lambda: len(a.transfers.serving) == STREAMS)
    assert len(a.transfers.streams.offers) == STREAMS               # offered, never taken
    assert a.transfers.lost("node-b") == []
    assert a.transfers.store.objects["x"].pins == 0
    assert not a.transfers.serving
    assert not a.transfers.streams.offers     # no token left that would get its bytes



# -- keyed clusters: every frame sealed ------------------------------------------------------

def test_a_sealed_chunk_changed_on_the_way_fails_the_pull_and_frees_the_block(sealed):
    """node-b pulls from a stand-in holder that flips a bit of one chunk: the pull fails
    with ObjectLostError (no replica of garbage), and the link stays in step for the next."""
    b = sealed["node-b"]
    ctx = b.transfers.ctx
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    address = f"inproc://{os.getpid()}-tampering"
    router.bind(address)
    b.transfers.peers["node-t"] = p.NodeInfo("node-t", address, os.getpid(), False, 0, "",
                                             0, "host-t")
    data = content(BIG, 6)
    holder = threading.Thread(target=serve, args=(router, b.transfers.frames, data,
                                                  STREAMS, None, 2))
    holder.start()
    try:
        b.transfers.fetch("x", p.Stored("node-t", BIG))
        pump({"node-b": b}, lambda: "x" in b.owner.ended)
    finally:
        holder.join()
        router.close(linger=0)
    error = pickle.loads(b.owner.ended["x"].error)
    assert isinstance(error, ObjectLostError) and "failed authentication" in str(error)
    assert "x" not in b.transfers.store.objects and not b.transfers.pulls


def test_a_request_without_the_key_is_dropped_unread_and_the_node_serves_on(sealed):
    """A plain ZeroMQ peer's Fetch, and one sealed under another key, get no answer, pin
    nothing; the same connection's keyed Fetch after them is answered first, and the same
    keyed Fetch replayed is not answered again."""
    a = sealed["node-a"]
    hold(a, "x", content(3 * CHUNK, 7))
    sock = a.transfers.ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"inproc://{os.getpid()}-node-a")
    ours, theirs = a.transfers.frames, SealedFrames(bytes(32))
    keyed = ours.message(p.Fetch(3, "x", False), REQUEST)
    try:
        sock.send(p.encode(p.Fetch(1, "x", False)))
        sock.send(theirs.message(p.Fetch(2, "x", False), REQUEST))
        sock.send(keyed)
        pump({"node-a": a}, lambda: sock.poll(0))
        header = ours.read(sock.recv(), reply_data(ours.ticket(keyed), "x", -1))
        assert isinstance(header, p.FetchHeader) and header.request == 3
        assert a.transfers.forged == 2
        assert [s.object_id for s in a.transfers.serving.values()] == ["x"]
        for _ in range(3):                                  # its chunks
            pump({"node-a": a}, lambda: sock.poll(0))
            sock.recv()
        again = ours.message(p.Fetch(4, "x", False), REQUEST)
        sock.send(keyed)                                    # replayed: refused
        sock.send(again)
        pump({"node-a": a}, lambda: sock.poll(0))
        header = ours.read(sock.recv(), reply_data(ours.ticket(again), "x", -1))
        assert header.request == 4 and a.transfers.forged == 3
    finally:
        sock.close(linger=0)


# -- unkeyed clusters over TCP: runs over plain TCP streams ----------------------------------

def test_over_tcp_a_large_object_comes_over_streams_read_by_threads(over_tcp):
    a, b = over_tcp["node-a"], over_tcp["node-b"]
    data = content(BIG, 8)
    b.transfers.fetch("x", hold(a, "x", data))
    pump(over_tcp, lambda: b.transfers.streamed)             # the runs' headers came
    pump(over_tcp, lambda: "x" in b.owner.ended and not a.transfers.serving)
    assert b.owner.ended["x"] == p.Stored("node-b", BIG)
    assert read(b, "x") == data
    assert a.transfers.store.objects["x"].pins == 0         # each run's pin given back
    assert not a.transfers.serving and not a.transfers.streams.offers
    assert not b.transfers.streamed and not b.transfers.receiver.running
    assert a.owner.flowing == [] and b.owner.flowing == []   # no chunk frames at all


def test_over_tcp_a_small_object_comes_as_frames(over_tcp):
    a, b = over_tcp["node-a"], over_tcp["node-b"]
    data = content(3 * CHUNK + 1, 9)
    b.transfers.fetch("small", hold(a, "small", data))
    pump(over_tcp, lambda: "small" in b.owner.ended)
    assert read(b, "small") == data
    assert b.owner.flowing == [True, False] and not a.transfers.streams.offers


def test_over_tcp_a_pull_with_no_room_withdraws_the_offers_and_the_next_pull_works(over_tcp):
    a, b = over_tcp["node-a"], over_tcp["node-b"]
    b.transfers.fetch("too-big", hold(a, "too-big", content(64 * MIB, 10)))
    data = content(BIG, 11)
    b.transfers.fetch("next", hold(a, "next", data))
    pump(over_tcp, lambda: {"too-big", "next"} <= set(b.owner.ended))
    assert isinstance(pickle.loads(b.owner.ended["too-big"].error), MemoryError)
    assert read(b, "next") == data
    pump(over_tcp, lambda: not a.transfers.serving)
    assert a.transfers.store.objects["too-big"].pins == 0
    assert not a.transfers.streams.offers          # no token left that a stranger could use


class StallingHolder:
    """A stand-in holder on TCP: answers one Fetch with a stream offer (the puller follows
    the header, whatever the object's size), then sends the first ``sent`` bytes of the
    run, as its frames would (sealed in a keyed cluster; with ``tamper``, the first chunk
    changed on the way), and stalls (or, with ``close``, hangs up)."""

    def __init__(self, ctx: zmq.Context, frames: Frames, data: bytes, sent: int,
                 close: bool, tamper: bool = False) -> None:
        import socket

        self.router = ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.bind("tcp://127.0.0.1:*")
        self.address = self.router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.frames, self.data, self.sent = frames, data, sent
        self.close_early, self.tamper = close, tamper
        self.stalled = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self.serve)
        self.thread.start()

    def serve(self) -> None:
        identity, frame = self.router.recv_multipart()
        fetch = self.frames.read_request(frame)
        ticket = self.frames.ticket(frame)
        header = p.FetchHeader(fetch.request, fetch.object_id, len(self.data),
                               port=self.listener.getsockname()[1], token=b"t" * 16)
        self.router.send_multipart([identity, self.frames.message(
            header, reply_data(ticket, fetch.object_id, -1))])
        self.listener.settimeout(STEP_SECONDS)
        conn, _ = self.listener.accept()
        with conn:
            conn.recv(16)
            for at in range(0, self.sent, CHUNK):
                chunk = memoryview(self.data)[at:at + CHUNK]
                if self.frames.sealed:
                    chunk = bytearray(self.frames.seal_chunk(
                        bytearray(CHUNK + OVERHEAD), chunk,
                        reply_data(ticket, fetch.object_id, at)))
                    if self.tamper:
                        chunk[-1] ^= 1
                try:
                    conn.sendall(chunk)
                except OSError:             # the puller hung up (a chunk it refused)
                    break
            self.stalled.set()
            if not self.close_early:
                self.release.wait(STEP_SECONDS)

    def stop(self) -> None:
        self.release.set()
        self.thread.join()
        self.router.close(linger=0)
        self.listener.close()


def stalling(side: Side, close: bool, tamper: bool = False) -> StallingHolder:
    holder = StallingHolder(side.transfers.ctx, side.transfers.frames, content(8 * MIB, 12),
                            3 * MIB, close, tamper)
    side.transfers.peers["node-t"] = p.NodeInfo("node-t", holder.address, os.getpid(), False,
                                                0, "", 0, "host-t")
    return holder


def test_over_tcp_a_holder_lost_mid_stream_aborts_the_pull_and_frees_the_block(over_tcp):
    """The node hears that the holder died while a thread still reads its run: the
    thread is cut and joined before the replica block goes (no write into freed room)."""
    b = over_tcp["node-b"]
    holder = stalling(b, close=False)
    try:
        b.transfers.fetch("x", p.Stored("node-t", 8 * MIB))
        pump({"node-b": b}, lambda: holder.stalled.is_set())
        assert b.transfers.streamed and b.transfers.receiver.running
        assert b.transfers.lost("node-t") == ["x"]
        assert not b.transfers.receiver.running and not b.transfers.streamed
        assert "x" not in b.transfers.store.objects and not b.transfers.pulls
        assert "x" not in b.owner.ended      # the node asks the head where to find it now
        assert not [t for t in threading.enumerate() if t.name == "plait-stream-recv"]
    finally:
        holder.stop()


def test_over_tcp_a_holder_that_hangs_up_mid_run_fails_the_pull_with_object_lost(over_tcp):
    b = over_tcp["node-b"]
    holder = stalling(b, close=True)
    try:
        b.transfers.fetch("x", p.Stored("node-t", 8 * MIB))
        pump({"node-b": b}, lambda: "x" in b.owner.ended)
    finally:
        holder.stop()
    error = pickle.loads(b.owner.ended["x"].error)
    assert isinstance(error, ObjectLostError)
    assert f"closed the stream after {3 * MIB} of {8 * MIB} bytes" in str(error)
    assert "x" not in b.transfers.store.objects and not b.transfers.pulls


def test_over_tcp_a_sealed_chunk_changed_on_the_stream_fails_the_pull(sealed_over_tcp):
    b = sealed_over_tcp["node-b"]
    holder = stalling(b, close=True, tamper=True)
    try:
        b.transfers.fetch("x", p.Stored("node-t", 8 * MIB))
        pump({"node-b": b}, lambda: "x" in b.owner.ended)
    finally:
        holder.stop()
    error = pickle.loads(b.owner.ended["x"].error)
    assert isinstance(error, ObjectLostError) and "failed authentication" in str(error)
    assert "x" not in b.transfers.store.objects and not b.transfers.pulls


def test_over_tcp_a_drivers_pull_comes_over_streams_intact(over_tcp):
    """A driver on another host (wire/fetch.py's pull_object) reads the runs over the
    holder's streams too, plain or sealed, and every pin and offer is given back."""
    from plait.executor.wire.fetch import pull_object

    a = over_tcp["node-a"]
    data = content(BIG, 13)
    hold(a, "x", data)
    offered = []
    offer = a.transfers.streams.offer
    a.transfers.streams.offer = lambda *args: offered.append(1) or offer(*args)
    frames = SealedFrames(KEY) if a.transfers.frames.sealed else PlainFrames()
    address = a.transfers.server.getsockopt_string(zmq.LAST_ENDPOINT)
    got: list = []
    driver = threading.Thread(target=lambda: got.append(pull_object(
        a.transfers.ctx, address, frames, "x", BIG, timeout=STEP_SECONDS)))
    driver.start()
    try:
        pump({"node-a": a}, lambda: not driver.is_alive() and not a.transfers.serving)
    finally:
        driver.join()
    assert got and got[0] == data
    assert len(offered) == STREAMS and not a.transfers.streams.offers
    assert a.transfers.store.objects["x"].pins == 0


class FarReader(ObjectReading):
    """A driver's reading half (driver/reading.py) on host-d, its head
    played by ``answers``: where the head says the object is, each time it is asked again;
    a Pin is answered with the object's place in that node's arena."""

    def __init__(self, frames: Frames, ctx: zmq.Context, nodes: list[p.NodeInfo],
                 answers: list[p.ObjectValue]) -> None:
        from types import SimpleNamespace

        self.host = "host-d"
        self.conn = SimpleNamespace(ctx=ctx, frames=frames)
        self.nodes = tuple(nodes)
        self.values: dict[str, p.ObjectValue] = {}
        self.reusable: dict[str, list] = {}
        self.requests = iter(range(1, 100))
        self.answers = list(answers)
        self.pinned: list[str] = []

    def refresh_nodes(self) -> tuple[p.NodeInfo, ...]:
        return self.nodes

    def fetch(self, object_ids: list[str], count: int, timeout: float | None, **_) -> None:
        for oid in object_ids:
            self.values[oid] = self.answers.pop(0)

    def request(self, message: p.Pin) -> p.Pinned:
        self.pinned += message.object_ids
        return p.Pinned(message.request, tuple(
            (oid, p.Located(self.values[oid].node, 0, self.values[oid].nbytes))
            for oid in message.object_ids))


def test_over_tcp_a_drivers_pull_cut_by_the_holders_death_reads_where_the_head_says_next(
        over_tcp, monkeypatch):
    """A driver pulling from a holder that dies hears it at once (the stream breaks), before
    the head does: asked again, the head names the dead holder once more (that pull hears
    nothing), then a node on the driver's own host that has a replica. The driver pins
    that copy in place; its last answer was handed on as a Stored instead, and the get
    failed with an AssertionError (benchmarks/transfer_chaos.py found it)."""
    from plait.executor.driver import reading

    monkeypatch.setattr(reading, "FAR_TIMEOUT_SECONDS", 0.5)
    b = over_tcp["node-b"]
    holder = StallingHolder(b.transfers.ctx, b.transfers.frames, content(BIG, 14), 3 * MIB,
                            close=True)
    nodes = [p.NodeInfo("node-t", holder.address, os.getpid(), False, 1, "", 0, "host-t"),
             p.NodeInfo("node-h", "tcp://127.0.0.1:9", os.getpid(), True, 1, "", 0, "host-d")]
    stale, here = p.Stored("node-t", BIG), p.Stored("node-h", BIG)
    frames = SealedFrames(KEY) if b.transfers.frames.sealed else PlainFrames()
    reader = FarReader(frames, b.transfers.ctx, nodes, [stale, here])
    reader.values["x"] = stale
    found: dict[str, list] = {}
    try:
        reader.pin_stored(["x"], found)
    finally:
        holder.stop()
    assert found == {"x": [p.Located("node-h", 0, BIG)]} and reader.pinned == ["x"]
    assert not reader.answers                       # the head was asked twice, no more


def test_over_tcp_a_drivers_pull_that_fails_gives_the_holder_back_its_pins(over_tcp,
                                                                          monkeypatch):
    """A driver's pull whose streams fail (here: the holder's stream server is full, and
    closes each connection unread) raises ObjectLostError, and still sends FetchDone for
    every run: the holder unpins the object and withdraws its offers. Before, a failed
    pull sent none, and they stayed for good."""
    from plait.executor.wire import stream
    from plait.executor.wire.fetch import pull_object

    monkeypatch.setattr(stream, "MAX_CONNECTIONS", 0)
    a = over_tcp["node-a"]
    hold(a, "x", content(BIG, 18))
    frames = SealedFrames(KEY) if a.transfers.frames.sealed else PlainFrames()
    address = a.transfers.server.getsockopt_string(zmq.LAST_ENDPOINT)
    failed: list = []

    def pull() -> None:
        try:
            pull_object(a.transfers.ctx, address, frames, "x", BIG, timeout=STEP_SECONDS)
        except ObjectLostError as error:
            failed.append(error)

    driver = threading.Thread(target=pull)
    driver.start()
    try:
        pump({"node-a": a}, lambda: not driver.is_alive() and not a.transfers.serving)
    finally:
        driver.join()
    assert failed                            # the stream closed, or reset, unread
    assert a.transfers.store.objects["x"].pins == 0
    assert not a.transfers.serving and not a.transfers.streams.offers


class TricklingHolder(threading.Thread):
    """A stand-in holder on TCP that offers every run over a stream and sends it a chunk
    every ``pace`` seconds: never silent for long, but slow; it records the FetchDones."""

    def __init__(self, ctx: zmq.Context, frames: Frames, data: bytes, pace: float) -> None:
        import socket

        super().__init__()
        self.router = ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.bind("tcp://127.0.0.1:*")
        self.address = self.router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(STEP_SECONDS)
        self.frames, self.data, self.pace = frames, data, pace
        self.done: list[int] = []
        self.start()

    def run(self) -> None:
        runs: dict[bytes, tuple[int, int, bytes]] = {}
        deadline = time.monotonic() + STEP_SECONDS
        while len(self.done) < STREAMS and time.monotonic() < deadline:
            if not self.router.poll(100):
                continue
            identity, frame = self.router.recv_multipart()
            message = self.frames.read_request(frame)
            if isinstance(message, p.FetchDone):
                self.done.append(message.request)
                continue
            token = bytes([len(runs)]) * 16
            ticket = self.frames.ticket(frame)
            runs[token] = (message.start, message.stop, ticket)
            self.router.send_multipart([identity, self.frames.message(
                p.FetchHeader(message.request, message.object_id, len(self.data),
                              port=self.listener.getsockname()[1], token=token),
                reply_data(ticket, message.object_id, -1))])
            if len(runs) == STREAMS:
                for _ in range(STREAMS):
                    conn, _ = self.listener.accept()
                    threading.Thread(target=self.trickle, args=(conn, runs)).start()

    def trickle(self, conn, runs: dict[bytes, tuple[int, int, bytes]]) -> None:
        with conn:
            start, stop, ticket = runs[conn.recv(16)]
            for at in range(start, stop, CHUNK):
                chunk = memoryview(self.data)[at:min(at + CHUNK, stop)]
                if self.frames.sealed:
                    chunk = self.frames.seal_chunk(bytearray(CHUNK + OVERHEAD), chunk,
                                                   reply_data(ticket, "x", at))
                conn.sendall(chunk)
                time.sleep(self.pace)

    def stop(self) -> None:
        self.join()
        self.router.close(linger=0)
        self.listener.close()


def test_over_tcp_a_drivers_slow_stream_is_not_taken_for_silence(over_tcp):
    """A driver's pull whose runs come steadily but take longer than its ``timeout`` (the
    silence it bears) completes: its loop hears of a streamed run only when it ends, and
    took that wait for silence (HeadUnavailableError after ``timeout``, so that from
    another host any run slower than FAR_TIMEOUT_SECONDS, 10 s, failed every get)."""
    from plait.executor.wire.fetch import pull_object

    b = over_tcp["node-b"]
    frames = SealedFrames(KEY) if b.transfers.frames.sealed else PlainFrames()
    data = content(STREAM_MIN_BYTES, 19)       # two runs of 8 chunks, 0.1 s apart: ~0.8 s
    holder = TricklingHolder(b.transfers.ctx, b.transfers.frames, data, 0.1)
    try:
        got = pull_object(b.transfers.ctx, holder.address, frames, "x", len(data),
                          timeout=0.3)
    finally:
        holder.stop()
    assert got == data
    assert sorted(holder.done) == [1] * STREAMS           # FetchDone for each run
