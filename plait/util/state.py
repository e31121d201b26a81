"""``plait.util.state``: what the cluster holds now, by the names of Ray's state API
(``ray.util.state.list_objects``).

The head's directory is the one record of every object alive (held by a client, another
object or a task, or still to be read by one); ``list_objects`` asks the head for it and
filters as Ray does: ``filters=[("object_id", "=", ref.hex())]``, predicates "=" and "!=",
values compared as strings. A task asks through its worker's own session with the head.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from plait.graph import context

DEFAULT_LIMIT = 100         # Ray's default number of rows
PREDICATES = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b}


@dataclass(frozen=True)
class ObjectState:
    """One object: its id, "PENDING"/"READY"/"FAILED", its size in bytes (0 while
    pending) and how many holders and pending readers keep it alive. Read as attributes
    or, as Ray's rows, by key."""

    object_id: str
    state: str
    object_size: int
    holders: int
    readers: int

    def __getitem__(self, key: str) -> Any:
        return asdict(self)[key]


def list_objects(filters: list[tuple[str, str, Any]] | None = None,
                 limit: int = DEFAULT_LIMIT, **_ray_options: Any) -> list[ObjectState]:
    """The objects alive in the cluster now that pass every filter, at most ``limit``."""
    lister = getattr(context.runtime(), "list_objects", None)
    if lister is None:                    # engine="ray"/"dask": that cluster keeps its own
        raise NotImplementedError("list_objects lists plait's own head; under engine="
                                  "'ray' or 'dask', ask that engine's state API")
    rows = [ObjectState(r.object_id, r.state, r.nbytes, r.holders, r.readers)
            for r in lister()]
    return [row for row in rows if _passes(row, filters or [])][:limit]


def _passes(row: ObjectState, filters: list[tuple[str, str, Any]]) -> bool:
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


__all__ = ["ObjectState", "list_objects"]
