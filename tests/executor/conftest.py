"""Fixtures for the executor's pure tests: a Node's collaborators without processes."""

from __future__ import annotations

import pytest
import zmq

from plait.executor.node.node import MakeTransfers
from plait.executor.node.transfers import PullOwner, Transfers
from plait.executor.node.workers import WorkerHandle
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


class RecordingProcesses:
    """The node's processes as a test sees them: workers are handles with no process behind
    them, /proc says what the test sets. (Starts and kills are instructions the node
    returns, read by the tests themselves.)"""

    pid = 1

    def __init__(self) -> None:
        self.states: dict[int, str] = {}           # worker index -> /proc state letter
        self.sizes: dict[int, int] = {}            # worker index -> resident bytes
        self.available = 1.0

    def reap(self, worker: WorkerHandle) -> int:
        return 9                                   # a wait status: killed by SIGKILL

    def stop(self, workers: list[WorkerHandle], grace_seconds: float) -> None:
        pass

    def interrupt(self, worker: WorkerHandle) -> None:
        pass

    def state(self, worker: WorkerHandle) -> str:
        return self.states.get(worker.index, "S")

    def rss(self, worker: WorkerHandle) -> int:
        return self.sizes.get(worker.index, 0)

    def available_fraction(self) -> float:
        return self.available


@pytest.fixture
def processes() -> RecordingProcesses:
    return RecordingProcesses()
