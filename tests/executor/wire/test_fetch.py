"""A driver's pull of an object from a node on another host (wire/fetch.py), against a
stand-in transfer socket that speaks the protocol, or stops speaking it half-way, with
plain frames and with frames sealed under a cluster's bulk key (wire/bulk.py)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import pytest
import zmq

from plait.errors import HeadUnavailableError, ObjectLostError
from plait.executor.wire import protocol as p
from plait.executor.wire.bulk import (OVERHEAD, REQUEST, Frames, PlainFrames, SealedFrames,
                                      reply_data)
from plait.executor.wire.fetch import CHUNK, STREAM_MIN_BYTES, chunks, pull_object, spans

RECV_MS = 10_000
DATA = bytes(range(256)) * ((2 * STREAM_MIN_BYTES + 3) // 256) + b"end"
KEY = bytes(range(32))


def serve(router: zmq.Socket, frames: Frames, data: bytes, streams: int,
          stop_after: int | None = None, tamper: int | None = None) -> None:
    """Answer ``streams`` Fetches as a node does; with ``stop_after``, send that many
    chunks of each run and then nothing more (a stream that died); with ``tamper``, flip
    a bit of each run's chunk of that index on its way."""
    served = 0
    while served < streams:
        if not router.poll(RECV_MS):
            return
        identity, frame = router.recv_multipart()
        fetch = frames.read(frame, REQUEST)
        if isinstance(fetch, p.FetchDone):
            continue            # a stream's pull ended (failed) before another's Fetch came
        served += 1
        ticket = frames.ticket(frame)
        header = p.FetchHeader(fetch.request, fetch.object_id, len(data))
        router.send_multipart([identity, frames.message(header, reply_data(
            ticket, fetch.object_id, -1))])
        starts = list(chunks(fetch.start, fetch.stop))[:stop_after]
        for index, start in enumerate(starts):
            chunk = memoryview(data)[start:min(start + CHUNK, fetch.stop)]
            if isinstance(frames, SealedFrames):
                chunk = frames.seal_chunk(bytearray(CHUNK + OVERHEAD), chunk,
                                          reply_data(ticket, fetch.object_id, start))
            if index == tamper:
                chunk = bytearray(chunk)
                chunk[len(chunk) // 2] ^= 1
            router.send_multipart([identity, chunk])


@pytest.fixture(params=["plain", "sealed"])
def frames(request) -> Frames:
    return PlainFrames() if request.param == "plain" else SealedFrames(KEY)


@pytest.fixture
def node() -> Iterator[tuple[zmq.Context, zmq.Socket, str]]:
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    address = f"inproc://{os.getpid()}-far-node"
    router.bind(address)
    yield ctx, router, address
    router.close(linger=0)
    ctx.destroy(linger=0)


@contextlib.contextmanager
def serving(target, *args):
    """A thread playing the holding node while the body pulls; joined however it ends."""
    server = threading.Thread(target=target, args=args)
    server.start()
    try:
        yield
    finally:
        server.join()


def test_spans_cover_the_object_once_in_whole_chunks():
    for nbytes in (0, 1, STREAM_MIN_BYTES - 1, STREAM_MIN_BYTES, 5 * STREAM_MIN_BYTES + 7):
        runs = spans(nbytes)
        assert runs[0][0] == 0 and runs[-1][1] == nbytes
        assert all(stop == start for (_, stop), (start, _) in zip(runs, runs[1:], strict=False))
        assert all(start % CHUNK == 0 for start, _ in runs)


def test_a_far_object_comes_over_several_streams_intact(node, frames):
    ctx, router, address = node
    streams = len(spans(len(DATA)))
    assert streams > 1
    with serving(serve, router, frames, DATA, streams):
        assert pull_object(ctx, address, frames, "x", len(DATA), timeout=10.0) == DATA


def test_a_stream_that_dies_half_way_fails_with_plaits_error(node, frames):
    """The reader (Session.fetch_far) then asks the head where the object is now."""
    ctx, router, address = node
    with serving(serve, router, frames, DATA, len(spans(len(DATA))), 2):
        with pytest.raises(HeadUnavailableError, match="sent no data for x"):
            pull_object(ctx, address, frames, "x", len(DATA), timeout=0.5)


def test_a_sealed_chunk_changed_on_the_way_fails_the_pull_not_the_data(node):
    ctx, router, address = node
    frames = SealedFrames(KEY)
    with serving(serve, router, frames, DATA, len(spans(len(DATA))), None, 3):
        with pytest.raises(ObjectLostError, match="failed authentication"):
            pull_object(ctx, address, frames, "x", len(DATA), timeout=10.0)


def test_a_holder_with_another_key_gets_no_request_read_and_sends_none_we_accept(node):
    """Its frames are sealed under another bulk key: it cannot open our Fetch, and the
    answer it sends anyway (under its own key) fails the pull."""
    ctx, router, address = node
    ours, theirs = SealedFrames(KEY), SealedFrames(bytes(32))
    with pytest.raises(ValueError, match="failed authentication"):
        theirs.read(ours.message(p.Fetch(1, "x", False), REQUEST), REQUEST)
    router_frames = []

    def answer_forged() -> None:
        if router.poll(RECV_MS):
            identity, frame = router.recv_multipart()
            router_frames.append(frame)
            header = p.FetchHeader(1, "x", len(DATA))
            router.send_multipart([identity, theirs.message(header, reply_data(
                ours.ticket(frame), "x", -1))])

    with serving(answer_forged):
        with pytest.raises(ObjectLostError, match="failed authentication"):
            pull_object(ctx, address, ours, "x", 100, timeout=10.0)
    assert len(router_frames) == 1
