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
(``MALLOC_TRIM_THRESHOLD_``). The driver is the user's process: plait leaves its allocator
alone.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1            # <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 64 << 10        # blocks this big or more: mmap, returned when freed
TRIM_THRESHOLD = 128 << 10       # free memory at the heap top past this: given back


def return_freed_memory() -> bool:
    """Make this process give freed memory back to the system (glibc); False elsewhere."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):           # not glibc (musl, macOS): nothing to set
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
