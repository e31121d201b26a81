"""What goes into the head's and a node's state machines (events) and what comes out
(instructions), as dask/distributed's ``worker_state_machine`` does.

The head and the node decide; only their process's loop (``node/server.py``) touches
sockets, processes and files. An event goes in (``Head.handle``, ``Node.handle``), tables
change, and the instructions come back in the order they were decided, for the loop to
carry out::

    socket / pidfd / clock --event--> Head.handle / Node.handle --instructions--> loop
                                                                     |  ToClient, ToNode,
                                                                     |  ToHead, ToWorker:
                                                                     |  send
                                                                     |  StartWorker, KillWorker,
                                                                     |  InterruptWorker: fork,
                                                                     |  SIGKILL, SIGUSR2
                                                                     |  Unlink: remove files

So their decisions are tested as data: an event in, the exact instructions out, with no
socket, process or file behind them (tests/executor/head, tests/executor/node).

In node-0's process the head and its node speak through the same instructions: a ToNode
for node-0 is handed to its Node, a ToHead from it to the Head, both by the loop.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from plait.executor.wire import protocol as p

Peer = Hashable          # a client as the head's loop names it: (socket kind, identity)

# -- events: what the loop hands to a state machine ------------------------------------------


@dataclass(frozen=True, slots=True)
class FromClient:
    """A driver's (or a worker's nested session's) message, to the head."""

    peer: Peer
    message: p.Message


@dataclass(frozen=True, slots=True)
class FromNode:
    """A node's message, to the head (node-0's own, too, handed over in process)."""

    node: str
    message: p.Message


@dataclass(frozen=True, slots=True)
class FromHead:
    """The head's message, to a node."""

    message: p.Message


@dataclass(frozen=True, slots=True)
class FromWorker:
    """A worker's message, to its node, with the identity of the socket that sent it."""

    identity: bytes
    message: p.Message


@dataclass(frozen=True, slots=True)
class ClientGone:
    """A driver on the head's host exited (its pidfd said so)."""

    peer: Peer


@dataclass(frozen=True, slots=True)
class NodeGone:
    """A node on the head's host exited (its pidfd said so)."""

    node: str
    reason: str


@dataclass(frozen=True, slots=True)
class WorkerGone:
    """One of the node's workers exited (its pidfd said so)."""

    pidfd: int


@dataclass(frozen=True, slots=True)
class WorkerStarted:
    """A worker the node asked for (StartWorker) was forked: its handle."""

    worker: Any                        # node.workers.WorkerHandle (wire imports no node)
    extra: bool
    actor: str


@dataclass(frozen=True, slots=True)
class Tick:
    """Once per turn of the loop: time-outs, waiting work, the head's batched notes."""

    now: float


@dataclass(frozen=True, slots=True)
class Flush:
    """The head: send the notes batched since the last turn (values ready, deletes)."""


@dataclass(frozen=True, slots=True)
class Dispatch:
    """A node: start what is ready on the idle workers."""


Event = (FromClient | FromNode | FromHead | FromWorker | ClientGone | NodeGone | WorkerGone
         | WorkerStarted | Tick | Flush | Dispatch)

# -- instructions: what the loop carries out ------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToClient:
    peer: Peer
    message: p.Message


@dataclass(frozen=True, slots=True)
class ToNode:
    node: str
    message: p.Message


@dataclass(frozen=True, slots=True)
class ToHead:
    message: p.Message


@dataclass(frozen=True, slots=True)
class ToWorker:
    identity: bytes
    message: p.Message


@dataclass(frozen=True, slots=True)
class StartWorker:
    """Fork a worker with this config, then hand its handle back (WorkerStarted)."""

    config: Any                        # wire.config.WorkerConfig
    extra: bool = False                # a stand-in for a blocked worker
    actor: str = ""                    # the actor whose process it is


@dataclass(frozen=True, slots=True)
class KillWorker:
    """SIGKILL the node's worker with this socket identity (its exit comes as WorkerGone)."""

    identity: bytes


@dataclass(frozen=True, slots=True)
class InterruptWorker:
    """Signal the node's worker with this identity to interrupt its task (the Cancel naming
    the task was sent to it first): plait.cancel without force."""

    identity: bytes


@dataclass(frozen=True, slots=True)
class Unlink:
    """Remove these files or directories, if they are there (a dead node's arena, spills)."""

    paths: tuple[str, ...]


Instruction = (ToClient | ToNode | ToHead | ToWorker | StartWorker | KillWorker
               | InterruptWorker | Unlink)


class Outbox:
    """The instructions a state machine has decided and not yet handed out."""

    def __init__(self) -> None:
        self.out: list[Instruction] = []

    def emit(self, instruction: Instruction) -> None:
        self.out.append(instruction)

    def take(self) -> list[Instruction]:
        """Everything decided so far, oldest first; the outbox is empty after."""
        out, self.out = self.out, []
        return out
