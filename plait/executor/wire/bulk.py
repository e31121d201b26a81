"""The frames of the transfer streams: plain in an unkeyed cluster, sealed with AES-256-GCM
under the cluster's bulk key (security.bulk_key) in a keyed one.

Every frame of a transfer stream goes through one ``Frames``: the Fetch and FetchDone a
puller sends, and the FetchHeader and raw chunks the holder answers with (the protocol is
drawn in plait.executor.wire.fetch and plait.executor.node.transfers). ``PlainFrames`` is
what an embedded or unkeyed loopback cluster uses: messages encoded as they are, chunks sent
zero-copy from the arena and received in place. ``SealedFrames``, in a keyed cluster::

    frame = nonce (12 random bytes) | ciphertext | tag (16 bytes)

The associated data (authenticated, not sent) says where a frame belongs, so a frame cannot
be moved to another place: a request's is a fixed label; each reply's is the request's own
nonce (its ``ticket``: the puller remembers it, a recorded old answer fails), then the
frame's offset in the object (-1: the header) and the object id. A frame whose tag does not
check raises ``ForgedFrame`` before a byte of it is decoded, and is dropped; nothing a peer
sends is unpickled unless it came from a holder of the key.

A nonce is the sender's clock in seconds (4 bytes) and 8 random bytes (``os.urandom``,
~1 us against ~130 us to seal a 1 MiB chunk): 2**64 random values per second keep nonces
from repeating under one cluster key for its life. (A random 4-byte prefix per socket with
a counter from 0 would repeat between the thousands of sockets one long-lived key sees.)

Requests are also fresh: CurveZMQ's handshake kept anyone who recorded a keyed peer's
traffic from replaying it, and a replayed Fetch would make a node pin an object and stream
it (sealed, but at the node's cost) to whoever replays it. So a node takes a request only
within REQUEST_WINDOW_SECONDS of its nonce's clock, and only once (``read_request``): hosts'
clocks must agree to within that window, as Kerberos asks of its hosts.
"""

from __future__ import annotations

import os
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import zmq

from plait.executor.wire import protocol as p
from plait.executor.wire.security import ClusterKey, bulk_key

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE = 12
TAG = 16
OVERHEAD = NONCE + TAG                    # bytes a sealed frame adds to its contents
REQUEST = b"plait transfer request"       # the associated data of Fetch and FetchDone
REQUEST_WINDOW_SECONDS = 300              # a request's age (or clock skew) a node accepts


class ForgedFrame(ValueError):
    """A sealed frame that did not authenticate: not from a holder of the key, changed on
    the way, or moved from another request or place. Dropped, never decoded."""


def reply_data(ticket: bytes, object_id: str, start: int) -> bytes:
    """The associated data of a reply frame: its request's ``ticket``, the frame's offset
    in the object (-1: the header) and the object.

    >>> reply_data(b"t" * 12, "o-1", -1) != reply_data(b"t" * 12, "o-1", 0)
    True
    """
    return ticket + struct.pack("<q", start) + object_id.encode()


class Frames(Protocol):
    """How one side reads and writes the frames of its transfer streams."""

    sealed: bool

    def message(self, message: p.Message, data: bytes) -> bytes:
        """``message`` as one frame, bound to the associated ``data``."""

    def read(self, frame: bytes | memoryview, data: bytes) -> p.Message:
        """The message in ``frame`` (ForgedFrame, or MalformedMessage)."""

    def read_request(self, frame: bytes | memoryview) -> p.Message:
        """The request in ``frame``, if it is fresh and its first coming (else ForgedFrame)."""

    def ticket(self, request: bytes | memoryview) -> bytes:
        """What binds the replies to the request frame ``request``."""

    def receive_chunk(self, sock: zmq.Socket, target: memoryview, data: bytes) -> None:
        """The next frame of ``sock``, a chunk of exactly ``len(target)`` bytes, into
        ``target`` (ForgedFrame if it is not that)."""


class PlainFrames:
    """No encryption: an embedded cluster (ipc) or an unkeyed one on loopback."""

    sealed = False

    def message(self, message: p.Message, data: bytes) -> bytes:
        return p.encode(message)

    def read(self, frame: bytes | memoryview, data: bytes) -> p.Message:
        return p.decode(frame)

    def read_request(self, frame: bytes | memoryview) -> p.Message:
        return p.decode(frame)

    def ticket(self, request: bytes | memoryview) -> bytes:
        return b""

    def receive_chunk(self, sock: zmq.Socket, target: memoryview, data: bytes) -> None:
        sock.recv_into(target)


