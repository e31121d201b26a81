"""A node under test's decisions, read by kind: what the tests of the node look at."""

from __future__ import annotations

from plait.executor.node.node import Node
from plait.executor.wire import protocol as p
from plait.executor.wire.instructions import (Event, Instruction, InterruptWorker, KillWorker,
                                              StartWorker, ToHead, ToWorker)


class Decisions:
    """What a node under test decided, by kind, each in the order decided."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.to_workers: list[tuple[bytes, p.Message]] = []
        self.to_head: list[p.Message] = []
        self.killed: list[int] = []              # worker indexes
        self.interrupted: list[int] = []         # worker indexes
        self.started: list[object] = []          # WorkerConfigs

    def collect(self, instructions: list[Instruction] = ()) -> Decisions:
        """Sort these, and what the node decided outside an event (watchdogs), by kind."""
        for instruction in [*instructions, *self.node.take()]:
            match instruction:
                case ToWorker(identity, message):
                    self.to_workers.append((identity, message))
                case ToHead(message):
                    self.to_head.append(message)
                case KillWorker(identity):
                    self.killed.append(self.node.workers[identity].index)
                case InterruptWorker(identity):
                    self.interrupted.append(self.node.workers[identity].index)
                case StartWorker(config):
                    self.started.append(config)
                case _:
                    raise AssertionError(f"a node does not decide {instruction!r}")
        return self


def tell(node: Node, event: Event) -> None:
    node.decisions.collect(node.handle(event))


def sent(node: Node) -> list[tuple[bytes, p.Message]]:
    """Messages to workers, as (identity, message); clear() forgets those so far."""
    return node.decisions.collect().to_workers


def to_head(node: Node) -> list[p.Message]:
    return node.decisions.collect().to_head


def killed(node: Node) -> list[int]:
    return node.decisions.collect().killed


def interrupted(node: Node) -> list[int]:
    return node.decisions.collect().interrupted


def started(node: Node) -> list[object]:
    return node.decisions.collect().started
