"""A driver's pull of an object from a node on another host (wire/fetch.py), against a
stand-in transfer socket that speaks the protocol, or stops speaking it half-way."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest
import zmq

from plait.errors import HeadUnavailableError
from plait.executor.wire import protocol as p
from plait.executor.wire.fetch import CHUNK, STREAM_MIN_BYTES, chunks, pull_object, spans

RECV_MS = 10_000
DATA = bytes(range(256)) * ((2 * STREAM_MIN_BYTES + 3) // 256) + b"end"


def serve(router: zmq.Socket, data: bytes, streams: int, stop_after: int | None) -> None:
    """Answer ``streams`` Fetches as a node does; with ``stop_after``, send that many
    chunks of each run and then nothing more (a stream that died)."""
    for _ in range(streams):
        if not router.poll(RECV_MS):
            return
        identity, frame = router.recv_multipart()
        fetch = p.decode(frame)
        router.send_multipart([identity, p.encode(p.FetchHeader(fetch.request, fetch.object_id,
                                                                len(data)))])
        starts = list(chunks(fetch.start, fetch.stop))[:stop_after]
        for start in starts:
            router.send_multipart([identity, data[start:min(start + CHUNK, fetch.stop)]])


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


def test_spans_cover_the_object_once_in_whole_chunks():
    for nbytes in (0, 1, STREAM_MIN_BYTES - 1, STREAM_MIN_BYTES, 5 * STREAM_MIN_BYTES + 7):
        runs = spans(nbytes)
        assert runs[0][0] == 0 and runs[-1][1] == nbytes
        assert all(stop == start for (_, stop), (start, _) in zip(runs, runs[1:], strict=False))
        assert all(start % CHUNK == 0 for start, _ in runs)


def test_a_far_object_comes_over_several_streams_intact(node):
    ctx, router, address = node
    streams = len(spans(len(DATA)))
    assert streams > 1
    server = threading.Thread(target=serve, args=(router, DATA, streams, None))
    server.start()
    try:
        assert pull_object(ctx, address, None, "x", len(DATA), timeout=10.0) == DATA
    finally:
        server.join()


def test_a_stream_that_dies_half_way_fails_with_plaits_error(node):
    """The reader (Session.fetch_far) then asks the head where the object is now."""
    ctx, router, address = node
    server = threading.Thread(target=serve, args=(router, DATA, len(spans(len(DATA))), 2))
    server.start()
    try:
        with pytest.raises(HeadUnavailableError, match="sent no data for x"):
            pull_object(ctx, address, None, "x", len(DATA), timeout=0.5)
    finally:
        server.join()
