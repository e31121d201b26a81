"""The driver's socket to the head: ``Connection`` is one DEALER socket with a receive that
always has a timeout and notices a dead head (the clusters it reaches: driver/cluster.py).
"""

from __future__ import annotations

import math
import os
import pickle
import time
from collections.abc import Callable
from typing import Any

import zmq

from plait.errors import ClusterError, HeadUnavailableError
from plait.executor.driver.cluster import Cluster, LocalCluster
from plait.executor.wire import protocol as p
from plait.executor.wire.config import (HEARTBEAT_SECONDS, LOCAL_RECONNECT_MS,
                                        NODE_TIMEOUT_SECONDS)
from plait.executor.wire.bulk import transfer_frames
from plait.executor.wire.fetch import IO_THREADS
from plait.executor.wire.hostid import host_id
from plait.executor.wire.malloc import HeapTrim, bound_driver_heaps
from plait.executor.wire.security import secure_client

START_TIMEOUT_S = 60.0
LIVENESS_SLICE_MS = 100
DRIVER_TIMEOUT_SECONDS = 3 * NODE_TIMEOUT_SECONDS   # a joined head silent this long is gone
CLOSE_LINGER_MS = 500


def _nothing(*_: object) -> None:
    """Connection.hello's hooks when the caller has none: no other message is expected,
    nothing but the head can fail."""


