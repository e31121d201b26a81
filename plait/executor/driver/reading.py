"""How a session reads objects: pinned in place on this host, pulled from other hosts.

Objects on this host are pinned (one round trip for all) and mapped zero-copy from their
node's arena; those held on other hosts are pulled over the network into private memory.
A mixin of Session: it uses the session's connection, its known values and its pins.

Pins, one per zero-copy view (the head counts them per client, the node per object)::

    get(X) --Pin--> head --Pin--> node: X may not move      view alive
    view dies: its finalizer queues (X, Located)             pin kept, no view
    next plait call: Unpin(node, X) is sent                  X may spill again

A view's pin outlives the view until the session's next call, or until the session has been
quiet for FREE_AFTER_IDLE_SECONDS (the idle flusher sends it then). When that
call is a get of X itself (X's ref still alive here), the pin is not sent back but taken
by the new view: no round trip for an object read again and again on this host. The head
and the node never see the difference: one pin per view, each undone once. A pin the get
did not use (or a get that failed) is sent back with the next call.

A put starts the same way: its block is pinned while the driver writes it, and at the Seal
the head hands that pin to the driver instead of undoing it, as if a view of the object
had just died. So the first get after a put asks nothing of the head either::

    put(X) --Alloc--> head: block pinned     --Seal--> head: the pin is now the driver's
    get(X) takes that pin (or the next call, or FREE_AFTER_IDLE_SECONDS, sends it back)

A put of up to 32 MiB then asks for the next put's block at once (Alloc, ``spare``),
so that a program putting many objects of one size waits for no Alloc answer after the
first (session.py, SPARE_MAX_BYTES).
"""

from __future__ import annotations

import pickle
import time
import weakref
from typing import Any

from plait.errors import ObjectCorruptedError, ObjectLostError, PlaitError
from plait.store.serialization import deserialize

FAR_TIMEOUT_SECONDS = 10.0     # a node on another host silent this long between chunks
MOVED_RETRIES = 3              # times a get asks again where an object is after its node left
FAR_PULLS = 3                  # pulls of one object from other hosts per get (fetch_far)


