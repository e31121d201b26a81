"""Fetching one object's bytes from a node on another host: the client side of the transfer
protocol (the node's side is plait.executor.node.transfers), for a driver that cannot map
that node's store.

    reader --Fetch(object, same_host=False)--> node's transfer ROUTER
    reader <--FetchHeader(nbytes | error)-----
    reader <--raw chunks, received in place---   (into one bytearray of nbytes)
    reader --FetchDone------------------------>
"""

from __future__ import annotations

import pickle

import zmq

from plait.errors import HeadUnavailableError
from plait.executor.wire import protocol as p
from plait.executor.wire.security import ClusterKey, secure_client


def pull_object(ctx: zmq.Context, address: str, key: ClusterKey | None, object_id: str,
                timeout: float = 60.0) -> bytearray:
    """Fetch an object's bytes from a node on another host (the transfer protocol)."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(timeout * 1000))
    if key is not None:
        secure_client(sock, key)
    sock.connect(address)
    try:
        sock.send(p.encode(p.Fetch(1, object_id, same_host=False)))
        header = p.decode(sock.recv())
        if header.error is not None:
            raise pickle.loads(header.error)
        data = bytearray(header.nbytes)
        view, received = memoryview(data), 0
        while received < header.nbytes:
            received += sock.recv_into(view[received:])
        sock.send(p.encode(p.FetchDone(1)))
        return data
    except zmq.Again:
        raise HeadUnavailableError(f"{address} sent no data for {object_id} "
                                   f"in {timeout} s") from None
    finally:
        sock.close(linger=100)
