"""Locations: which nodes hold a stored copy of each object, and back, which objects each
node holds.

A node that dies takes its copies with it; finding them by scanning every object's holders
cost O(objects) per loss. The reverse index makes it O(the dead node's objects).
"""

from __future__ import annotations


class Locations(dict[str, set[str]]):
    """Object -> the nodes holding a copy (a dict, read as one), plus ``on(node)``.
    Changed only through ``add``, ``discard`` and ``pop``."""

    def __init__(self) -> None:
        super().__init__()
        self.held: dict[str, dict[str, None]] = {}     # node -> its objects, oldest first

    def add(self, object_id: str, node: str) -> None:
        self.setdefault(object_id, set()).add(node)
        self.held.setdefault(node, {})[object_id] = None

    def discard(self, object_id: str, node: str) -> None:
        holders = self.get(object_id)
        if holders is not None:
            holders.discard(node)
        self._unhold(object_id, node)

    def pop(self, object_id: str, default: set[str] | None = None) -> set[str]:  # type: ignore[override]
        holders = super().pop(object_id, None)
        if holders is None:
            return set() if default is None else default
        for node in holders:
            self._unhold(object_id, node)
        return holders

    def on(self, node: str) -> list[str]:
        """Objects ``node`` holds a copy of, oldest first."""
        return list(self.held.get(node, ()))

    def _unhold(self, object_id: str, node: str) -> None:
        objects = self.held.get(node)
        if objects is not None:
            objects.pop(object_id, None)
            if not objects:
                del self.held[node]

    def problems(self) -> list[str]:
        """Where the two directions disagree (validate_state)."""
        wrong = [f"{o} on {n}" for n, objects in self.held.items() for o in objects
                 if n not in self.get(o, ())]
        wrong += [f"{o} on {n} unindexed" for o, nodes in self.items() for n in nodes
                  if o not in self.held.get(n, ())]
        return wrong
