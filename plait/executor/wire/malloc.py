"""glibc malloc settings for plait's own long-lived processes (nodes, the head, workers).

Inline objects (up to 100 KiB) and the messages carrying them are allocated and freed by
the hundred thousand in a node process. glibc serves a freed block of that size from its
heap by default: after the first 200 KiB buffer is freed its mmap threshold rises to
match (the "dynamic" threshold), and freed heap memory in the middle of the heap is kept
for reuse, never returned. Measured with ``benchmarks/longrun.py`` (300,000 mixed tasks on
2 nodes), the head's process held 67 MiB of which malloc had 10 MiB in use; the rest was
free heap, and it crept up as the heap fragmented.

Two settings, made once at start (fixing the threshold also turns off the dynamic one):
buffers of 64 KiB and more are mmapped, so freeing one returns it to the system at once,
and the heap top is trimmed once 128 KiB of it is free. Same run: the head at 33 MiB,
node-1 17 MiB (was 31), tasks per second unchanged. Dask's workers do much the same
(``MALLOC_TRIM_THRESHOLD_``).

The driver is the user's process: plait fixes two of its settings, no more
(``bound_driver_heaps``), and gives back what its own messages left free (``HeapTrim``).
Under glibc's defaults, once a block of a few MiB has been freed the thresholds follow it
up (to 32 MiB for mmap, twice that for trimming): from then on a result message of up to
that size is carved from the heap of the ZeroMQ I/O thread that received it, and when it
is freed the top of that thread's heap stays resident. ``malloc_trim`` cannot take it
back: it trims the main heap's top, but in the other threads' heaps only free chunks
below the top. In the long run of issue 11 that heap held 16 MiB, all but 2 KiB free,
and rose with each larger round of results (14.8 -> 17.5 MiB over 350k tasks).

``malloc_usage`` reads glibc's own account of its heap, for ``kill -USR1`` (server.py).
Python's counters (``sys.getallocatedblocks``, tracemalloc) do not see libzmq's buffers or
the heap's free space: in the long run of issue 11 the head's USS rose ~5 bytes a task
while its Python blocks stayed flat, and only glibc's figures showed where (its heaps).
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from dataclasses import dataclass

M_TRIM_THRESHOLD = -1            # <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 64 << 10        # blocks this big or more: mmap, returned when freed
TRIM_THRESHOLD = 128 << 10       # free memory at the heap top past this: given back
TRIM_AFTER_BYTES = 4 << 20       # a get or wait trims once this much came since the last trim
# The driver's: glibc's own starting mmap threshold, held there (above INLINE_THRESHOLD, so
# inline results still come from the heap, not a mapping each), and free heap tops past
# 4 MiB given back at once, in every thread's heap.
DRIVER_MMAP_THRESHOLD = 128 << 10
DRIVER_TRIM_THRESHOLD = 4 << 20


@functools.cache
def _glibc(name: str) -> Callable | None:
    """glibc's function ``name`` in this process, looked up once; None where there is no
    such function (musl, macOS, an old glibc): the callers then do nothing."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


