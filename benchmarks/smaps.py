"""Where a process's private memory is, by kind of mapping, from /proc/PID/smaps.

The long run (longrun.py) reports each process's USS; this says which mappings hold it,
so that two checkpoints show where the bytes went:

    heap            glibc's main arena (brk): what the main thread's malloc holds
    thread arena    a 64 MiB-aligned heap of glibc's for other threads (ZeroMQ's I/O
                    threads, plait's own); its untouched rest is mapped ---p
    thread stack    a thread's stack (its guard page ---p just below it)
    anon            any other anonymous mapping: Python's obmalloc arenas (1 MiB each,
                    merged by the kernel when adjacent), mmapped blocks (numpy arrays,
                    buffers past the mmap threshold)
    store           plait's shared-memory arenas (/dev/shm/plait-*)
    file NAME       a file's pages (the writable ones: a library's data and relocations)

    python benchmarks/smaps.py PID                 # the kinds, now
    python benchmarks/smaps.py BEFORE AFTER        # two saved smaps files: what changed
    longrun.py --smaps DIR saves every process's smaps at each checkpoint.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from dataclasses import dataclass, field

ARENA_ALIGN = 64 << 20         # glibc's HEAP_MAX_SIZE on 64-bit: thread heaps are aligned
FIELDS = ("Rss", "Private_Clean", "Private_Dirty", "Anonymous")


@dataclass
class Mapping:
    """One line of /proc/PID/maps with the sizes smaps gives it (KiB)."""

    start: int
    end: int
    perms: str
    name: str
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def private(self) -> int:
        return self.sizes.get("Private_Clean", 0) + self.sizes.get("Private_Dirty", 0)


def parse(text: str) -> list[Mapping]:
    """The mappings of an smaps text, in address order.

    >>> m = parse("7f00-7f10 rw-p 00000000 00:00 0 \\nRss:  8 kB\\nPrivate_Dirty:  4 kB\\n")
    >>> (m[0].start, m[0].perms, m[0].name, m[0].private)
    (32512, 'rw-p', '', 4)
    """
    mappings: list[Mapping] = []
    for line in text.splitlines():
        first = line.split(" ", 1)[0]
        if "-" in first and not first.endswith(":"):
            parts = line.split(None, 5)
            start, end = (int(x, 16) for x in parts[0].split("-"))
            mappings.append(Mapping(start, end, parts[1], parts[5].strip() if len(parts) > 5
                                    else ""))
        elif mappings and first.rstrip(":") in FIELDS:
            mappings[-1].sizes[first.rstrip(":")] = int(line.split()[1])
    return mappings


def read(source: str) -> list[Mapping]:
    """A pid's smaps now, or a saved smaps file."""
    path = f"/proc/{source}/smaps" if source.isdigit() else source
    with open(path) as f:
        return parse(f.read())


def kinds(mappings: list[Mapping]) -> list[tuple[str, Mapping]]:
    """Each mapping with its kind (the module's docstring lists them)."""
    out = []
    for i, m in enumerate(mappings):
        after = mappings[i + 1] if i + 1 < len(mappings) else None
        before = mappings[i - 1] if i else None
        out.append((_kind(m, before, after), m))
    return out


def _kind(m: Mapping, before: Mapping | None, after: Mapping | None) -> str:
    if m.name.startswith("/dev/shm/plait"):
        return "store"
    if m.name.startswith("["):
        return m.name.strip("[]")
    if m.name:
        return f"file {os.path.basename(m.name)}"
    if m.perms.startswith("---"):
        return "reserved"
    if after is not None and after.start == m.end and after.perms.startswith("---") \
            and not after.name and m.start % ARENA_ALIGN == 0 and after.end % ARENA_ALIGN == 0:
        return "thread arena"
    if m.start % ARENA_ALIGN == 0 and m.end - m.start == ARENA_ALIGN:
        return "thread arena"
    if before is not None and before.end == m.start and before.perms.startswith("---") \
            and before.end - before.start == 4096:
        return "thread stack"
    return "anon"


def by_kind(mappings: list[Mapping]) -> dict[str, dict[str, int]]:
    """KiB per kind: private, rss, anonymous, and how many mappings."""
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for kind, m in kinds(mappings):
        key = kind if not kind.startswith("file ") or "w" in m.perms else "files (read-only)"
        totals[key]["private"] += m.private
        totals[key]["rss"] += m.sizes.get("Rss", 0)
        totals[key]["anon"] += m.sizes.get("Anonymous", 0)
        totals[key]["count"] += 1
    return totals


def report(before: list[Mapping], after: list[Mapping] | None = None, top: int = 12) -> str:
    """A table of the kinds (one smaps) or of what changed between two, largest first."""
    a = by_kind(before)
    b = by_kind(after) if after is not None else a
    names = sorted(set(a) | set(b), key=lambda k: -abs(b[k]["private"] - a[k]["private"])
                   if after is not None else -a[k]["private"])
    lines = [f"{'kind':<24}{'private':>10}{'after':>10}{'delta':>9}{'rss':>10}{'rss after':>10}"
             f"{'anon':>9}{'anon after':>11}{'maps':>6}"]
    for k in names:
        x, y = a.get(k, defaultdict(int)), b.get(k, defaultdict(int))
        if not (x["private"] or y["private"]) or after is not None \
                and x["private"] == y["private"] and x["rss"] == y["rss"]:
            continue                          # (nothing of it is this process's own)
        lines.append(f"{k:<24}{x['private']:>10,}{y['private']:>10,}"
                     f"{y['private'] - x['private']:>+9,}{x['rss']:>10,}{y['rss']:>10,}"
                     f"{x['anon']:>9,}{y['anon']:>11,}{y['count']:>6}")
    total = sum(m.private for m in before), sum(m.private for m in (after or before))
    lines.append(f"{'total (KiB)':<24}{total[0]:>10,}{total[1]:>10,}{total[1] - total[0]:>+9,}")
    if after is not None:
        lines += ["", "mappings whose private KiB changed most (by start address):"]
        lines += _changed(before, after, top)
    return "\n".join(lines)


def _changed(before: list[Mapping], after: list[Mapping], top: int) -> list[str]:
    old = {m.start: m for m in before}
    rows = []
    for kind, m in kinds(after):
        was = old.get(m.start)
        delta = m.private - (was.private if was else 0)
        if delta:
            rows.append((delta, kind, m, was))
    rows.sort(key=lambda r: -abs(r[0]))
    return [f"  {delta:>+8,} KiB  {kind:<16} {m.start:x}-{m.end:x} {m.perms} "
            f"{(m.end - m.start) >> 10:>8,} KiB mapped"
            f"{'' if was else ' (new)'}{'' if not was or was.end == m.end else ' (resized)'}"
            f" {os.path.basename(m.name)}" for delta, kind, m, was in rows[:top]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", help="a pid or a saved smaps file")
    parser.add_argument("after", nargs="?", help="a later smaps of the same process")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    print(report(read(args.before), read(args.after) if args.after else None, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
