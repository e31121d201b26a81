"""Sealed transfer frames (wire/bulk.py): what opens, and what is refused unread."""

from __future__ import annotations

import pytest

from plait.executor.wire import protocol as p
from plait.executor.wire.bulk import (OVERHEAD, REQUEST, REQUEST_WINDOW_SECONDS, ForgedFrame,
                                      SealedFrames, reply_data, transfer_frames)
from plait.executor.wire.fetch import CHUNK
from plait.executor.wire.security import ClusterKey

KEY = bytes(range(32))
CHUNK_BYTES = bytes(range(256)) * 16


def sealed_chunk(frames: SealedFrames, data: bytes, at: int, ticket: bytes = b"t" * 12) -> bytes:
    return bytes(frames.seal_chunk(bytearray(CHUNK + OVERHEAD), memoryview(data),
                                   reply_data(ticket, "o-1", at)))


def test_a_sealed_message_opens_with_its_key_and_data_only():
    frames = SealedFrames(KEY)
    fetch = p.Fetch(3, "o-1", False, 0, 10)
    frame = frames.message(fetch, REQUEST)
    assert p.encode(fetch) not in frame                 # not readable on the wire
    assert frames.read(frame, REQUEST) == fetch
    with pytest.raises(ForgedFrame):
        SealedFrames(bytes(32)).read(frame, REQUEST)    # another cluster's key
    with pytest.raises(ForgedFrame):
        frames.read(frame, b"another place")


def test_a_sealed_chunk_opens_only_where_it_was_sealed_for():
    frames = SealedFrames(KEY)
    frame = sealed_chunk(frames, CHUNK_BYTES, CHUNK)
    assert len(frame) == len(CHUNK_BYTES) + OVERHEAD
    target = bytearray(len(CHUNK_BYTES))
    frames.open_into(memoryview(frame), reply_data(b"t" * 12, "o-1", CHUNK), memoryview(target))
    assert target == CHUNK_BYTES
    for ticket, object_id, at in ((b"u" * 12, "o-1", CHUNK), (b"t" * 12, "o-2", CHUNK),
                                  (b"t" * 12, "o-1", 0)):     # another request, object, place
        with pytest.raises(ForgedFrame):
            frames.open_into(memoryview(frame), reply_data(ticket, object_id, at),
                             memoryview(target))


@pytest.mark.parametrize("change", ["flip", "truncate", "empty"])
def test_a_changed_frame_is_refused(change):
    frames = SealedFrames(KEY)
    frame = bytearray(frames.message(p.FetchDone(1), REQUEST))
    if change == "flip":
        frame[-20] ^= 1
    elif change == "truncate":
        del frame[-1]
    else:
        frame = bytearray()
    with pytest.raises(ForgedFrame):
        frames.read(frame, REQUEST)


def test_only_a_keyed_cluster_seals():
    from zmq.utils import z85

    assert not transfer_frames(None).sealed
    assert transfer_frames(ClusterKey(b"", z85.encode(KEY))).sealed


def test_each_frame_has_its_own_nonce():
    frames = SealedFrames(KEY)
    sealed = {frames.ticket(frames.message(p.FetchDone(1), REQUEST)) for _ in range(100)}
    assert len(sealed) == 100


def test_a_request_is_taken_once_and_only_while_fresh():
    """A recorded keyed request, replayed, is refused: it would make the node pin and
    stream an object again."""
    now = [1_000_000.0]
    node = SealedFrames(KEY, clock=lambda: now[0])
    puller = SealedFrames(KEY, clock=lambda: now[0] - 60)          # its clock a minute slow
    frame = puller.message(p.Fetch(1, "o-1", False), REQUEST)
    assert node.read_request(frame) == p.Fetch(1, "o-1", False)
    with pytest.raises(ForgedFrame, match="came before"):
        node.read_request(frame)
    late = puller.message(p.Fetch(2, "o-1", False), REQUEST)
    now[0] += REQUEST_WINDOW_SECONDS
    with pytest.raises(ForgedFrame, match="clock"):
        node.read_request(late)
    now[0] += 2 * REQUEST_WINDOW_SECONDS
    node.read_request(SealedFrames(KEY, clock=lambda: now[0]).message(p.FetchDone(3), REQUEST))
    assert len(node.seen) == 1                 # the first one forgotten: it cannot come back
