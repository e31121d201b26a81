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
