"""ObjectStore: one node's objects in its arena, under a fixed capacity, spilling when full.

Each object is in one of three states::

    allocated --seal--> in memory <--spill / restore--> on disk
    (being written,      (LRU when unpinned)             (spill file + CRC)
     pinned)

Pins (a running task reading the object, a driver holding a zero-copy view, a block still
being written) keep an object in memory at a fixed offset. When an allocation does not fit,
the store first drops unpinned replicas (copies another node also holds), then spills
unpinned primaries, least recently used first, until enough bytes are free; if those free
bytes lie in pieces too small, it clears the cheapest run of unpinned neighbours to make
one block whole (``allocator.cheapest_window``). Only when pinned objects leave no such run
does it raise ObjectStoreFullError, naming the sizes and the largest objects; a reader the
store cannot restore a spilled object for then reads its spill file instead (``on_disk``),
as Ray falls back to disk. An object larger than the whole store is on disk from the start
(``allocate_on_disk``: its writer fills the file, ``seal`` takes its CRCs) and stays there.

``pinned_bytes`` (blocks held in memory by pins) is kept as pins change, so the node can ask
in O(1) whether a task's inputs and result could be held (``room``) before it starts one.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from plait.errors import ObjectLostError, ObjectStoreFullError, ObjectTooLargeError
from plait.store.allocator import Allocator, cheapest_window, highest_window
from plait.store.arena import Arena
from plait.store.spill import SpillError, Spiller, SpillRecord


@dataclass
class StoredObject:
    id: str
    nbytes: int
    created_by: str
    offset: int | None = None          # None while spilled
    spill: SpillRecord | None = None
    pins: int = 1                      # born pinned: the writer holds it until sealed
    replica: bool = False
    sealed: bool = False


@dataclass(frozen=True, slots=True)
class ObjectSummary:
    id: str
    nbytes: int
    state: str                         # "memory", "pinned", "spilled" or "reserved" (a
    #                                    block not written yet: a put or a result on its
    #                                    way, or a driver's block for its next put)
    created_by: str


@dataclass(frozen=True, slots=True)
class StoreSummary:
    """What ``plait.memory_summary()`` shows for one node."""

    node: str
    capacity: int
    used: int
    pinned: int
    objects: int                       # sealed ones (a block being written is not yet one)
    spilled_bytes: int
    spilled_objects: int
    spill_gbps: float
    restore_gbps: float
    largest: tuple[ObjectSummary, ...]
    spilled_total: int = 0             # bytes written to spill files since start
    restored_total: int = 0            # bytes read back from them since start


class ObjectStore:
    """Objects of one node: allocation, pins, LRU spilling and restoring."""

    def __init__(self, node: str, arena: Arena, spiller: Spiller | None,
                 on_dropped: Callable[[str], None] = lambda _: None) -> None:
        self.node = node
        self.arena = arena
        self.allocator = Allocator(arena.capacity)
        self.spiller = spiller
        self.objects: dict[str, StoredObject] = {}
        self.lru: OrderedDict[str, None] = OrderedDict()     # in memory, unpinned
        self.pinned_bytes = 0                                 # blocks of pinned objects
        self._on_dropped = on_dropped                         # a replica was evicted

    # -- lifecycle of one object ---------------------------------------------------------

    def allocate(self, object_id: str, nbytes: int, created_by: str,
                 replica: bool = False) -> int:
        """Reserve a pinned block for an object about to be written; returns its offset."""
        assert object_id not in self.objects, f"{object_id} allocated twice"
        offset = self._allocate(nbytes, object_id)
        self.objects[object_id] = StoredObject(object_id, nbytes, created_by, offset,
                                               replica=replica)
        self.pinned_bytes += Allocator.block_size(nbytes)
        return offset

    def allocate_on_disk(self, object_id: str, nbytes: int, created_by: str) -> str:
        """An object larger than the whole store, or one the store has no room for while
        nothing will free any, is written straight to a file of the spill directory (Ray's
        fallback allocation; its writer gives the CRCs at ``seal``): its path. Readers read
        it from there (``on_disk``), or from memory once it is restored. Without spilling:
        ObjectTooLargeError or ObjectStoreFullError, and nothing is allocated."""
        assert object_id not in self.objects, f"{object_id} allocated twice"
        if self.spiller is None:
            if self.too_large(nbytes):
                self._allocate(nbytes, object_id)     # raises ObjectTooLargeError
            raise ObjectStoreFullError(f"{object_id} cannot go to disk: spilling is off")
        try:
            path = self.spiller.new_file(object_id)
        except SpillError as error:
            raise ObjectStoreFullError(f"{object_id} cannot go to disk: {error}") from error
        self.objects[object_id] = StoredObject(object_id, nbytes, created_by,
                                               spill=SpillRecord(path, nbytes, ()))
        return path

    def too_large(self, nbytes: int) -> bool:
        """Whether an object of ``nbytes`` can never be in memory here (it lives on disk)."""
        return Allocator.block_size(nbytes) > self.allocator.capacity

    def resize(self, object_id: str, nbytes: int, created_by: str) -> None:
        """An unsealed block holds an object other than the one it was asked for (a
        driver's spare block, see Head.on_Seal): its size, within the same block, and its
        call site."""
        stored = self.objects[object_id]
        assert not stored.sealed and Allocator.block_size(nbytes) == Allocator.block_size(
            stored.nbytes), f"{object_id}: {nbytes} bytes do not fill its block"
        stored.nbytes = nbytes
        stored.created_by = created_by

    def seal(self, object_id: str, crc: tuple[int, ...] = ()) -> None:
        """The writer is done: the object becomes readable and, when unpinned, evictable.
        ``crc``: of an object written to disk (``allocate_on_disk``), per spill chunk."""
        stored = self.objects.get(object_id)
        if stored is not None:
            stored.sealed = True
            if crc and stored.spill is not None and stored.offset is None:
                stored.spill = SpillRecord(stored.spill.path, stored.nbytes, crc)
        self.unpin(object_id)

    def pin(self, object_id: str, high: bool = False) -> int:
        """Keep the object in memory (restoring it if spilled); returns its offset.

        ``high``: a pin held for long (a driver's view) restores the object as near the top
        as pinned blocks allow, as ``arrange`` does a task's inputs; restored from the
        bottom, in the free bytes a running task's result is about to need, it would
        split them (the memory-pressure soak's lost DAG)."""
        stored = self.objects.get(object_id)
        if stored is None:
            raise ObjectLostError(object_id, f"{self.node}'s store does not hold it")
        if stored.offset is None:
            self._restore(stored, high)
        if stored.pins == 0:
            self.pinned_bytes += Allocator.block_size(stored.nbytes)
        stored.pins += 1
        self.lru.pop(object_id, None)
        return stored.offset

    def on_disk(self, object_id: str) -> SpillRecord | None:
        """The spill file of an object that is on disk only (None if it is in memory, or
        not here): a reader this store has no room for reads it from there."""
        stored = self.objects.get(object_id)
        if stored is None or stored.offset is not None or not stored.sealed:
            return None
        return stored.spill

    def unpin(self, object_id: str) -> None:
        stored = self.objects.get(object_id)
        if stored is None:
            return
        stored.pins -= 1
        assert stored.pins >= 0, f"{object_id} unpinned more often than pinned"
        if stored.pins == 0 and stored.offset is not None:
            self.pinned_bytes -= Allocator.block_size(stored.nbytes)
            self.lru[object_id] = None               # most recently used at the end

    def delete(self, object_id: str) -> None:
        """Drop the object, wherever it is (memory or disk)."""
        stored = self.objects.pop(object_id, None)
        if stored is None:
            return
        self.lru.pop(object_id, None)
        if stored.offset is not None:
            if stored.pins:
                self.pinned_bytes -= Allocator.block_size(stored.nbytes)
            self.allocator.free(stored.offset)
        if stored.spill is not None and self.spiller is not None:
            self.spiller.delete(stored.spill)

    def nbytes(self, object_id: str) -> int:
        return self.objects[object_id].nbytes

    # -- admission -----------------------------------------------------------------------

    def room(self) -> int:
        """Bytes more that could be pinned now, once every unpinned object has made way
        (spilled, or dropped if a replica; without spilling, primaries stay)."""
        kept = 0 if self.spiller is not None else sum(
            Allocator.block_size(self.objects[oid].nbytes) for oid in self.lru
            if not self.objects[oid].replica)
        return self.allocator.capacity - self.pinned_bytes - kept

    def hold_cost(self, object_ids: list[str]) -> int:
        """Bytes that pinning these objects would add to ``pinned_bytes`` (the spilled
        ones restored, the unpinned ones kept); objects not held here cost nothing."""
        found = (self.objects.get(oid) for oid in dict.fromkeys(object_ids))
        return sum(Allocator.block_size(s.nbytes) for s in found
                   if s is not None and not (s.pins and s.offset is not None)
                   and not self.too_large(s.nbytes))      # read from disk, always

    def arrange(self, object_ids: list[str], then_whole: int) -> None:
        """Before a task pins its inputs: if pinning them where they lie (or restoring them
        wherever there is room) could leave no block of ``then_whole`` bytes for its result,
        move them to the top of the arena first (spill, then restore high; a primary whose
        spill file is still good is not written again).

        A pinned block in the middle splits the store: a task reading 24 MiB of a 64 MiB
        store could not write a 24 MiB result, though 40 MiB could be freed around it.
        """
        group = [self.objects[oid] for oid in dict.fromkeys(object_ids) if oid in self.objects]
        if then_whole <= 0 or self._fits_beside(group, Allocator.block_size(then_whole)):
            return
        try:
            for stored in group:
                if stored.offset is not None and not stored.pins and not stored.replica \
                        and self.spiller is not None:
                    self._spill(stored)
            for stored in sorted(group, key=lambda s: (-s.nbytes, s.id)):
                if stored.offset is None:
                    self._restore(stored, high=True)
                    self.lru[stored.id] = None
        except (SpillError, ObjectStoreFullError, ObjectLostError):
            pass                     # the pins that follow say what is wrong, if anything

    def _fits_beside(self, group: list[StoredObject], size: int) -> bool:
        """Whether ``size`` bytes could still be made whole once ``group`` is pinned."""
        restoring = sum(Allocator.block_size(s.nbytes) for s in group if s.offset is None)
        if self.allocator.largest_free >= size + restoring:
            return True
        if restoring:
            return False
        _, used = self._layout(staying={s.offset for s in group})
        return cheapest_window(used, self.allocator.capacity, size) is not None

    # -- making room ---------------------------------------------------------------------

    def _allocate(self, nbytes: int, object_id: str, high: bool = False) -> int:
        """A block for ``nbytes``: best fit from the bottom, or (``high``) as near the top
        as the pinned blocks allow, clearing unpinned objects in the way."""
        if Allocator.block_size(nbytes) > self.allocator.capacity:
            raise ObjectTooLargeError(
                f"{object_id} needs {nbytes} bytes, more than {self.node}'s whole store "
                f"({self.allocator.capacity} bytes); start plait with a larger store_memory")
        size = Allocator.block_size(nbytes)
        try:
            if high:
                offset = self._take_high(size)
            else:
                while self.allocator.free_bytes < size and self._evict_one():
                    pass
                if not self.allocator.fits(nbytes):
                    self._make_whole(size)
                offset = self.allocator.allocate(nbytes) if self.allocator.fits(nbytes) else -1
        except SpillError as error:
            raise self._full_error(nbytes, error) from error
        if offset < 0:
            raise self._full_error(nbytes, None)
        try:
            self.arena.reserve(offset, nbytes)
        except OSError as error:
            self.allocator.free(offset)
            raise ObjectStoreFullError(
                f"{self.node} cannot reserve {nbytes} bytes of shared memory for {object_id}: "
                f"{error.strerror or error} (is /dev/shm full?)") from error
        return offset

    def _evict_one(self) -> bool:
        """Drop the least recently used unpinned replica, else spill the LRU primary."""
        victim = next((oid for oid in self.lru if self.objects[oid].replica), None)
        if victim is not None:
            self._evict(self.objects[victim])
            return True
        if self.spiller is None or not self.lru:
            return False
        self._spill(self.objects[next(iter(self.lru))])
        return True

    def _make_whole(self, size: int) -> None:
        """Enough bytes are free, but in pieces: clear the cheapest run of unpinned
        neighbours (a primary with a spill file still good costs nothing to write)."""
        at, used = self._layout()
        for offset in cheapest_window(used, self.allocator.capacity, size) or ():
            self._evict(at[offset])

    def _take_high(self, size: int) -> int:
        """Clear and take the highest range of ``size`` bytes free of pinned blocks (-1:
        there is none)."""
        at, used = self._layout()
        found = highest_window(used, self.allocator.capacity, size)
        if found is None:
            return -1
        place, clear = found
        for offset in clear:
            self._evict(at[offset])
        return self.allocator.allocate_at(place, size)

    def _layout(self, staying: set[int | None] = frozenset()
                ) -> tuple[dict[int, StoredObject], list[tuple[int, int, int | None]]]:
        """The objects in memory by offset, and every used block as ``(offset, size, cost
        to clear it)`` in address order (cost None: it stays; so do those at ``staying``),
        as the allocator's window searches take them."""
        at = {s.offset: s for s in self.objects.values() if s.offset is not None}
        used = [(offset, block, None if offset in staying else
                 self._eviction_cost(at.get(offset), block))
                for offset, block in self.allocator.used_blocks()]
        return at, used

    def _eviction_cost(self, stored: StoredObject | None, block: int) -> int | None:
        """Bytes written to clear this block; None if it cannot go (pinned, or a primary
        with spilling off)."""
        if stored is None or stored.pins:
            return None
        if stored.replica or stored.spill is not None:
            return 0
        return block if self.spiller is not None else None

    def _evict(self, stored: StoredObject) -> None:
        if stored.replica:
            self.delete(stored.id)
            self._on_dropped(stored.id)
        else:
            self._spill(stored)

    def _spill(self, stored: StoredObject) -> None:
        """Write the object out, unless a spill file from an earlier eviction is still good
        (objects never change, so a restored object's file stays valid until delete)."""
        assert stored.offset is not None and stored.pins == 0
        if stored.spill is None:
            block = self.arena.block(stored.offset, stored.nbytes)
            stored.spill = self.spiller.write(stored.id, block)
        self.allocator.free(stored.offset)
        stored.offset = None
        del self.lru[stored.id]

    def _restore(self, stored: StoredObject, high: bool = False) -> None:
        """Read a spilled object back; if its file is gone or corrupt, this copy is gone
        for good: it is dropped (file too) and the caller hears ObjectLostError."""
        assert stored.spill is not None and self.spiller is not None
        offset = self._allocate(stored.nbytes, stored.id, high)
        try:
            self.spiller.read_into(stored.id, stored.spill,
                                   self.arena.block(offset, stored.nbytes))
        except ObjectLostError:
            self.allocator.free(offset)
            self.delete(stored.id)
            raise
        except Exception:
            self.allocator.free(offset)
            raise
        stored.offset = offset            # the spill file stays: a later eviction is free

    def _full_error(self, nbytes: int, spill_error: Exception | None) -> ObjectStoreFullError:
        """Why nothing more could go: the sizes, and the pinned objects in the way."""
        free = self.allocator.free_bytes
        stuck = self.spiller is None or spill_error is not None   # nothing unpinned can go
        held = [s for s in self.objects.values()          # what stays in memory
                if s.offset is not None and (s.pins or stuck)]
        biggest = sorted(held, key=lambda s: (-s.nbytes, s.id))[:3]
        live = ", ".join(f"{s.id} ({_mib(s.nbytes)}, from {s.created_by})"
                         for s in biggest) or "none"
        why = (f"spilling failed: {spill_error}" if spill_error is not None else
               "spilling is off" if self.spiller is None else
               "pinned objects split the free bytes" if free >= Allocator.block_size(nbytes)
               else "every object in memory is pinned")
        need, free_text, largest = _sizes(Allocator.block_size(nbytes), free,
                                          self.allocator.largest_free)
        return ObjectStoreFullError(
            f"{self.node}'s store cannot fit {need}: {free_text} of "
            f"{_mib(self.allocator.capacity)} free (largest free block "
            f"{largest}), {_mib(self.pinned_bytes)} pinned by "
            f"running tasks and readers, and {why}. Largest objects held in memory: {live}. "
            f"Release refs or views you no longer need, or start plait with a larger "
            f"store_memory.")

    # -- reporting -----------------------------------------------------------------------

    def summary(self, top: int = 5) -> StoreSummary:
        objects = list(self.objects.values())
        spilled = [s for s in objects if s.spill is not None]
        largest = sorted(objects, key=lambda s: (-s.nbytes, s.id))[:top]
        spiller = self.spiller
        return StoreSummary(
            self.node, self.allocator.capacity, self.allocator.used,
            sum(Allocator.block_size(s.nbytes) for s in objects if s.pins and s.offset is not None),
            sum(s.sealed for s in objects), sum(s.nbytes for s in spilled), len(spilled),
            _rate(spiller.spilled_bytes, spiller.spill_seconds) if spiller else 0.0,
            _rate(spiller.restored_bytes, spiller.restore_seconds) if spiller else 0.0,
            tuple(ObjectSummary(s.id, s.nbytes, _state(s), s.created_by) for s in largest),
            int(spiller.spilled_bytes) if spiller else 0,
            int(spiller.restored_bytes) if spiller else 0)

    def close(self) -> None:
        for object_id in list(self.objects):
            self.delete(object_id)
        if self.spiller is not None:
            self.spiller.remove_directory()


def _state(stored: StoredObject) -> str:
    if not stored.sealed:
        return "reserved"
    return "spilled" if stored.offset is None else "pinned" if stored.pins else "memory"


def _rate(nbytes: float, seconds: float) -> float:
    return nbytes / seconds / 1e9 if seconds > 0 else 0.0


def _mib(nbytes: int) -> str:
    return f"{nbytes / (1 << 20):.1f} MiB"


def _sizes(*sizes: int) -> list[str]:
    """``sizes`` in MiB, or in bytes where MiB would show two different sizes alike (a
    request of 8 MiB and a header does not fit a free block of 8 MiB: say so).

    >>> _sizes(8 << 20, 1 << 20), _sizes((8 << 20) + 64, 8 << 20)
    (['8.0 MiB', '1.0 MiB'], ['8388672 bytes', '8388608 bytes'])
    """
    shown = [_mib(size) for size in sizes]
    if len(set(shown)) < len(set(sizes)):
        return [f"{size} bytes" for size in sizes]
    return shown