class ObjectReading:
    """Pinning, pulling and rebuilding objects for the Session (see the module docstring)."""

    def pin_stored(self, object_ids: list[str], found: dict[str, list[Any]],
                   deadline: float | None = None) -> None:
        """Fill ``found`` with where to read the stored objects among ``object_ids``: one
        value per time each is asked, to ``pop`` (a Located is one pin, for one view).

        Objects on this host are read in place, each view on a pin of its own: one kept
        from a dead view of this get's objects (``reusable``), else one asked of the head
        (one round trip for all); those held on other hosts are fetched over the network
        into private memory, once. ``found`` is the caller's, so that the pins it holds
        when a later step fails are given back (``unpin_unused``). An object whose node
        left is asked of the head again, within the get's ``deadline``.
        """
        from plait.executor.wire import protocol as p

        stored = self.stored_on_live_nodes(object_ids, deadline)
        far = {oid for oid in stored if self.node_info(self.values[oid].node).host != self.host}
        ask = []
        for oid in stored:
            kept = self.reusable.get(oid)
            if oid in far:
                value = found[oid][0] if oid in found else self.fetch_far(oid, deadline)
                if isinstance(value, p.Stored):   # it is on this host now: pinned in place
                    ask.append(oid)
                    continue
                found.setdefault(oid, []).append(value)
            elif kept:
                found.setdefault(oid, []).append(kept.pop())
            else:
                ask.append(oid)
        if ask:
            for oid, value in self.request(p.Pin(next(self.requests), tuple(ask))).values:
                if isinstance(value, p.OnDisk):
                    value = self.read_on_disk(oid, value)
                found.setdefault(oid, []).append(value)

    def read_on_disk(self, object_id: str, value: Any) -> Any:
        """An object its node's store had no room to bring back, read in place from its
        spill file, mapped (an Inline value over the mapping). A file gone meanwhile (its
        node found it lost, or the object was freed) is asked of the head again: its
        answer then says where the object is, or why it is not. A file found altered is
        told to the head first, which drops that copy and finds another or has the object
        made again from its lineage (a put's is lost), as a task's read of it would."""
        from plait.executor.wire import protocol as p
        from plait.store.spill import SpillRecord, mapped

        for _ in range(MOVED_RETRIES):
            try:
                data = mapped(object_id, SpillRecord(value.path, value.nbytes, value.crc))
                return p.Inline(data, value.contains)      # type: ignore[arg-type]
            except ObjectCorruptedError as error:
                self.conn.send(p.CorruptCopy(object_id, value.node, pickle.dumps(error)))
            except ObjectLostError:
                pass
            value = self.request(p.Pin(next(self.requests), (object_id,))).values[0][1]
            if not isinstance(value, p.OnDisk):
                return value
        return p.Failed(pickle.dumps(ObjectLostError(
            object_id, f"its spill file on {value.node} kept going before it was read")))

    def unpin_unused(self, found: dict[str, list[Any]]) -> None:
        """Queue the Unpin of every pin no view took: kept ones, and those ``found`` still
        has after a failed get (sent with the next call, as a dead view's)."""
        from plait.executor.wire import protocol as p

        for oid, values in found.items():
            self.reusable.setdefault(oid, []).extend(
                v for v in values if isinstance(v, p.Located))
        for oid, located in self.reusable.items():
            for value in located:
                self.pins[oid] += 1               # take_dropped counts it down again
                self.unpinned.append((oid, value))
        self.reusable.clear()

    def stored_on_live_nodes(self, object_ids: list[str], deadline: float | None = None
                             ) -> list[str]:
        """Those of ``object_ids`` stored on a node, each known where it is now: a location
        on a node that left since it was learned (a ``wait`` or a ``get`` learns it) is
        dropped and the head asked again, which knows where the object is now, or makes it
        again from its lineage, or says it is lost."""
        from plait.executor.wire import protocol as p

        for _ in range(MOVED_RETRIES):
            stored = [oid for oid in object_ids if isinstance(self.values[oid], p.Stored)]
            gone = self.on_nodes_gone(stored)
            if not gone:
                return stored
            for oid in gone:
                self.values.pop(oid)
            self.fetch(gone, len(gone), _left(deadline))
        return [oid for oid in object_ids if isinstance(self.values[oid], p.Stored)]

    def on_nodes_gone(self, object_ids: list[str]) -> list[str]:
        """Those of these stored objects whose node is not in the cluster (the list of
        nodes is read again only when one is not in the list this driver has)."""
        known = {n.id for n in self.nodes}
        if all(self.values[oid].node in known for oid in object_ids):
            return []
        known = {n.id for n in self.refresh_nodes()}
        return [oid for oid in object_ids if self.values[oid].node not in known]

    def fetch_far(self, object_id: str, deadline: float | None = None) -> Any:
        """Pull from the node holding it; if that fails, ask the head where it is now, and
        read it from there: pulled again (FAR_PULLS pulls in all), or, once the head says
        it is on this host (a replica, or made again here), returned as that ``Stored``
        for ``pin_stored`` to pin in place. A holder killed mid-pull breaks its TCP streams
        at once, before the head has heard of its death, so the head's next answer may
        name it again (that pull waits FAR_TIMEOUT_SECONDS in vain), and only the one
        after that where the object is now: that answer is read too, never handed on as
        a value (ObjectLostError once the pulls are spent)."""
        from plait.executor.wire import protocol as p
        from plait.executor.wire.fetch import pull_object

        pulls, reason = 0, ""
        for _ in range(FAR_PULLS + MOVED_RETRIES):
            value = self.values[object_id]
            if not isinstance(value, p.Stored):
                return value
            if all(n.id != value.node for n in self.refresh_nodes()):
                reason = f"{value.node} left"       # its node left: ask the head again
            elif self.node_info(value.node).host == self.host:
                return value
            elif pulls == FAR_PULLS:
                break
            else:
                pulls += 1
                info = self.node_info(value.node)
                try:
                    return p.Inline(pull_object(self.conn.ctx, info.address, self.conn.frames,
                                                object_id, value.nbytes,
                                                timeout=FAR_TIMEOUT_SECONDS))
                except PlaitError as error:     # stale: the head knows better
                    reason = f"{type(error).__name__}: {error}"
            self.values.pop(object_id)
            self.fetch([object_id], 1, _left(deadline))
        raise ObjectLostError(object_id, f"no copy could be read from this host ({reason})")

    def node_info(self, node: str) -> Any:
        """A node's info; the list is refreshed when a node joined after we connected
        (ClusterError if it is not in the cluster any more)."""
        found = next((n for n in self.nodes if n.id == node), None)
        if found is None:
            self.refresh_nodes()
            found = next((n for n in self.nodes if n.id == node), None)
        if found is None:
            from plait.errors import ClusterError

            raise ClusterError(f"{node} is not in the cluster any more")
        return found

    def load(self, object_id: str, pinned: Any = None) -> Any:
        """Rebuild an object; arena-backed buffers come back zero-copy and read-only.

        A pinned object stays in memory while any view of it lives: all its buffers are
        slices of one ``holder`` array, whose finalizer ends the pin.
        """
        from plait.executor.wire import protocol as p

        value = pinned if pinned is not None else self.values[object_id]
        if isinstance(value, p.Inline):
            return raised_if_error(deserialize(value.data))
        if isinstance(value, p.Failed):
            self.conn.send(p.Handled((object_id,)))     # not an "Unhandled error" when it goes
            raise pickle.loads(value.error)
        assert isinstance(value, p.Located), value
        import numpy      # here, not above: a driver that never reads a stored object (a
        #                   script without numpy getting small results) never loads it
        holder = numpy.frombuffer(self.arena(value.node).block(value.offset, value.nbytes),
                                  dtype=numpy.uint8)
        self.pins[object_id] += 1
        weakref.finalize(holder, self.view_died, (object_id, value))
        return raised_if_error(deserialize(holder))

    def view_died(self, pin: tuple[str, Any]) -> None:
        """A view's finalizer (any thread): its pin goes back with the next call, or once
        the session has been quiet a moment (a task that read an object, dropped it and
        now only writes must not keep it from spilling)."""
        self.unpinned.append(pin)
        if len(self.unpinned) == 1:
            self.flusher.wake()

    def arena(self, node: str) -> Any:
        """The arena of a node on this host, mapped on first use."""
        from plait.store.arena import Arena

        if node not in self.arenas:
            self.arenas[node] = Arena.attach(self.node_info(node).arena)
        return self.arenas[node]


def _left(deadline: float | None) -> float | None:
    """Seconds left before ``deadline`` (None: no limit), never below 0."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def raised_if_error(value: Any) -> Any:
    """A value that is one of plait's errors (a task returned it, or it was put) is raised
    by the get that reads it, as Ray's get raises a RayError it reads."""
    if isinstance(value, PlaitError):
        raise value
    return value
