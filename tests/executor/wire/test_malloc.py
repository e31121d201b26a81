"""glibc's account of a process's heap: C-level bytes in use, which Python's own counters
(sys.getallocatedblocks, tracemalloc of Python objects) do not see as the USR1 dump does."""

from __future__ import annotations

import pytest

from plait.executor.node.server import memory_line
from plait.executor.wire.malloc import (M_MMAP_THRESHOLD, HeapTrim, malloc_usage,
                                        return_freed_memory, trim_heap)

MIB = 1 << 20

pytestmark = pytest.mark.skipif(malloc_usage() is None, reason="glibc only (mallinfo2)")


def test_bytes_in_use_follow_what_is_allocated_and_freed():
    before = malloc_usage()
    held = [bytes(1024) for _ in range(4096)]      # 4 MiB past pymalloc's 512-byte limit
    during = malloc_usage()
    del held
    after = malloc_usage()
    assert during.in_use - before.in_use >= 4 * MIB
    assert during.in_use - after.in_use >= 4 * MIB
    assert during.heap == during.in_use + during.free


def test_the_usr1_dump_shows_the_heap():
    line = memory_line()
    assert "Python blocks, malloc heap" in line and " in use, " in line


def test_the_driver_trims_its_heap_once_enough_bytes_came_and_then_counts_afresh():
    trims = []
    heap = HeapTrim(after=100, trim=lambda: trims.append(1) or True)
    heap.note(60)
    assert heap.trim_if_due() is False and trims == []
    heap.note(40)
    assert heap.trim_if_due() is True and trims == [1]
    heap.note(99)
    assert heap.trim_if_due() is False and trims == [1]


def test_a_trim_gives_back_free_pages_in_the_middle_of_the_heap():
    """What the driver's trim is for: freed blocks below a live one stay in the heap (no
    trim of its top can reach them) until malloc_trim(0) gives their pages back."""
    import ctypes

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    libc.mallopt(M_MMAP_THRESHOLD, 1 << 20)  # 80 KB blocks from the heap, as in a driver
    try:
        blocks, live = [], []
        for _ in range(100):                  # each freed block between two live ones
            blocks.append(libc.malloc(80_000))
            live.append(libc.malloc(60_000))  # from the top too: no free block that big
            libc.memset(blocks[-1], 1, 80_000)          # resident
        for block in blocks:
            libc.free(block)
        before = _private_kib()
        assert trim_heap()
        assert before - _private_kib() >= 6 * 1024     # of the 7.6 MiB freed
        for block in live:
            libc.free(block)
    finally:
        return_freed_memory()                 # back to plait's settings for this process


def _private_kib() -> int:
    total = 0
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


# As in a driver: a block of a few MiB freed (glibc's dynamic thresholds follow it up), then
# a thread (ZeroMQ's I/O thread) allocates 12 MiB of 100 KiB receive buffers from its own
# heap, and the main thread frees them and trims. Prints the KiB given back.
THREAD_HEAP = """
import ctypes, sys, threading
from plait.executor.wire.malloc import bound_driver_heaps
if sys.argv[1] == "driver":
    bound_driver_heaps()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
def private():
    with open("/proc/self/smaps_rollup") as f:
        return sum(int(line.split()[1]) for line in f
                   if line.startswith(("Private_Clean:", "Private_Dirty:")))
big = libc.malloc(8 << 20)
libc.memset(big, 1, 8 << 20)
libc.free(big)
blocks = (ctypes.c_void_p * 120)()          # (a list would grow in the thread's heap)
def receive():
    for i in range(120):
        blocks[i] = libc.malloc(100 << 10)
        libc.memset(blocks[i], 1, 100 << 10)
thread = threading.Thread(target=receive)
thread.start()
thread.join()
before = private()
for block in blocks:
    libc.free(block)
libc.malloc_trim(0)
print(before - private())
"""


def _given_back_kib(settings: str) -> int:
    """The KiB given back in a fresh process with glibc's defaults, or the driver's
    settings. Defaults truly: without the MALLOC_* variables a Dask LocalCluster started
    earlier in the same test run left in os.environ (MALLOC_TRIM_THRESHOLD_=65536)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    done = subprocess.run([sys.executable, "-c", THREAD_HEAP, settings], capture_output=True,
                          text=True, timeout=60, check=True, env=env)
    return int(done.stdout)


def test_the_driver_gives_back_what_a_receiving_thread_freed():
    """Under glibc's defaults the freed top of the I/O thread's heap stays resident, and
    malloc_trim cannot reach it (the driver's USS rose with it in the long run of issue 11);
    under the driver's settings it goes back when freed."""
    assert _given_back_kib("defaults") < 2 * 1024
    assert _given_back_kib("driver") >= 10 * 1024