def return_freed_memory(mmap_threshold: int = MMAP_THRESHOLD,
                        trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Make this process give freed memory back to the system (glibc); False elsewhere.
    Setting the thresholds also ends glibc's dynamic ones (the module's docstring)."""
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and \
        bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))


def bound_driver_heaps() -> bool:
    """The driver's settings (DRIVER_*): what its threads' heaps hold freed stays bounded."""
    return return_freed_memory(DRIVER_MMAP_THRESHOLD, DRIVER_TRIM_THRESHOLD)


def trim_heap() -> bool:
    """Give the free pages of glibc's heaps back to the system, wherever they are in the
    heap (``malloc_trim(0)``); False where there is no glibc."""
    malloc_trim = _glibc("malloc_trim")
    return malloc_trim is not None and bool(malloc_trim(0))


class HeapTrim:
    """The driver's heap, trimmed at the end of a get or wait that brought ``after`` bytes.

    Inline results (up to 100 KiB) are carved from the driver's heap (under its settings
    as under glibc's defaults, where a freed 200 KiB block raises the mmap threshold past
    them), and freeing them leaves pages in the heap's middle, which no threshold gives
    back. In the long run of issue 11 (rounds of 2,000 calls, 200 of them 80 KB results) the
    driver's heap held 45 MiB free of 55 at 52k tasks, 53 of 62 at 152k, and its USS rose
    with it (+8.6% over 1M tasks, +22% over 2M): the free space, not a table, grew. A trim
    after each get that brought a few MiB costs a walk of the heap's free lists (well
    under a millisecond) and keeps the driver at what it holds."""

    def __init__(self, after: int = TRIM_AFTER_BYTES,
                 trim: Callable[[], bool] = trim_heap) -> None:
        self.after = after
        self.trim = trim
        self.received = 0                 # bytes of messages since the last trim

    def note(self, nbytes: int) -> None:
        self.received += nbytes

    def trim_if_due(self) -> bool:
        """Trim if enough came since the last trim; whether it trimmed."""
        if self.received < self.after:
            return False
        self.received = 0
        self.trim()
        return True


class _Mallinfo2(ctypes.Structure):
    """``struct mallinfo2`` of <malloc.h> (glibc 2.33 and later), field for field."""

    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


@dataclass(frozen=True, slots=True)
class MallocUsage:
    """glibc's heap in bytes, summed over its arenas (the main one and each thread's)."""

    heap: int          # taken from the system for the heaps (sbrk and thread heaps)
    in_use: int        # of which handed out and not freed (free-list caches included)
    free: int          # of which free, kept for reuse
    mmapped: int       # blocks of MMAP_THRESHOLD and more, each its own mapping

    def describe(self) -> str:
        """One line for a person (the USR1 dump).

        >>> MallocUsage(13 << 20, 11 << 20, 2 << 20, 1 << 20).describe()
        'malloc heap 13.0 MiB (11.0 in use, 2.0 free), 1.0 MiB mmapped'
        """
        mib = 1 << 20
        return (f"malloc heap {self.heap / mib:.1f} MiB ({self.in_use / mib:.1f} in use, "
                f"{self.free / mib:.1f} free), {self.mmapped / mib:.1f} MiB mmapped")


def mallinfo() -> _Mallinfo2 | None:
    """glibc's ``mallinfo2()`` now (None where there is none: musl, macOS, old glibc)."""
    mallinfo2 = _glibc("mallinfo2")
    if mallinfo2 is None:
        return None
    mallinfo2.restype = _Mallinfo2
    return mallinfo2()


def malloc_usage() -> MallocUsage | None:
    """This process's glibc heap now (None where there is no mallinfo2)."""
    info = mallinfo()
    if info is None:
        return None
    return MallocUsage(info.arena, info.uordblks, info.fordblks, info.hblkhd)


# While objects stream in or out over TCP: ZeroMQ allocates a buffer for each 1 MiB frame
# it receives, and CurveZMQ one more for each frame it encrypts or decrypts. Past the
# 64 KiB threshold above, each is mmapped and unmapped: 256 page faults and a MiB zeroed per
# frame. Measured with benchmarks/rawzmq.py's receiver under these settings (256 MiB, one
# stream, load 7): 0.93 CPU s/GB received (0.30 with glibc's defaults) and, encrypted, 1.90
# CPU s/GB sent (0.97). With chunk buffers served from the heap (mmap past 2 MiB) and 16 MiB
# of free heap top kept: 0.22 received, 0.93 sent encrypted. So those settings hold while
# bulk transfers run, and the 64 KiB ones come back, with a trim, when the last one ends.
BULK_MMAP_THRESHOLD = 2 << 20    # above a 1 MiB chunk plus ZeroMQ's and CurveZMQ's framing
BULK_TRIM_THRESHOLD = 16 << 20   # a few chunks' buffers kept for the next frames


def keep_chunk_buffers(streaming: bool) -> None:
    """Serve transfer chunk buffers from the heap while ``streaming``; after, give the
    freed memory back (glibc; nothing elsewhere)."""
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return
    if streaming:
        mallopt(M_MMAP_THRESHOLD, BULK_MMAP_THRESHOLD)
        mallopt(M_TRIM_THRESHOLD, BULK_TRIM_THRESHOLD)
    else:
        return_freed_memory()
        trim_heap()
