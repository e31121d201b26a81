"""Best-fit allocator over one arena's byte range: pure bookkeeping, no memory touched.

Free blocks are kept twice: by ``(size, offset)`` in a sorted list, so the smallest block
that fits is found by bisection (lowest address among equals, so freed pages, which are
already faulted in, are reused first), and by both ends in dicts, so a freed block merges
with its neighbours in O(1). Cost stays flat as the store holds many objects.
"""

from __future__ import annotations

import bisect

from plait.errors import ObjectStoreFullError, ObjectTooLargeError

BLOCK_ALIGNMENT = 4096   # page-aligned blocks: objects never share a page


class Allocator:
    """Hands out aligned ``[offset, offset + size)`` blocks of a ``capacity``-byte arena.

    >>> a = Allocator(1 << 20)
    >>> x, y = a.allocate(100), a.allocate(5000)
    >>> x, y, a.used
    (0, 4096, 12288)
    >>> a.free(x); a.allocate(10)
    0
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity - capacity % BLOCK_ALIGNMENT
        self._by_size: list[tuple[int, int]] = []     # (size, start) of free blocks, sorted
        self._starts: dict[int, int] = {}              # start -> size of free blocks
        self._ends: dict[int, int] = {}                # end -> start of free blocks
        self._taken: dict[int, int] = {}               # offset -> size of used blocks
        self.used = 0
        if self.capacity:
            self._add_free(0, self.capacity)

    @staticmethod
    def block_size(nbytes: int) -> int:
        return max(BLOCK_ALIGNMENT, -(-nbytes // BLOCK_ALIGNMENT) * BLOCK_ALIGNMENT)

    def fits(self, nbytes: int) -> bool:
        """Whether an allocation of ``nbytes`` would succeed now."""
        size = self.block_size(nbytes)
        return bool(self._by_size) and self._by_size[-1][0] >= size

    def allocate(self, nbytes: int) -> int:
        size = self.block_size(nbytes)
        if size > self.capacity:
            raise ObjectTooLargeError(
                f"an object of {nbytes} bytes is larger than the whole store "
                f"({self.capacity} bytes); start plait with a larger store_memory")
        i = bisect.bisect_left(self._by_size, (size, -1))
        if i == len(self._by_size):
            raise ObjectStoreFullError(
                f"the store cannot hold {nbytes} more bytes: {self.capacity - self.used} of "
                f"{self.capacity} bytes are free, and the largest free block is "
                f"{self.largest_free} bytes")
        free, start = self._by_size[i]
        self._remove_free(start, free)
        if free > size:
            self._add_free(start + size, free - size)
        self._taken[start] = size
        self.used += size
        return start

    def allocate_at(self, offset: int, nbytes: int) -> int:
        """Take ``[offset, offset + block)``, which must lie inside one free block."""
        size = self.block_size(nbytes)
        start = max((b for b in self._starts if b <= offset), default=-1)
        free = self._starts.get(start, 0)
        assert offset % BLOCK_ALIGNMENT == 0 and offset + size <= start + free, \
            f"[{offset}, +{size}) is not free"
        self._remove_free(start, free)
        if offset > start:
            self._add_free(start, offset - start)
        if start + free > offset + size:
            self._add_free(offset + size, start + free - offset - size)
        self._taken[offset] = size
        self.used += size
        return offset

    def free(self, offset: int) -> None:
        size = self._taken.pop(offset)
        self.used -= size
        start, end = offset, offset + size
        if end in self._starts:                         # merge with the block after
            after = self._starts[end]
            self._remove_free(end, after)
            end += after
        if start in self._ends:                         # merge with the block before
            before = self._ends[start]
            self._remove_free(before, start - before)
            start = before
        self._add_free(start, end - start)

    def size_of(self, offset: int) -> int:
        return self._taken[offset]

    @property
    def free_bytes(self) -> int:
        return self.capacity - self.used

    def used_blocks(self) -> list[tuple[int, int]]:
        """``(offset, size)`` of every used block, in address order (for making room)."""
        return sorted(self._taken.items())

    @property
    def largest_free(self) -> int:
        return self._by_size[-1][0] if self._by_size else 0

    def _add_free(self, start: int, size: int) -> None:
        bisect.insort(self._by_size, (size, start))
        self._starts[start] = size
        self._ends[start + size] = start

    def _remove_free(self, start: int, size: int) -> None:
        del self._by_size[bisect.bisect_left(self._by_size, (size, start))]
        del self._starts[start]
        del self._ends[start + size]


def cheapest_window(used: list[tuple[int, int, int | None]], capacity: int, size: int
                    ) -> list[int] | None:
    """The offsets of the used blocks to clear so that ``size`` contiguous bytes become
    free at the least cost; None when every large enough range holds a block that stays.

    Free bytes split into blocks too small are not a full store: clearing the cheapest
    run of neighbours makes them whole. ``used`` is ``(offset, size, cost)`` in address
    order, cost None for a block that cannot go (pinned); the gaps between are free.
    Costs are never negative, so for each right end the best window is the shortest
    one that is large enough: two pointers, one pass.

    >>> cheapest_window([(0, 4, 4), (4, 4, None), (12, 4, 1), (20, 4, 9)], 28, 8)
    [12]
    >>> cheapest_window([(4, 4, None), (12, 4, None)], 20, 8) is None
    True
    """
    segments = _segments(used, capacity)
    best: tuple[int, int, int] | None = None               # (cost, first, last)
    first, cost = 0, 0
    for last, (_, end, step, _) in enumerate(segments):
        if step is None:
            first, cost = last + 1, 0
            continue
        cost += step
        while first < last and end - segments[first + 1][0] >= size:
            cost -= segments[first][2] or 0
            first += 1
        if end - segments[first][0] >= size and (best is None or cost < best[0]):
            best = (cost, first, last)
    if best is None:
        return None
    return [seg[3] for seg in segments[best[1]:best[2] + 1] if seg[3] is not None]


def _segments(used: list[tuple[int, int, int | None]], capacity: int
              ) -> list[tuple[int, int, int | None, int | None]]:
    """``(start, end, cost, offset of the used block or None if free)`` in address order."""
    segments: list[tuple[int, int, int | None, int | None]] = []
    position = 0
    for offset, size, cost in used:
        if offset > position:
            segments.append((position, offset, 0, None))
        segments.append((offset, offset + size, cost, offset))
        position = offset + size
    if position < capacity:
        segments.append((position, capacity, 0, None))
    return segments


def highest_window(used: list[tuple[int, int, int | None]], capacity: int, size: int
                   ) -> tuple[int, list[int]] | None:
    """Where to place ``size`` bytes as high in the arena as possible, and the offsets of
    the used blocks to clear first; None when pinned blocks leave no such range.

    Long-held pins (a task's inputs, a reader's view) stacked from the top leave the free
    bytes below them in one piece, for results and puts, which are placed from the bottom.
    ``used`` is as for ``cheapest_window``.

    >>> highest_window([(0, 4, 4), (12, 4, None), (16, 4, 1)], 20, 8)
    (4, [])
    >>> highest_window([(0, 4, 4), (12, 4, None), (16, 4, 1)], 20, 12)
    (0, [0])
    >>> highest_window([(0, 4, 4), (12, 4, 1)], 16, 8)
    (8, [12])
    """
    segments = _segments(used, capacity)
    top = None                                      # end of the run being grown downward
    for index in range(len(segments) - 1, -1, -1):
        start, end, cost, _ = segments[index]
        if cost is None:
            top = None
            continue
        top = end if top is None else top
        if top - start >= size:
            place = top - size
            return place, [seg[3] for seg in segments[index:]
                           if seg[3] is not None and seg[1] > place and seg[0] < top]
    return None
