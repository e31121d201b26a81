"""Which of a forked process's private pages it inherited and wrote (copy-on-write), and
which are new, by kind of mapping; and, in Python's obmalloc pools, of which size class.

A worker forked from the node's forker shares the forker's pages until it writes one:
then the page is copied and counted in the worker's USS. longrun.py saw workers' USS rise
while their RSS stayed put: pages turning private, not new memory. This tells them apart,
from /proc/PID/pagemap (bit 56: the page is mapped by this process alone) and the parent's
pagemap at the same address (a page there: inherited). Run as root (page frame numbers).

    python benchmarks/cowpages.py WORKER_PID PARENT_PID

A page of an anonymous mapping that starts a plausible obmalloc pool header (16 KiB pools,
size class index below 32, ``maxnextoffset`` fitting the pool) is counted under that
pool's size class (block size = 16 * (szidx + 1)): free blocks of inherited pools taken by
the child's own allocations show as private pages of the small classes.
"""

from __future__ import annotations

import argparse
import struct
import sys
from collections import Counter

from smaps import kinds, read

PAGE = 4096
POOL = 16 << 10                  # obmalloc's POOL_SIZE (3.10+, 64-bit)
PRESENT, EXCLUSIVE = 1 << 63, 1 << 56
PFN_MASK = (1 << 55) - 1


def entries(pid: int, start: int, end: int) -> list[int]:
    """pagemap entries (one 64-bit word per page) of [start, end)."""
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(start // PAGE * 8)
        data = f.read((end - start) // PAGE * 8)
    return list(struct.unpack(f"{len(data) // 8}Q", data))


def pool_class(mem, address: int) -> int | None:
    """The size class of the obmalloc pool ``address`` lies in, or None if the 16 KiB
    boundary below it does not start a plausible pool header."""
    base = address - address % POOL
    try:
        mem.seek(base)
        header = mem.read(48)
    except OSError:
        return None
    if len(header) < 48:
        return None
    count, _free, _next, _prev, _arena, szidx, nextoffset, maxnext = struct.unpack(
        "Q3QIIII", header)
    if szidx >= 32 or not 48 <= nextoffset <= POOL or maxnext != POOL - 16 * (szidx + 1) \
            or count & 0xFFFFFFFF > POOL // 16:
        return None
    return szidx


def classify(child: int, parent: int) -> tuple[Counter, Counter]:
    """(KiB by (kind, inherited/new), KiB of private anonymous pages by pool size class)."""
    by_kind: Counter = Counter()
    by_class: Counter = Counter()
    with open(f"/proc/{child}/mem", "rb", buffering=0) as mem:
        for kind, m in kinds(read(str(child))):
            if m.perms.startswith("---") or kind in ("vsyscall", "vvar", "vdso"):
                continue
            mine = entries(child, m.start, m.end)
            theirs = entries(parent, m.start, m.end)
            for i, word in enumerate(mine):
                if not word & PRESENT or not word & EXCLUSIVE:
                    continue
                other = theirs[i] if i < len(theirs) else 0
                origin = "inherited" if other & PRESENT else "new"
                by_kind[(kind, origin)] += 4
                if kind == "anon":
                    szidx = pool_class(mem, m.start + i * PAGE)
                    by_class[(f"pool {16 * (szidx + 1)} B" if szidx is not None
                              else "not a pool", origin)] += 4
    return by_kind, by_class


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("child", type=int)
    parser.add_argument("parent", type=int)
    args = parser.parse_args(argv)
    by_kind, by_class = classify(args.child, args.parent)
    for title, table in (("kind", by_kind), ("obmalloc", by_class)):
        names = sorted({k for k, _ in table}, key=lambda k: -(table[(k, "inherited")] +
                                                             table[(k, "new")]))
        print(f"{title:<28}{'inherited KiB':>14}{'new KiB':>10}")
        for k in names:
            print(f"{k:<28}{table[(k, 'inherited')]:>14,}{table[(k, 'new')]:>10,}")
        print(f"{'total':<28}{sum(v for (k, o), v in table.items() if o == 'inherited'):>14,}"
              f"{sum(v for (k, o), v in table.items() if o == 'new'):>10,}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
