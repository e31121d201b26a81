"""``plait.util.list_named_actors``: the names of the named actors alive, as Ray's.

plait's names have no per-job namespace: an actor named without ``namespace=`` is found by
that name from every driver (see the README), so those are the names listed by default.
"""

from __future__ import annotations

from typing import Any

from plait.graph import context
from plait.graph.actor import name_and_namespace


def list_named_actors(all_namespaces: bool = False) -> list[Any]:
    """The names of the named actors alive: those created without a namespace as str, or
    with ``all_namespaces`` every one as ``{"name": ..., "namespace": ...}`` (Ray's rows;
    "" for none)."""
    named = [name_and_namespace(registered)
             for registered in context.runtime().actor_names()]
    if all_namespaces:
        return [{"name": name, "namespace": namespace} for name, namespace in named]
    return [name for name, namespace in named if not namespace]
