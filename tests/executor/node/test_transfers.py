"""Transfers between two nodes on different hosts, without processes: two real Transfers
over inproc sockets (a context with the node's I/O threads), each told the other is on
another host, so objects come as chunks over the streams the pull opens."""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import zmq

from plait.errors import ObjectLostError
from plait.executor.node.transfers import Transfers
from plait.executor.wire import protocol as p
from plait.executor.wire.fetch import CHUNK, IO_THREADS, STREAM_MIN_BYTES, STREAMS
from plait.store.arena import Arena
from plait.store.store import ObjectStore

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


@pytest.fixture
def sides() -> Iterator[dict[str, Side]]:
    """node-a (holds objects, 128 MiB) and node-b (pulls them, 48 MiB), on two hosts."""
    ctx = zmq.Context(io_threads=IO_THREADS)
    made: dict[str, Side] = {}
    for name, capacity in (("node-a", 128 * MIB), ("node-b", 48 * MIB)):
        arena = Arena.create(f"plait-test-{os.getpid()}-{name}", capacity)
        owner = Owner()
        transfers = Transfers(name, f"host-{name}", ObjectStore(name, arena, None), ctx,
                              f"inproc://{os.getpid()}-{name}", owner,
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
        for sock, _ in poller.poll(100):
            handler, args = socks[sock]
            handler(*args)


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
    b.transfers.on_header(link, p.decode(sock.recv()))
    b.transfers.receive_chunk(link, b.transfers.order[link][0])     # one chunk in, then
    assert b.transfers.lost("node-a") == ["x"]                      # node-a is gone
    assert "x" not in b.transfers.store.objects and not b.transfers.pulls
    assert not b.transfers.links and b.owner.flowing == [True, False]
    assert "x" not in b.owner.ended          # the node asks the head where to find it now