class Connection:
    """A DEALER socket to the head; every receive is bounded and notices a dead head.

    While it waits it sends a Heartbeat every second, which the head answers; a head this
    driver started is gone when its process is, one it joined when it stays silent for
    DRIVER_TIMEOUT_SECONDS (HeadUnavailableError).
    """

    def __init__(self, cluster: Cluster, ctx: zmq.Context | None = None) -> None:
        # A worker's nested session shares the worker's context (one I/O thread): a context
        # of its own would start IO_THREADS + 1 more threads in every worker whose task
        # submits tasks. A driver's has IO_THREADS: far reads stream on several cores.
        self.owns_ctx = ctx is None
        if self.owns_ctx:
            bound_driver_heaps()     # (a worker's are set: wire/malloc.py)
        self.ctx = zmq.Context(io_threads=IO_THREADS) if ctx is None else ctx
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.key = getattr(cluster, "key", None)
        if self.key is not None:
            secure_client(self.sock, self.key)
        self.frames = transfer_frames(self.key)          # of far reads' streams
        if cluster.client_address.startswith("ipc://"):      # the head may still be starting
            self.sock.setsockopt(zmq.RECONNECT_IVL, LOCAL_RECONNECT_MS)
        self.sock.connect(cluster.client_address)
        self.cluster = cluster
        self.heap = HeapTrim()            # what the messages left free, given back (malloc.py)
        self.heard = self.pinged = time.monotonic()
        self.poller: zmq.Poller | None = None       # the socket and a Wakeup (receive)

    def send(self, message: p.Message) -> None:
        """Send, noticing a dead head instead of blocking (a DEALER with no peer would)."""
        data = p.encode(message)
        while True:
            try:
                self.sock.send(data, zmq.NOBLOCK, copy=False)
                return
            except zmq.Again:
                self.check_head()
                self.sock.poll(LIVENESS_SLICE_MS, zmq.POLLOUT)

    def receive(self, timeout: float | None, wakeup: Any = None) -> p.Message | None:
        """The next message, or None after ``timeout`` seconds (None: wait indefinitely), or
        at once when a byte comes on ``wakeup`` (a Wakeup: another thread wants the
        session)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = LIVENESS_SLICE_MS if deadline is None else min(
                LIVENESS_SLICE_MS, max(0, int((deadline - time.monotonic()) * 1000)))
            if wakeup is not None and not self.sock.poll(0):
                if self.woken(wakeup, left):
                    return None
                left = 0
            if self.sock.poll(left):
                self.heard = time.monotonic()
                frame = self.sock.recv(copy=False).buffer
                self.heap.note(len(frame))
                message = p.decode(frame)
                if not isinstance(message, p.Heartbeat):
                    return message
            self.check_head()
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def woken(self, wakeup: Any, timeout_ms: int) -> bool:
        """Wait up to ``timeout_ms`` for a message or a byte on ``wakeup``; True for the
        byte (drained)."""
        if self.poller is None:
            self.poller = zmq.Poller()
            self.poller.register(self.sock, zmq.POLLIN)
            self.poller.register(wakeup.fileno(), zmq.POLLIN)
        if wakeup.fileno() in dict(self.poller.poll(timeout_ms)):
            wakeup.drain()
            return True
        return False

    def check_head(self) -> None:
        """A head we started is alive while its process is; one we joined, while it answers.

        The head may be silent for seconds while it spills a large object, so silence alone
        only counts for joined clusters, with a longer limit than between nodes.
        """
        now = time.monotonic()
        if isinstance(self.cluster, LocalCluster):
            if not self.cluster.alive():
                head = self.cluster.head
                raise HeadUnavailableError(
                    f"the plait head process (pid {head.pid}) exited with code "
                    f"{head.returncode}; call plait.shutdown() and init again")
            return
        if now - self.heard > DRIVER_TIMEOUT_SECONDS:
            raise HeadUnavailableError(
                f"the plait head at {self.cluster.client_address} has not answered for "
                f"{DRIVER_TIMEOUT_SECONDS:.0f} s; call plait.shutdown() and init again")
        if now - self.pinged >= HEARTBEAT_SECONDS and now - self.heard >= HEARTBEAT_SECONDS:
            self.pinged = now
            self.send(p.Heartbeat("driver", 0))

    def hello(self, nodes_expected: int = 1, timeout: float | None = None, *,
              watched: bool = False, other: Callable[[p.Message], object] = _nothing,
              alive: Callable[[], object] = _nothing) -> p.Welcome | None:
        """Say Hello and wait for the head's Welcome (None if it does not come in ``timeout``).

        The head answers once ``nodes_expected`` nodes and their workers are up: the one
        exchange that waits for a starting cluster and tells any client the node list.
        ``watched`` names this host in the Hello, so the head releases what this process
        holds when it exits (a session's first Hello; a one-shot question holds nothing).
        Other messages go to ``other`` (a session's results and replies must not be lost);
        ``alive`` runs between slices of the wait and raises once the Welcome cannot come.
        A started head's exit ends the wait (HeadUnavailableError); a joined head's silence
        only without a timeout: it may still be starting, and the timeout bounds the wait.
        """
        self.send(p.Hello(os.getpid(), nodes_expected, host_id() if watched else ""))
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            alive()
            try:
                reply = self.receive(min(left, LIVENESS_SLICE_MS / 1000))
            except HeadUnavailableError:
                if timeout is None or isinstance(self.cluster, LocalCluster):
                    raise
                self.heard = time.monotonic()       # still starting: keep waiting
                continue
            if isinstance(reply, p.Welcome):
                return reply
            if isinstance(reply, p.Refused) and reply.request == p.HELLO_REFUSED:
                raise pickle.loads(reply.error)   # (the head's ClusterError: another plait)
            if reply is not None:
                other(reply)
        return None

    def handshake(self, nodes_expected: int) -> p.Welcome:
        """A session's hello: wait until the nodes and all their workers are up."""
        try:
            welcome = self.hello(nodes_expected, START_TIMEOUT_S, watched=True)
        except HeadUnavailableError as error:
            raise ClusterError(f"the plait cluster failed to start: {error}") from None
        if welcome is None:
            raise ClusterError(f"the plait cluster did not answer within {START_TIMEOUT_S} s")
        return welcome

    def close(self) -> None:
        """Close; a joined cluster outlives us, so let the last Free (or Bye) get out."""
        linger = 0 if isinstance(self.cluster, LocalCluster) else CLOSE_LINGER_MS
        self.sock.close(linger=linger)
        if self.owns_ctx:
            self.ctx.term()
