"""The directory: what the head knows of every object (value or pending, who keeps it).

An object lives while something *holds* it or a submitted task still has to *read* it.
Holders are counted: the client that created it (one hold, whatever its number of refs),
each client that found a ref to it inside another object (``Hold``), each stored object
whose pickled value contains a ref to it, and the task that put it (until the task ends).
When holders and readers both reach zero its memory goes back to the store (``reclaim``),
and the objects it contained lose a holder in turn.

``plait.free`` ends an object early and leaves a tombstone, so a later ``get`` raises
ObjectFreedError instead of hanging or returning reused memory. Tombstones are kept for the
last MAX_TOMBSTONES frees (a long run that frees as it goes must not grow for ever); a get
of an object freed longer ago raises ObjectLostError instead.

An object reclaimed the ordinary way is remembered too, for the last MAX_GONE of them,
with the holder that let go of it last (``release``'s ``by``: a client's Free, a client
gone, a task ended, a container reclaimed). A ref that outlives the holds the head
counted then fails naming who let go, not only "no copy and no task will make one", which
cannot tell a reclaimed object from one the head never heard of (issue 11: a benchmark's
driver lost an object it still held, once in ~14 runs, and nothing said which).

A failed object that goes with no client having got its error and no task having read it
is reported to the client whose task made it (``unhandled``), which logs its error, as Ray logs
an "Unhandled error" (driver/unhandled.py).
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from plait.errors import ObjectFreedError, ObjectLostError
from plait.executor.wire import protocol as p
from plait.executor.wire.instructions import Peer

MAX_TOMBSTONES = 100_000     # about 10 MiB of the head's memory at most
MAX_GONE = 10_000            # reclaimed objects remembered (~1.5 MiB): seconds of a busy run


@dataclass(slots=True)
class Entry:
    value: p.ObjectValue | None = None       # None: its task has not finished
    holders: int = 1
    readers: int = 0                         # submitted tasks yet to read it
    waiters: list[Peer] = field(default_factory=list)
    let_go_by: str = ""                      # the last holder that let go (for errors)
    owner: Peer | None = None                # the client whose task makes it (if one did)
    seen: bool = False                       # a client got its error or a task read it


class Directory:
    """Object id -> Entry; calls ``reclaim(id, value)`` when an object's memory may go."""

    def __init__(self, reclaim: Callable[[str, p.ObjectValue], None],
                 unhandled: Callable[[Peer, str, p.Failed], None] | None = None) -> None:
        self.entries: dict[str, Entry] = {}
        self.tombstones: OrderedDict[str, str] = OrderedDict()
        self.gone: OrderedDict[str, str] = OrderedDict()   # reclaimed -> who let go last
        self._reclaim = reclaim
        self._unhandled = unhandled

    def rows(self) -> tuple[p.ObjectRow, ...]:
        """Every object held now, as the rows of Ray's ``list_objects`` (in id order)."""
        return tuple(_row(oid, self.entries[oid]) for oid in sorted(self.entries))

    def expect(self, object_id: str, owner: Peer | None = None) -> None:
        """A client created this object or submitted the task that will produce it
        (``owner``: the client told if the task fails and nobody ever asks for the error)."""
        self.entries.setdefault(object_id, Entry(owner=owner))

    def revive(self, object_id: str) -> None:
        """A reclaimed object is being made again for a task that re-runs: pending, held
        by nobody, it lives while that task has yet to read it."""
        self.entries[object_id] = Entry(holders=0)

    def set_value(self, object_id: str, value: p.ObjectValue) -> list[Peer]:
        """Record a finished object; returns the peers waiting for it."""
        entry = self.entries.get(object_id)
        if entry is None or entry.value is not None:    # unwanted, or a duplicate result
            self._reclaim(object_id, value)
            return []
        entry.value = value
        for inner in getattr(value, "contains", ()):
            self.hold(inner)
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
        if object_id in self.gone:
            return ObjectLostError(object_id, f"it was reclaimed once nothing held it or was "
                                              f"to read it; the last holder to let go: "
                                              f"{self.gone[object_id] or 'none (never held)'}")
        return ObjectLostError(object_id, "the cluster holds no copy and no task will make one")

    def subscribe(self, object_id: str, peer: Peer, reads: bool = False
                  ) -> p.ObjectValue | None:
        """The value now, or None after noting that ``peer`` wants to hear of it. A node
        ``reads`` it (for a task: its error, if it fails, goes on into that task's); a
        client's get or wait does not count as seeing it until the client says its error
        was raised (``handled``): Ray logs a failed ref that was only waited on."""
        if reads:
            self.handled(object_id)
        value = self.lookup(object_id)
        if value is None:
            self.entries[object_id].waiters.append(peer)
        return value

    def handled(self, object_id: str) -> None:
        """Its error, if it fails, reached the program: a client's get raised it, or a
        task reads it (its error goes on into the task's). Not "unhandled" then."""
        entry = self.entries.get(object_id)
        if entry is not None:
            entry.seen = True

    def hold(self, object_id: str) -> None:
        entry = self.entries.get(object_id)
        if entry is not None:
            entry.holders += 1

    def release(self, object_id: str, by: str = "") -> None:
        """One holder (``by`` says which, for errors) is done with the object."""
        entry = self.entries.get(object_id)
        if entry is not None:
            entry.holders -= 1
            entry.let_go_by = by
            self._maybe_drop(object_id, entry)

    def add_reader(self, object_id: str) -> None:
        entry = self.entries[object_id]
        entry.readers += 1
        entry.seen = True            # its error, if it fails, goes on into the reader's

    def drop_reader(self, object_id: str) -> None:
        entry = self.entries.get(object_id)
        if entry is not None:
            entry.readers -= 1
            self._maybe_drop(object_id, entry)

    def force_free(self, object_id: str) -> None:
        """plait.free: drop the object now; later reads raise ObjectFreedError."""
        entry = self.entries.pop(object_id, None)
        self.tombstones[object_id] = "released early with plait.free"
        if len(self.tombstones) > MAX_TOMBSTONES:
            self.tombstones.popitem(last=False)
        if entry is not None and entry.value is not None:
            self._drop(object_id, entry.value)

    def _maybe_drop(self, object_id: str, entry: Entry) -> None:
        if entry.holders <= 0 and entry.readers <= 0 and entry.value is not None:
            del self.entries[object_id]
            self.gone[object_id] = entry.let_go_by
            if len(self.gone) > MAX_GONE:
                self.gone.popitem(last=False)
            if isinstance(entry.value, p.Failed) and not entry.seen \
                    and entry.owner is not None and self._unhandled is not None:
                self._unhandled(entry.owner, object_id, entry.value)
            self._drop(object_id, entry.value)

    def _drop(self, object_id: str, value: p.ObjectValue) -> None:
        self._reclaim(object_id, value)
        for inner in getattr(value, "contains", ()):
            self.release(inner, f"{object_id}, which contained it")


def _row(object_id: str, entry: Entry) -> p.ObjectRow:
    value = entry.value
    state = ("PENDING" if value is None or isinstance(value, p.Pending) else
             "FAILED" if isinstance(value, p.Failed) else "READY")
    nbytes = len(value.data) if isinstance(value, p.Inline) else getattr(value, "nbytes", 0)
    return p.ObjectRow(object_id, state, nbytes, entry.holders, entry.readers)
