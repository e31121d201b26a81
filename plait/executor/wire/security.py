"""Secure by default: loopback unless told otherwise, and CurveZMQ with a cluster key beyond.

Ray's unauthenticated API was exploited in the wild (CVE-2023-48022). plait's rules:

* an embedded cluster (``plait.init()``) talks over ipc sockets in a 0700 directory;
* a cluster started by ``plait start`` listens on TCP, on 127.0.0.1 unless ``--bind`` says
  otherwise, and always with a cluster key: a Curve key pair written once to a 0600 file
  and read from it by joining nodes and drivers (it never appears on a command line, in a
  log or in a repr);
* every socket that listens on TCP is a CURVE server behind a ZAP authenticator that admits
  only clients presenting the cluster's public key, so a peer without the key never gets a
  message through: nothing it sends is unpickled, let alone run;
* a TCP bind beyond loopback without a key is refused at start-up;
* the transfer streams (objects' bytes between nodes, and to a driver on another host) are
  not CurveZMQ but frames sealed with AES-256-GCM under a key derived from the cluster key
  (``bulk_key``, plait.executor.wire.bulk): a frame is opened, and so authenticated, before
  anything in it is decoded.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
import socket
from dataclasses import dataclass, field

from typing import TYPE_CHECKING

import zmq

from plait.errors import ClusterError

if TYPE_CHECKING:
    import zmq.auth.thread

Z85_KEY_LENGTH = 40             # a Curve key, z85-encoded


@dataclass(frozen=True)
class ClusterKey:
    """The cluster's Curve key pair (z85 bytes); the secret half never prints."""

    public: bytes
    secret: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"ClusterKey(public={self.public.decode()[:8]}...)"


# What the bulk key is for: it keys the transfer streams' AES-256-GCM (plait.executor.wire.bulk)
# and nothing else, so the same secret can never serve two purposes under one key.
BULK_KEY_LABEL = b"plait transfer streams: AES-256-GCM v1"


def bulk_key(key: ClusterKey) -> bytes:
    """The 256-bit key that seals the transfer streams, derived from the cluster's secret.

    Why not CurveZMQ there, as on every other socket: its XSalsa20-Poly1305 costs about
    1 CPU second per GB on each side, so an encrypted stream moved 0.92-1.39 GB/s between
    two processes on the 2-core machine of issue 15 (raw ZeroMQ, benchmarks/rawzmq.py), and
    plait's transfers 0.94-1.06 GB/s, against a goal of 1.5. AES-256-GCM with AES-NI
    (``cryptography``) runs at ~8 GB/s per core here. Every node and driver of a keyed
    cluster holds the secret already, so a key derived from it needs no exchange: a keyed
    BLAKE2b of a fixed label (a PRF of the 32-byte Curve secret) gives a key that is
    independent of the Curve key pair's use.

    What it protects: the bytes of objects and the transfer requests that ask for them, in
    secrecy and integrity, against anyone without the key file (who can neither read nor
    forge a frame, nor move one to another object or offset: see bulk.py).

    >>> from zmq.utils import z85
    >>> one, two = (ClusterKey(b"", z85.encode(bytes([k]) * 32)) for k in (1, 2))
    >>> len(bulk_key(one)), bulk_key(one) == bulk_key(one), bulk_key(one) == bulk_key(two)
    (32, True, False)
    """
    from zmq.utils import z85

    secret = z85.decode(key.secret)
    return hashlib.blake2b(BULK_KEY_LABEL, key=secret, digest_size=32).digest()


def generate_key_file(path: str) -> ClusterKey:
    """Create a new key pair and write it to ``path`` readable by its owner only."""
    public, secret = zmq.curve_keypair()
    fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"public": public.decode(), "secret": secret.decode()}, f)
    return ClusterKey(public, secret)


def load_key(path: str) -> ClusterKey:
    try:
        with open(path) as f:
            data = json.load(f)
        return ClusterKey(data["public"].encode(), data["secret"].encode())
    except (OSError, ValueError, KeyError) as error:
        raise ClusterError(f"cannot read the cluster key file {path}: {error}") from None


def secure_server(sock: zmq.Socket, key: ClusterKey) -> None:
    sock.curve_secretkey = key.secret
    sock.curve_publickey = key.public
    sock.curve_server = True


def secure_client(sock: zmq.Socket, key: ClusterKey) -> None:
    sock.curve_serverkey = key.public
    sock.curve_publickey = key.public
    sock.curve_secretkey = key.secret


class _OnlyOurKey:
    """ZAP credentials check: a client is admitted only with the cluster's public key."""

    def __init__(self, key: ClusterKey) -> None:
        self.allowed = key.public

    def callback(self, domain: str, client_key: bytes) -> bool:
        """``client_key`` arrives z85-encoded, as the cluster key is stored."""
        return client_key == self.allowed


class _ShortenKeys(logging.Filter):
    """pyzmq's ZAP handler logs each client's whole key at DEBUG; keep its first 8 characters.

    >>> record = logging.LogRecord("a", 10, "", 0, "key=%s", (b"x" * 40,), None)
    >>> _ShortenKeys().filter(record), record.getMessage()
    (True, "key=b'xxxxxxxx...'")
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_shorten(arg) for arg in record.args)
        return True


def _shorten(value: object) -> object:
    if isinstance(value, bytes) and len(value) == Z85_KEY_LENGTH:
        return value[:8] + b"..."
    if isinstance(value, str) and len(value) == Z85_KEY_LENGTH:
        return value[:8] + "..."
    return value


_auth_log = logging.getLogger("plait.auth")
_auth_log.addFilter(_ShortenKeys())


def start_authenticator(ctx: zmq.Context, key: ClusterKey) -> zmq.auth.thread.ThreadAuthenticator:
    """Run a ZAP handler on ``ctx`` that rejects any CURVE client without our key.

    zmq.auth.thread is imported here, not above: it brings asyncio and ssl (~20 ms), which
    an embedded cluster (ipc sockets, no key) never uses, on the path of every node's start."""
    import zmq.auth.thread

    auth = zmq.auth.thread.ThreadAuthenticator(ctx, log=_auth_log)
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=_OnlyOurKey(key))
    return auth


def is_loopback(host: str) -> bool:
    """
    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("10.0.0.2")
    (True, True, False)
    """
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


def check_bind(host: str, key: ClusterKey | None) -> None:
    """Refuse to listen beyond loopback without a key."""
    if key is None and not is_loopback(host):
        raise ClusterError(f"refusing to listen on {host} without a cluster key: anyone who "
                           f"can reach it could run code here. Start with a key file, or "
                           f"bind to 127.0.0.1")
