"""``plait.util.state``: what the cluster holds now, by the names of Ray's state API
(``ray.util.state.list_objects``, ``list_actors``, ``list_nodes``).

The head's directory is the one record of every object alive (held by a client, another
object or a task, or still to be read by one); ``list_objects`` asks the head for it.
``list_actors`` asks the head for its actors (those whose last handle went are forgotten, so
a dead actor is listed while a handle to it lives); ``list_nodes`` lists ``plait.nodes()``.
Each filters as Ray does: ``filters=[("state", "=", "ALIVE")]``, predicates "=" and "!=",
values compared as strings. A task asks through its worker's own session with the head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plait.graph import context
from plait.graph.actor import name_and_namespace

DEFAULT_LIMIT = 100         # Ray's default number of rows
PREDICATES = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b}


class Row:
    """A row of a listing, read as attributes or, as Ray's rows, by key."""

    def __getitem__(self, key: str) -> Any:
        if key not in self.__dataclass_fields__:        # (each row is a dataclass)
            raise KeyError(key)
        return getattr(self, key)


@dataclass(frozen=True)
class ObjectState(Row):
    """One object: its id, "PENDING"/"READY"/"FAILED", its size in bytes (0 while
    pending) and how many holders and pending readers keep it alive. Read as attributes
    or, as Ray's rows, by key."""

    object_id: str
    state: str
    object_size: int
    holders: int
    readers: int

@dataclass(frozen=True)
class ActorState(Row):
    """One actor: its id, class, state ("PENDING_CREATION", "RESTARTING", "ALIVE" or
    "DEAD"), name and namespace ("" for none), the node it lives on, its restarts so far
    and whether it is detached. Read as attributes or by key."""

    actor_id: str
    class_name: str
    state: str
    name: str
    ray_namespace: str
    node_id: str
    num_restarts: int
    is_detached: bool

@dataclass(frozen=True)
class NodeState(Row):
    """One node: its id, address, "ALIVE" (plait lists only the live ones), whether it is
    the head, and what it offers (``resources_total``, Ray's names)."""

    node_id: str
    node_ip: str
    state: str
    is_head_node: bool
    resources_total: dict[str, float]

def list_objects(filters: list[tuple[str, str, Any]] | None = None,
                 limit: int = DEFAULT_LIMIT, **_ray_options: Any) -> list[ObjectState]:
    """The objects alive in the cluster now that pass every filter, at most ``limit``."""
    rows = [ObjectState(r.object_id, r.state, r.nbytes, r.holders, r.readers)
            for r in _head_rows("list_objects", "ask that engine's state API")]
    return _chosen(rows, filters, limit)


def list_actors(filters: list[tuple[str, str, Any]] | None = None,
                limit: int = DEFAULT_LIMIT, **_ray_options: Any) -> list[ActorState]:
    """The actors the head knows now that pass every filter, at most ``limit``."""
    rows = [ActorState(r.actor, r.class_name, _ray_state(r.state, r.restarts),
                       *name_and_namespace(r.name), r.node, r.restarts, r.detached)
            for r in _head_rows("list_actors", "plait runs no actors there")]
    return _chosen(rows, filters, limit)


def _ray_state(state: str, restarts: int) -> str:
    """Ray's name of an actor's state (protocol.ActorRow's plait names)."""
    if state == "starting":
        return "RESTARTING" if restarts else "PENDING_CREATION"
    return state.upper()


def list_nodes(filters: list[tuple[str, str, Any]] | None = None,
               limit: int = DEFAULT_LIMIT, **_ray_options: Any) -> list[NodeState]:
    """The live nodes (head first) that pass every filter, at most ``limit``."""
    from plait import api

    rows = [NodeState(node["NodeID"], node["NodeManagerAddress"], "ALIVE", node["IsHead"],
                      dict(node["Resources"])) for node in api.nodes()]
    return _chosen(rows, filters, limit)


def _head_rows(listing: str, instead: str) -> tuple[Any, ...]:
    """The head's rows for ``listing`` (the session's method of that name); under
    engine="ray"/"dask" there is no plait head to ask (``instead`` says what to do)."""
    lister = getattr(context.runtime(), listing, None)
    if lister is None:
        raise NotImplementedError(f"{listing} lists plait's own head; under engine='ray' "
                                  f"or 'dask', {instead}")
    return lister()


def _chosen(rows: list[Any], filters: list[tuple[str, str, Any]] | None, limit: int
            ) -> list[Any]:
    """The rows that pass every filter, at most ``limit`` of them."""
    return [row for row in rows if _passes(row, filters or [])][:limit]


def _passes(row: Row, filters: list[tuple[str, str, Any]]) -> bool:
    """Whether ``row`` passes every (key, predicate, value) filter.

    >>> _passes(ObjectState("f-1.0", "READY", 8, 1, 0), [("state", "=", "READY")])
    True
    >>> _passes(ObjectState("f-1.0", "READY", 8, 1, 0), [("object_id", "!=", "f-1.0")])
    False
    """
    for key, predicate, value in filters:
        if predicate not in PREDICATES:
            raise ValueError(f"unsupported filter predicate {predicate!r}; use one of "
                             f"{sorted(PREDICATES)}")
        if not PREDICATES[predicate](str(row[key]), str(value)):
            return False
    return True


__all__ = ["ActorState", "NodeState", "ObjectState", "list_actors", "list_nodes",
           "list_objects"]
