"""Before a fork: take the free blocks a child would otherwise fill in shared pages.

A forked worker shares its parent's pages until it writes one; the page is then copied and
counted in the worker's USS. Free blocks the parent leaves in its glibc heap and in
Python's obmalloc pools are such pages: the child's own allocations fill them first (both
allocators reuse free blocks before fresh memory), and each one filled copies a page the
parent still uses around it. Over a long run a worker's allocations wander over more of
them and its USS creeps up while its RSS does not (issue 11: +10 to +17% over 1M tasks).

So the parent allocates those free blocks itself, for good, just before it forks: the
child's allocations then come from memory of its own (the top of the heap, new pools),
and what it shares with its parent stays shared. The blocks are found through the
allocators' own accounts (glibc's mallinfo2, ``sys._debugmallocstats``), taken while the
process has one thread, and cost the parent what it had free (about 1.3 MiB of heap and
0.4 MiB of pools in a node after its imports), shared with its children.
"""

from __future__ import annotations

import ctypes
import gc
import os
import re
import sys
import tempfile

from plait.executor.wire.malloc import (M_MMAP_THRESHOLD, _glibc, _Mallinfo2, mallinfo,
                                        return_freed_memory)

_TAKEN: list[object] = []          # the blocks taken: kept for the life of the process
HEAP_REQUESTS = tuple(1 << n for n in range(20, 4, -1)) + (24,)   # 1 MiB down to 24 B
LARGEST_REQUEST = HEAP_REQUESTS[0]


def fill_holes() -> int:
    """Take the free blocks of the glibc heap and of Python's pools, once per process
    (a process forked after it inherits what was taken); the bytes taken. Only while
    the process has one thread (the counts must not move meanwhile).

    Once: the pools' count includes the untouched blocks of each size's current pool, so
    a second fill opens a new pool of each size and the next counts that one: a forker
    that filled after every fork grew ~190 KB a fork (2.6 MiB per 100k tasks)."""
    if _TAKEN:
        return 0
    gc.collect()        # CPython's free lists emptied first: a child's sweep (wire/freelists.py)
    return fill_heap_holes() + fill_pool_holes()    # would free their objects in shared pages


def fill_heap_holes() -> int:
    """Allocate the free chunks below the top of glibc's heap (not the top: a child's
    fresh memory comes from there), largest requests first; the bytes taken. A block at
    or past the top chunk's start came from the top: no free chunk fits that request."""
    malloc, free, mallopt, sbrk = (_glibc(name) for name in (
        "malloc", "free", "mallopt", "sbrk"))
    if None in (malloc, free, mallopt, sbrk) or mallinfo() is None:
        return 0
    malloc.restype = sbrk.restype = ctypes.c_void_p
    free.argtypes, sbrk.argtypes = [ctypes.c_void_p], [ctypes.c_ssize_t]
    mallopt(M_MMAP_THRESHOLD, 2 * LARGEST_REQUEST)      # requests from the heap, not mmap
    before = _below_top(mallinfo())
    try:
        for size in HEAP_REQUESTS:
            top = sbrk(0) - mallinfo().keepcost           # the main heap's top chunk
            while (block := malloc(size)) and block < top:
                _TAKEN.append(block)    # from a bin (or glibc's per-size cache)
            if block:
                free(block)
    finally:
        return_freed_memory()
    return max(0, before - _below_top(mallinfo()))


def _below_top(info: _Mallinfo2) -> int:
    """Free bytes in the heap's bins: all free bytes but the top chunk's."""
    return info.fordblks - info.keepcost


POOL_LINE = re.compile(r"^\s*\d+\s+(\d+)\s+\d+\s+\d+\s+(\d+)\s*$")


def fill_pool_holes() -> int:
    """Allocate an object into every free block of Python's partly used pools (of each
    size class, as many as ``sys._debugmallocstats`` counts); the bytes taken."""
    taken = 0
    for size, free in _pool_holes():
        filler = _filler(size)
        _TAKEN.append([filler() for _ in range(free)])
        taken += size * free
    return taken


def _pool_holes() -> list[tuple[int, int]]:
    """(block size, free blocks in used pools) per size class, from the allocator's own
    report (it writes to the C-level stderr: read through a temporary file)."""
    with tempfile.TemporaryFile("w+") as report:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(report.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        report.seek(0)
        lines = report.read().splitlines()
    found = [POOL_LINE.match(line) for line in lines]
    return [(int(m[1]), int(m[2])) for m in found if m and int(m[2])]


def _filler(size: int):
    """A maker of untracked objects that take exactly one ``size``-byte block."""
    if size == 16:
        return object
    if size == 32:
        return lambda: float(size) + 0.5    # a new float each call (24 bytes)
    length = size - 33                      # bytes objects: 33 bytes plus their length
    return lambda: b"\0" * length
