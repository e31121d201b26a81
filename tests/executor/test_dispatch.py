"""Each process's handlers are the messages the protocol's diagram sends it, no more, no
fewer; a handler named after no message fails the import (wire/dispatch.py)."""

from __future__ import annotations

import re

import pytest

from plait.executor.head import head
from plait.executor.node import node, transfers
from plait.executor.wire import protocol as p
from plait.executor.wire.dispatch import MESSAGES, handlers


def drawn() -> dict[tuple[str, str], set[str]]:
    """(sender, receiver) -> the messages protocol.py's diagram draws between them."""
    block = p.__doc__.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    statements = re.sub(r"/\n\s+", "/", block)      # a list of names goes on below
    routes: dict[tuple[str, str], set[str]] = {}
    for line in statements.splitlines():
        left, arrow, names, right = re.match(
            r"\s*(\w+)\s+(<?--)([\w/]+)-*>?\s+(\w+)", line).groups()
        route = (right, left) if arrow == "<--" else (left, right)
        routes.setdefault(route, set()).update(names.split("/"))
    return routes


@pytest.mark.parametrize(("route", "table"), [
    (("driver", "head"), head.FROM_CLIENT),
    (("node", "head"), head.FROM_NODE),
    (("head", "node"), node.FROM_HEAD),
    (("worker", "node"), node.FROM_WORKER),
    (("node", "peer"), transfers.FROM_PEER),
], ids=["head-from-client", "head-from-node", "node-from-head", "node-from-worker",
        "transfers-from-peer"])
def test_a_process_handles_exactly_what_is_sent_to_it(route, table):
    assert sorted(cls.__name__ for cls in table) == sorted(drawn()[route])


def test_the_diagram_names_every_message_and_nothing_else():
    names = set().union(*drawn().values()) | {"FetchHeader"}   # read between chunks
    assert names == set(MESSAGES)


def test_a_handler_for_no_message_fails_when_its_table_is_made():
    class Renamed:
        def on_Assign(self, message: p.Assign) -> None: ...

        def on_AssignTasks(self, message: object) -> None: ...    # a message since renamed

    with pytest.raises(TypeError, match="Renamed.on_AssignTasks handles no message"):
        handlers(Renamed, "on_")


def test_methods_that_name_no_message_are_not_handlers():
    class Plain:
        def on_worker(self) -> None: ...

        def node_lost(self) -> None: ...

    assert handlers(Plain, "on_") == {} and handlers(Plain, "node_") == {}
