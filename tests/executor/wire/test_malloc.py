"""glibc's account of a process's heap: C-level bytes in use, which Python's own counters
(sys.getallocatedblocks, tracemalloc of Python objects) do not see as the USR1 dump does."""

from __future__ import annotations

import pytest

from plait.executor.node.server import memory_line
from plait.executor.wire.malloc import malloc_usage

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
