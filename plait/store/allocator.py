"""First-fit allocator over one arena's byte range: pure bookkeeping, no memory touched.

Lowest-address first fit on purpose: freed blocks are reused before fresh space, so puts
land on pages that are already faulted in (warm pages copy ~10x faster than fresh tmpfs
pages on these machines). Free blocks are coalesced with their neighbours.
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
        self._starts: list[int] = [0]                 # free blocks, sorted by offset
        self._sizes: dict[int, int] = {0: self.capacity}
        self._taken: dict[int, int] = {}              # offset -> size of used blocks
        self.used = 0

    def allocate(self, nbytes: int) -> int:
        size = max(BLOCK_ALIGNMENT, -(-nbytes // BLOCK_ALIGNMENT) * BLOCK_ALIGNMENT)
        if size > self.capacity:
            raise ObjectTooLargeError(
                f"an object of {nbytes} bytes is larger than the whole store "
                f"({self.capacity} bytes); start plait with a larger store_memory")
        for i, start in enumerate(self._starts):
            free = self._sizes[start]
            if free >= size:
                del self._starts[i], self._sizes[start]
                if free > size:
                    self._starts.insert(i, start + size)
                    self._sizes[start + size] = free - size
                self._taken[start] = size
                self.used += size
                return start
        raise ObjectStoreFullError(
            f"the store cannot hold {nbytes} more bytes: {self.capacity - self.used} of "
            f"{self.capacity} bytes are free, and the largest free block is "
            f"{max(self._sizes.values(), default=0)} bytes")

    def free(self, offset: int) -> None:
        size = self._taken.pop(offset)
        self.used -= size
        i = bisect.bisect(self._starts, offset)
        if i < len(self._starts) and self._starts[i] == offset + size:   # merge right
            size += self._sizes.pop(self._starts.pop(i))
        if i > 0 and self._starts[i - 1] + self._sizes[self._starts[i - 1]] == offset:
            self._sizes[self._starts[i - 1]] += size                        # merge left
            return
        self._starts.insert(i, offset)
        self._sizes[offset] = size

    def size_of(self, offset: int) -> int:
        return self._taken[offset]
