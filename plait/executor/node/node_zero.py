"""Node-0: the head and a node in one process, handing each other their messages there.

The head's instructions for node-0 (ToNode) and node-0's for the head (ToHead) never touch
a socket: ``route`` hands each to the other machine at once, before the next instruction,
in the order a direct call would have had, and returns only what leaves the process
(messages to drivers, other nodes and workers; workers to start or kill; files to
remove). The server carries those out; tests read them.
"""

from __future__ import annotations

import logging

from plait.executor.head.head import Head
from plait.executor.node.node import Node
from plait.executor.wire.instructions import (Event, FromHead, FromNode, Instruction, ToHead,
                                              ToNode)

log = logging.getLogger("plait.node")


class NodeZero:
    """The head and its own node, as one state machine for node-0's loop."""

    def __init__(self, head: Head, node: Node) -> None:
        self.head = head
        self.node = node

    def handle(self, machine: Head | Node, event: Event) -> list[Instruction]:
        """Give one of the two an event; return what leaves the process, in order."""
        return self.route(machine.handle(event))

    def route(self, instructions: list[Instruction]) -> list[Instruction]:
        out: list[Instruction] = []
        for instruction in instructions:
            if isinstance(instruction, ToNode) and instruction.node == self.node.id:
                out += self.hand_over(self.node, FromHead(instruction.message))
            elif isinstance(instruction, ToHead):
                out += self.hand_over(self.head, FromNode(self.node.id, instruction.message))
            else:
                out.append(instruction)
        if self.node.out:             # a driver's put reached node-0's store, which evicted
            out += self.route(self.node.take())
        return out

    def hand_over(self, machine: Head | Node, event: FromHead | FromNode) -> list[Instruction]:
        """A failure of the receiver is logged like a bad message's; the instructions after
        it are still carried out (a socket would have delivered them all)."""
        try:
            return self.handle(machine, event)
        except Exception:
            log.exception("%s failed handling %s", self.node.id, type(event.message).__name__)
            return self.route(machine.take())
