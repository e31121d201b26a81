"""The store's one large copy: a put's buffers into the arena, a replica from a block.

A copy of many megabytes runs at the memory's rate, not the CPU's, so what it costs is the
bytes it moves across the memory bus:

- An ordinary store reads each destination line into the cache before writing it (a
  read for ownership): three bytes moved per byte copied. The copy here streams its
  stores past the caches (``plait.store._copy``, a few lines of C): two per byte. Nothing
  in the copying process reads the block back; readers map it, mostly in other processes.
  glibc's memcpy streams only above a threshold taken from the L3 size it reads off the
  CPU, 240 MiB on the virtual CPUs measured here.
- One thread does not reach the memory's rate; two do. Copies of 16 MiB and more are
  split over threads (numpy and ``_copy`` release the GIL).

Measured on this project's 2-core machines, into warm shared-memory pages: 256 MiB in
12 ms streamed over two threads, against 20-22 ms through numpy (memcpy) over two or four.
Below 8 MiB the destination may still be in cache when a reader comes: plain copies.

Where ``_copy`` was not built (no C compiler at install) or the CPU has no streaming
stores, every copy is numpy's: the same bytes, slower.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

try:
    from plait.store import _copy
except ImportError:           # installed without a C compiler
    _copy = None

STREAMING = bool(_copy is not None and _copy.STREAMING)
STREAM_COPY_BYTES = 8 << 20        # streamed from here up (when STREAMING)
PARALLEL_COPY_BYTES = 16 << 20     # split over threads from here up
COPY_THREADS = 4

_pool: ThreadPoolExecutor | None = None


def copy_bytes(target: memoryview, source: memoryview) -> None:
    """Copy all of ``source``'s bytes to the start of ``target`` (contiguous buffers)."""
    n = source.nbytes
    streamed = STREAMING and n >= STREAM_COPY_BYTES
    if not streamed and n < PARALLEL_COPY_BYTES:
        target[:n] = source.cast("B") if source.format != "B" or source.ndim != 1 else source
        return
    import numpy as np

    dst = np.frombuffer(target, dtype=np.uint8, count=n)
    src = np.frombuffer(source, dtype=np.uint8, count=n)
    copy = _copy.copy if streamed else np.copyto
    if n < PARALLEL_COPY_BYTES:
        copy(dst, src)
        return
    step = -(-n // COPY_THREADS)
    step += -step % 4096
    parts = [(dst[i:i + step], src[i:i + step]) for i in range(0, n, step)]
    list(_threads().map(lambda pair: copy(*pair), parts))


def _threads() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(COPY_THREADS, thread_name_prefix="plait-copy")
    return _pool
