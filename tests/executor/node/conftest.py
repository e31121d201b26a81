"""The node under test, shared by the node's test modules: two worker handles with no
process behind them, a small arena, and its decisions read by kind (decisions.py)."""

from __future__ import annotations

import os

import pytest

from plait.executor.node.node import Node
from plait.executor.node.workers import WorkerHandle
from plait.store.arena import Arena
from tests.executor.node.decisions import Decisions

MIB = 1 << 20


@pytest.fixture
def node(make_transfers, processes):
    arena = Arena.create(f"plait-test-{os.getpid()}-node", 4 * MIB)
    workers = [WorkerHandle(i, -1, -1, f"w{i}".encode(), ready=True) for i in range(2)]
    made = Node("node-0", arena, None, workers, "ipc://unused", transfers=make_transfers,
                processes=processes)
    made.num_workers = 2
    made.decisions = Decisions(made)
    yield made
    arena.unlink()
    arena.close()
