"""A node takes its free blocks before it forks (prefork.py): a forked worker's own
allocations then land in memory of its own, not in holes of pages it shares with its node
(each hole filled copies a page: the workers' USS crept up in the long run of issue 11)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from plait.executor.wire.malloc import malloc_usage

pytestmark = pytest.mark.skipif(malloc_usage() is None, reason="glibc only (mallinfo2)")

# A parent with holes in its pools and heap (every other object of up to 900 bytes freed),
# then a child that allocates and frees as a worker does between tasks. Prints the KiB the
# child's USS grew by.
FORKED_CHURN = """
import os, sys
from plait.executor.node.prefork import fill_holes
def private():
    with open("/proc/self/smaps_rollup") as f:
        return sum(int(line.split()[1]) for line in f
                   if line.startswith(("Private_Clean:", "Private_Dirty:")))
kept = [b"x" * (n % 900) for n in range(100_000)]
del kept[::2]
if sys.argv[1] == "fill":
    fill_holes()
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    before = private()
    for _ in range(20):
        churn = [b"y" * (n % 900) for n in range(20_000)]
        del churn
    os.write(write, str(private() - before).encode())
    os._exit(0)
os.waitpid(pid, 0)
print(os.read(read, 100).decode())
"""


def _python(script: str, *args: str) -> str:
    """What a fresh interpreter running ``script`` printed (its heap is this test's)."""
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                          text=True, timeout=60, check=True).stdout


def _child_growth_kib(mode: str) -> int:
    return int(_python(FORKED_CHURN, mode))


def test_a_child_forked_after_the_holes_are_taken_grows_by_what_it_holds_only():
    """Its churn holds ~9 MB at once: that is what it must grow by, not 25 MiB of copied
    pages (the parent's holes, and the live objects around them)."""
    assert _child_growth_kib("none") > 2 * _child_growth_kib("fill")


def test_the_heap_has_no_free_chunk_below_its_top_after_the_holes_are_taken():
    script = ("from plait.executor.node import prefork\n"
              "kept = [bytes(600 + n % 4000) for n in range(5000)]\n"
              "del kept[::2]\n"
              "prefork.fill_holes()\n"
              "print(prefork._below_top(prefork.mallinfo()))\n")
    printed = _python(script)
    assert int(printed) < 64 << 10


def test_the_holes_are_taken_once_per_process():
    """A second fill would take each size's fresh pool and open another (a forker that
    filled after every fork grew ~190 KB a fork): it takes nothing."""
    script = ("from plait.executor.node.prefork import fill_holes\n"
              "print(fill_holes() > 0, fill_holes())\n")
    printed = _python(script)
    assert printed.split() == ["True", "0"]


def test_a_child_inherits_no_free_lists_its_sweep_would_free_in_shared_pages():
    """Tuples the parent freed sit on CPython's free lists; a worker's sweep
    (wire/freelists.py) would free them, copying each page they share with the parent."""
    script = ("import gc, sys\n"
              "from plait.executor.node.prefork import fill_holes\n"
              "made = [tuple(range(n % 19 + 1)) for n in range(19_000)]\n"
              "del made\n"
              "fill_holes()\n"
              "before = sys.getallocatedblocks()\n"
              "gc.collect()\n"
              "print(before - sys.getallocatedblocks())\n")
    printed = _python(script)
    assert int(printed) < 1_000
