"""plait's names of an engine's nodes, the same in every session on that engine.

A plait session on Ray or Dask calls the engine's nodes node-0 (the head), node-1, ... in
the order they were first met. The driver's session and each worker's own (a task that
submits tasks, or asks its runtime context) must agree, though each meets the nodes at its
own time: once a node has died or joined, the engine's list no longer gives a node the place
it had when the driver met it. So the names live in the engine, beside its objects (Ray's
internal key-value store, Dask's scheduler metadata): the first session to meet a node
claims a free number for it (the next past every name that session knows), and every
later session reads it. A node that dies keeps its name; a number is never given twice.

A claim is two keys, each written only if it has no value yet (atomically, by the engine):
``number:node-i`` (which node holds that number) and ``node:ID`` (that node's name). Two
sessions meeting one new node at once may each take a number; the one whose ``node:ID``
lands first names it, and the other's number stays unused.
"""

from __future__ import annotations

from collections.abc import Callable

NODE = "node:"           # node:ENGINE_ID -> its name
NUMBER = "number:"       # number:node-i -> the engine id holding that number

Read = Callable[[str], "str | None"]      # a key's value, or None
Add = Callable[[str, str], bool]          # store unless the key has a value; whether it did


def claim(engine_id: str, read: Read, add: Add, start: int) -> str:
    """The name of one node: the one already claimed, or the first free number from
    ``start``, claimed now."""
    name = read(NODE + engine_id)
    number = start
    while name is None:
        if add(f"{NUMBER}node-{number}", engine_id):
            if add(NODE + engine_id, f"node-{number}"):
                return f"node-{number}"
            name = read(NODE + engine_id)     # another session named it first
        number += 1
    return name


def search_start(names: dict[str, str]) -> int:
    """Where a session starts looking for a free number: past every name it knows, so the
    search is short (a free number it skips is only a gap in the names)."""
    return 1 + max(map(number, names.values()), default=-1)


def number(name: str) -> int:
    """node-7 -> 7."""
    return int(name.rpartition("-")[2])


def table_add(table: dict[str, str]) -> Add:
    """``add`` on a plain dict, for a table read and written back under a lock."""
    def add(key: str, value: str) -> bool:
        if key in table:
            return False
        table[key] = value
        return True
    return add
