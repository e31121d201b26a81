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
from plait.executor.node.transfers import Transfers
from plait.executor.wire import protocol as p
from plait.executor.wire.bulk import REQUEST, Frames, PlainFrames, SealedFrames, reply_data
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


def two_nodes(make_frames: Callable[[], Frames]) -> Iterator[dict[str, Side]]:
    ctx = zmq.Context(io_threads=IO_THREADS)
    made: dict[str, Side] = {}
    for name, capacity in (("node-a", 128 * MIB), ("node-b", 48 * MIB)):
        arena = Arena.create(f"plait-test-{os.getpid()}-{name}", capacity)
        owner = Owner()
        frames = make_frames()
        transfers = Transfers(name, f"host-{name}", ObjectStore(name, arena, None), ctx,
                              f"inproc://{os.getpid()}-{name}", owner, frames,
                              streaming=owner.flowing.append)
        made[name] = Side(transfers, owner, arena)
    infos = {name: p.NodeInfo(name, f"inproc://{os.getpid()}-{name}", os.getpid(), False, 0,
                              side.arena.name, side.arena.capacity, f"host-{name}")
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
        assert list(a.transfers.serving.values()) == ["x"]
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
