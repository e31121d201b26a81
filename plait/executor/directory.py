"""The directory: what the head knows of every object (value or pending, who holds refs).

An object lives while a client holds a ref to it *or* a submitted task still has to read
it. When both are gone its block goes back to the store (``reclaim``). ``plait.free``
forces the end early and leaves a tombstone, so a later ``get`` raises ObjectFreedError
instead of hanging or returning reused memory.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from plait.errors import ObjectFreedError, ObjectLostError
from plait.executor import protocol as p

Peer = Hashable          # who to notify: (socket kind, identity)


@dataclass
class Entry:
    value: p.ObjectValue | None = None       # None: its task has not finished
    held: bool = True                        # a client still holds a ref
    readers: int = 0                         # submitted tasks yet to read it
    waiters: list[Peer] = field(default_factory=list)


class Directory:
    """Object id -> Entry; calls ``reclaim(value)`` when an object's memory may be reused."""

    def __init__(self, reclaim: Callable[[p.ObjectValue], None]) -> None:
        self.entries: dict[str, Entry] = {}
        self.tombstones: dict[str, str] = {}
        self._reclaim = reclaim

    def expect(self, object_id: str) -> None:
        """A submitted task will produce this object."""
        self.entries.setdefault(object_id, Entry())

    def set_value(self, object_id: str, value: p.ObjectValue) -> list[Peer]:
        """Record a finished object; returns the peers waiting for it."""
        entry = self.entries.get(object_id)
        if entry is None:                      # nobody wants it any more
            self._reclaim(value)
            return []
        if entry.value is not None:            # a duplicate result: the first one won
            self._reclaim(value)
            return []
        entry.value = value
        waiters, entry.waiters = entry.waiters, []
        self._maybe_drop(object_id, entry)
        return waiters

    def lookup(self, object_id: str) -> p.ObjectValue | None:
        """The value, a Failed value if the object is gone, or None if still pending."""
        entry = self.entries.get(object_id)
        if entry is not None:
            return entry.value
        return p.Failed(pickle.dumps(self.missing_error(object_id)))

    def missing_error(self, object_id: str) -> ObjectLostError:
        if object_id in self.tombstones:
            return ObjectFreedError(object_id, self.tombstones[object_id])
        return ObjectLostError(object_id, "the cluster holds no copy and no task will make one")

    def subscribe(self, object_id: str, peer: Peer) -> p.ObjectValue | None:
        """The value now, or None after noting that ``peer`` wants to hear of it."""
        value = self.lookup(object_id)
        if value is None:
            self.entries[object_id].waiters.append(peer)
        return value

    def add_reader(self, object_id: str) -> None:
        self.entries[object_id].readers += 1

    def drop_reader(self, object_id: str) -> None:
        entry = self.entries.get(object_id)
        if entry is not None:
            entry.readers -= 1
            self._maybe_drop(object_id, entry)

    def release(self, object_id: str) -> None:
        """The client's last ref is gone."""
        entry = self.entries.get(object_id)
        if entry is not None:
            entry.held = False
            self._maybe_drop(object_id, entry)

    def force_free(self, object_id: str) -> None:
        """plait.free: drop the object now; later reads raise ObjectFreedError."""
        entry = self.entries.pop(object_id, None)
        self.tombstones[object_id] = "released early with plait.free"
        if entry is not None and entry.value is not None:
            self._reclaim(entry.value)

    def _maybe_drop(self, object_id: str, entry: Entry) -> None:
        if not entry.held and entry.readers <= 0 and entry.value is not None:
            del self.entries[object_id]
            self._reclaim(entry.value)
