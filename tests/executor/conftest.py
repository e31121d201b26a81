"""Fixtures for the executor's pure tests: a Node's collaborators without processes."""

from __future__ import annotations

import pytest
import zmq

from plait.executor.node.node import MakeTransfers
from plait.executor.node.transfers import PullOwner, Transfers
from plait.store.store import ObjectStore


@pytest.fixture
def make_transfers() -> MakeTransfers:
    """How a Node under test makes its transfers: real ones over inproc sockets (no
    process, no file), with no peers unless a test adds some."""
    ctx = zmq.Context()

    def make(store: ObjectStore, owner: PullOwner) -> Transfers:
        return Transfers(store.node, "host-0", store, ctx, f"inproc://{store.node}-transfers",
                         owner)

    yield make
    ctx.destroy(linger=0)