class SealedFrames:
    """AES-256-GCM under the bulk key: every frame sealed, every frame opened before use."""

    sealed = True

    def __init__(self, key: bytes, clock: Callable[[], float] = time.time) -> None:
        # cryptography is imported here, not above: only keyed clusters seal (an embedded
        # cluster's nodes start without it)
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.aead: AESGCM = AESGCM(key)
        self.clock = clock
        self.seen: OrderedDict[bytes, float] = OrderedDict()  # requests taken -> when

    def nonce(self) -> bytes:
        return struct.pack(">I", int(self.clock()) & 0xFFFFFFFF) + os.urandom(NONCE - 4)

    def message(self, message: p.Message, data: bytes) -> bytes:
        return self.seal(p.encode(message), data)

    def seal(self, plain: bytes, data: bytes) -> bytes:
        """The frame that carries ``plain``, bound to the associated ``data``."""
        nonce = self.nonce()
        return nonce + self.aead.encrypt(nonce, plain, data)

    def read(self, frame: bytes | memoryview, data: bytes) -> p.Message:
        return p.decode(self.open(frame, data))

    def read_request(self, frame: bytes | memoryview) -> p.Message:
        """Authenticated first (the nonce is the cipher's input too, so its clock cannot be
        changed), then fresh: sent within the window, and not taken before. A taken nonce is
        kept for twice the window after it came, past the last moment it could be fresh."""
        plain = self.open(frame, REQUEST)
        nonce, now = bytes(frame[:NONCE]), self.clock()
        age = (int(now) - struct.unpack(">I", nonce[:4])[0] + (1 << 31)) % (1 << 32) - (1 << 31)
        if abs(age) > REQUEST_WINDOW_SECONDS:
            raise ForgedFrame(f"a request sent {age} s ago: replayed, or this host's clock "
                              f"and the sender's disagree")
        if nonce in self.seen:
            raise ForgedFrame("a request that came before: replayed")
        while self.seen and next(iter(self.seen.values())) < now - 2 * REQUEST_WINDOW_SECONDS:
            self.seen.popitem(last=False)
        self.seen[nonce] = now
        return p.decode(plain)

    def ticket(self, request: bytes | memoryview) -> bytes:
        return bytes(request[:NONCE])

    def seal_chunk(self, into: bytearray, chunk: memoryview, data: bytes) -> memoryview:
        """``chunk`` sealed into the buffer ``into`` (CHUNK + OVERHEAD bytes, reused):
        the frame to send, a view of ``into``."""
        nonce = self.nonce()
        frame = memoryview(into)[:len(chunk) + OVERHEAD]
        frame[:NONCE] = nonce
        self.aead.encrypt_into(nonce, chunk, data, frame[NONCE:])
        return frame

    def receive_chunk(self, sock: zmq.Socket, target: memoryview, data: bytes) -> None:
        frame = sock.recv(copy=False).buffer
        if len(frame) != len(target) + OVERHEAD:
            raise ForgedFrame(f"a chunk of {len(frame) - OVERHEAD} bytes, not {len(target)}")
        self.open_into(frame, data, target)

    def open(self, frame: bytes | memoryview, data: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag

        try:
            return self.aead.decrypt(bytes(frame[:NONCE]), frame[NONCE:], data)
        except (InvalidTag, ValueError):
            raise ForgedFrame("a transfer frame failed authentication") from None

    def open_into(self, frame: memoryview, data: bytes, target: memoryview) -> None:
        from cryptography.exceptions import InvalidTag

        try:
            self.aead.decrypt_into(bytes(frame[:NONCE]), frame[NONCE:], data, target)
        except (InvalidTag, ValueError):
            raise ForgedFrame("a transfer chunk failed authentication") from None


def transfer_frames(key: ClusterKey | None) -> Frames:
    """The frames of a cluster with the key ``key`` (None: unkeyed)."""
    return PlainFrames() if key is None else SealedFrames(bulk_key(key))
