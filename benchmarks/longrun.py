"""Flat memory over a long run (issue 11): a million tasks, and every process stays put.

A leak of a few hundred bytes per task never shows in a test that runs a thousand; it
shows after a day. This runs ``--tasks`` tasks (a million by default) in rounds whose
refs are dropped as the next round starts, the way a long-lived service uses plait:

    per round of ``--round`` calls (2,000):
        70%  tiny(i)            an int back                       (no payload at all)
        10%  inline(i)          an ~80 KB array back               (under INLINE_THRESHOLD)
         5%  stored(i)          a 200 KiB array back               (into the node's arena)
        14%  counter.add(i)     actor calls, one actor per node
         1%  nested(i)          a task that makes 4 tiny.remote() calls and gets them
                                (5 tasks; while it waits its node lends its slot to a
                                stand-in worker, so stand-ins come and go too)
    rounds alternate plait.get(refs) and plait.wait(refs, num_returns=len(refs))

on ``plait.init(num_nodes=2, num_workers=1)``, and every ``--report-every`` tasks it reads
the USS (Private_Clean + Private_Dirty of /proc/PID/smaps: memory that would come back if
the process exited) of the driver, each node (node-0 runs the head) and every worker and
actor process (the forker, which forks later workers, is named as such), and once before
the first round (column 0k: the processes alive then, and their size at start). Pages of
plait's shared-memory arenas (/dev/shm/plait-*) that a process alone has mapped at that
moment are left out of its USS, as they would not come back if it exited: they are the
store's, which its node accounts for. A worker that has just written results into the
arena holds a few MiB of them (3.7 MiB in one worker at one checkpoint of a 400k run);
the table shows the most any checkpoint saw per process ("store pages").

Warm-up, one rule for every process: a process's baseline is its first checkpoint that
comes a full interval (``--report-every`` tasks) or more after it was first seen, so it
has run that many tasks' worth of the load before its size counts, and, for a worker, not
before the checkpoint after the first task it ran of each kind (every task returns its
worker's pid: tiny and nested beside their value, nested those of its children too,
inline and stored in their array's last element). For the driver, the nodes and the
first workers, seen at 0k, that is the first checkpoint (100k); a stand-in worker or
actor started later is first seen at a checkpoint and measured from the next, or from a
later one if it ran its first task of a kind later (most stand-ins run only the tiny
children of nested tasks for a while).

Why: a worker's first task of a kind runs code it inherited from its node and had not
run. CPython 3.11 writes into every code object it runs (warm-up counters, inline caches)
and into the reference counts of the functions, types and dicts it uses, so each page it
shares with its node that holds them is copied, once. Measured in one worker (1 node x 1
worker, 44,000 tiny tasks first, then each kind; /tmp probes, load 9-12): USS +1,056 KiB
at its first inline task (215 inherited pages became its own), +100 KiB at its first
stored task, +1,548 KiB at its first nested task (367 pages); the next 500 inline, 500
stored and 300 nested tasks +212, +36 and +192 KiB. In another run the pages its first
nested task copied held code objects (161 of 409), dicts (51), functions (35) and types
(30), while its Python blocks rose by 275 and no module was imported. Stand-ins measured
from before such a task failed by it alone (6.0 -> 7.3 MiB at once, +20 to +27%).

At every later checkpoint each process must stay within ``--tolerance`` (10%) of its
baseline (marked * in the table) by the pages it added; a process seen at fewer than two
checkpoints from its baseline on has no figure (n/a).

Pages added, not pages that changed hands. A process's USS also rises when a process it
shared pages with exits: those pages become its own, and none is added. Nodes and forkers
fork (the forker every stand-in and replacement worker), so their USS swings with the
children alive at a checkpoint: node-0's forker went 3.4 -> 3.8 MiB (+11.5%) in a 1M run
of stop 27 with its smaps' Rss and Anonymous unchanged (14,864 KiB at both checkpoints),
and node-1 9.6 -> 16.3 MiB (+77.5%) in a 400k run of stop 28 between two checkpoints,
its RSS 46.5 -> 46.7 MiB. A page the process maps and did not map before, on the other
hand, raises its Anonymous (smaps: every anonymous page it maps, shared or not; shared
memory is not anonymous) whoever else maps it. So the growth that counts at a checkpoint
is the smaller of its USS rise and its Anonymous rise, over its baseline USS: a leak
raises both and counts in full, pages changing hands raise only USS and count not at all
(the table shows the USS rise too). ``--seconds`` caps the run; the table says how many
tasks ran. Exit status 1 if a process grew past the tolerance.

    python benchmarks/longrun.py                          # 1,000,000 tasks
    python benchmarks/longrun.py --tasks 200000 --report-every 20000   # a quick look
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

import plait
from procmem import descendants

from plait.executor.node.workers import FORKER_NAME

INLINE_ELEMENTS = 10_000         # float64: 80 KB, travels inline
STORED_ELEMENTS = 25_600         # float64: 200 KiB, written into the arena
MIX = (("tiny", 70), ("inline", 10), ("stored", 5), ("actor", 14), ("nested", 1))
CHILDREN = 4                     # tiny calls per nested task


# Each task's value carries the pid of the worker that ran it (warm-up: the docstring).
@plait.remote
def tiny(i):
    return i, os.getpid()


@plait.remote
def inline(i):
    return _with_pid(np.full(INLINE_ELEMENTS, float(i)))


@plait.remote
def stored(i):
    return _with_pid(np.full(STORED_ELEMENTS, float(i)))


@plait.remote
def nested(i):
    children = plait.get([tiny.remote(i) for _ in range(CHILDREN)])
    return sum(value for value, _ in children) + 1, os.getpid(), [pid for _, pid in children]


def _with_pid(values: np.ndarray) -> np.ndarray:
    values[-1] = os.getpid()
    return values


@plait.remote
class Counter:
    def __init__(self):
        self.total = 0

    def add(self, i):
        self.total += i
        return i


@dataclass
class Run:
    """The processes seen so far and their USS (MiB) at each checkpoint."""

    checkpoints: list[int] = field(default_factory=list)            # tasks done
    uss: dict[tuple[str, int], list[float | None]] = field(default_factory=dict)
    store: dict[tuple[str, int], list[float | None]] = field(default_factory=dict)
    anon: dict[tuple[str, int], list[float | None]] = field(default_factory=dict)
    # (pid, kind) -> the checkpoint (column) after the worker's first task of the kind
    first_runs: dict[tuple[int, str], int] = field(default_factory=dict)
    seconds: float = 0.0
    smaps: str = ""                  # a folder to save each process's smaps in, or ""

    def ran(self, runs: set[tuple[int, str]]) -> None:
        """These workers ran tasks of these kinds since the last checkpoint."""
        for run in runs:
            self.first_runs.setdefault(run, len(self.checkpoints))

    def warm(self, pid: int) -> int | None:
        """The checkpoint after the process's last first run of a kind (None: it ran none)."""
        return max((c for (p, _), c in self.first_runs.items() if p == pid), default=None)

    def measure(self, tasks: int) -> None:
        """One checkpoint: every process of the cluster, the driver first."""
        self.checkpoints.append(tasks)
        column = len(self.checkpoints) - 1
        found = processes()
        forkers = {label.split()[0]: pid for label, pid in found if label.endswith("forker")}
        for label, pid in found:
            row = self.uss.setdefault((label, pid), [None] * column)
            private, store, anonymous = private_mib(pid)
            row.append(None if private is None else private - store)
            self.store.setdefault((label, pid), [None] * column).append(store)
            self.anon.setdefault((label, pid), [None] * column).append(anonymous)
            if self.smaps:
                save_smaps(self.smaps, tasks, label, pid, forkers.get(label.split()[0]))
        for rows in (self.uss, self.store, self.anon):
            for row in rows.values():
                row.extend([None] * (column + 1 - len(row)))


def processes() -> list[tuple[str, int]]:
    """(label, pid): the driver, each node, then each node's forker, workers and actors."""
    found = [("driver", os.getpid())]
    for node in plait.nodes():
        found.append((f"{node.id}{' (head)' if node.is_head else ''}", node.pid))
        found += [(f"{node.id} {'forker' if command(pid) == FORKER_NAME else 'worker'}", pid)
                  for pid in sorted(descendants(node.pid))]
    return found


def command(pid: int) -> str:
    """The process's name (/proc/PID/comm: the forker names itself), "" once gone."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def save_smaps(folder: str, tasks: int, label: str, pid: int, forker: int | None) -> None:
    """/proc/PID/smaps as FOLDER/TASKS/LABEL-PID.smaps (benchmarks/smaps.py compares two);
    the driver's own glibc account (malloc_info: each arena) beside it, and for a worker
    which of its private pages it shares no more with its node's forker (cowpages.py)."""
    path = os.path.join(folder, f"{tasks:08d}")
    os.makedirs(path, exist_ok=True)
    name = os.path.join(path, f"{label.replace(' ', '-').strip('()')}-{pid}")
    try:
        with open(f"/proc/{pid}/smaps") as f:
            text = f.read()
    except OSError:
        return
    with open(name + ".smaps", "w") as out:
        out.write(text)
    if pid == os.getpid():
        malloc_info(name + ".malloc.xml")
    if label.endswith("worker") and forker is not None:
        import contextlib
        import io

        from cowpages import main as cow

        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                cow([str(pid), str(forker)])
        except OSError:
            return
        with open(name + ".cow", "w") as f:
            f.write(out.getvalue())


def malloc_info(path: str) -> None:
    """glibc's malloc_info(3) of this process into ``path`` (per arena: free, in use)."""
    import ctypes

    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    stream = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(stream))
    libc.fclose(ctypes.c_void_p(stream))


def private_mib(pid: int) -> tuple[float | None, float, float | None]:
    """(Private_Clean + Private_Dirty of the whole process, of which in plait's shared-
    memory arenas, its Anonymous pages), in MiB, from /proc/PID/smaps; (None, 0, None)
    once it has exited."""
    total = in_store = anonymous = 0
    in_arena = False
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                first = line.split(" ", 1)[0]
                if "-" in first and not first.endswith(":"):       # a mapping's header
                    in_arena = "/dev/shm/plait-" in line
                elif line.startswith(("Private_Clean:", "Private_Dirty:")):
                    kib = int(line.split()[1])
                    total += kib
                    in_store += kib if in_arena else 0
                elif line.startswith("Anonymous:"):
                    anonymous += int(line.split()[1])
    except OSError:
        return None, 0.0, None
    return total / 1024, in_store / 1024, anonymous / 1024


def one_round(start: int, size: int, counters: list, use_wait: bool
              ) -> tuple[int, set[tuple[int, str]]]:
    """Make ``size`` calls of the mix, read them all, check them; returns the tasks run and
    which worker (pid) ran which kind of them."""
    refs, expected, tasks = [], [], 0
    for offset in range(size):
        i = start + offset
        kind = pick(offset)
        if kind == "actor":
            refs.append(counters[i % len(counters)].add.remote(i))
        else:
            refs.append({"tiny": tiny, "inline": inline, "stored": stored,
                         "nested": nested}[kind].remote(i))
        expected.append((kind, i))
        tasks += 1 + CHILDREN if kind == "nested" else 1
    if use_wait:
        ready, _ = plait.wait(refs, num_returns=len(refs))
        assert len(ready) == len(refs)
    return tasks, check(plait.get(refs), expected)


def pick(offset: int) -> str:
    """The kind of the ``offset``-th call of a round: the MIX, spread evenly.

    >>> [pick(n) for n in (0, 69, 70, 80, 85, 99, 100)]
    ['tiny', 'tiny', 'inline', 'stored', 'actor', 'nested', 'tiny']
    """
    slot = offset % 100
    for kind, share in MIX:
        if slot < share:
            return kind
        slot -= share
    raise AssertionError("MIX must add up to 100")


def check(values: list, expected: list[tuple[str, int]]) -> set[tuple[int, str]]:
    """Raise unless every value is its call's; which worker (pid) ran which kind.

    >>> sorted(check([(3, 41), (CHILDREN * 5 + 1, 42, [43] * CHILDREN)],
    ...              [("tiny", 3), ("nested", 5)]))
    [(41, 'tiny'), (42, 'nested'), (43, 'tiny')]
    """
    runs = set()
    for value, (kind, i) in zip(values, expected, strict=True):
        if kind in ("inline", "stored"):
            ok = value.shape == ((INLINE_ELEMENTS,) if kind == "inline" else (STORED_ELEMENTS,)
                                 ) and value[0] == i
            pid = int(value[-1])
        elif kind == "actor":
            ok, pid = value == i, 0
        else:
            ok, pid = value[0] == (CHILDREN * i + 1 if kind == "nested" else i), value[1]
        if not ok:
            raise AssertionError(f"{kind}({i}) returned {value!r:.60}")
        if pid:
            runs.add((pid, kind))
        if kind == "nested":
            runs.update((child, "tiny") for child in value[2])
    return runs


def run(args: argparse.Namespace) -> Run:
    plait.init(num_nodes=args.nodes, num_workers=args.workers)
    counters = [Counter.options(node=node.id).remote() for node in plait.nodes()]
    measured, done = Run(smaps=args.smaps), 0
    measured.measure(0)                          # who is alive at start (not a baseline)
    started, next_report = time.monotonic(), args.report_every
    while done < args.tasks:
        tasks, runs = one_round(done, min(args.round, args.tasks - done), counters,
                                use_wait=(done // args.round) % 2 == 1)
        done += tasks
        measured.ran(runs)
        gc.collect()
        out_of_time = time.monotonic() - started > args.seconds
        if done >= next_report or done >= args.tasks or out_of_time:
            measured.measure(done)
            print(f"  {done:>9,} tasks  {time.monotonic() - started:7.1f} s", file=sys.stderr)
            next_report += args.report_every
        if out_of_time:
            print(f"stopped by --seconds {args.seconds:g} after {done:,} tasks", file=sys.stderr)
            break
    measured.seconds = time.monotonic() - started
    plait.shutdown()
    return measured


def table(measured: Run, tolerance: float) -> tuple[str, bool]:
    """Markdown: one row per process, USS (MiB) per checkpoint, growth after warm-up."""
    head = ["process", "pid"] + [f"{n / 1000:,.0f}k" for n in measured.checkpoints]
    lines = ["| " + " | ".join(head + ["USS rise", "pages added", "MiB added", "flat",
                                       "store pages"]) + " |",
             "|" + "---|" * (len(head) + 5)]
    flat, passing, brief = True, [], 0
    for (label, pid), row in measured.uss.items():
        base = baseline(row, measured.warm(pid))
        growth = _growth(row, base)
        if growth is None:                 # came and went (stand-ins, mostly): one line
            passing += [v for v in row if v is not None]
            brief += 1
            continue
        added = _added(row, measured.anon[(label, pid)], base)
        ok = added <= tolerance * row[base]
        flat &= ok
        cells = [label, str(pid)] + ["" if v is None else f"{v:,.1f}{'*' if i == base else ''}"
                                     for i, v in enumerate(row)]
        store = max((v for v in measured.store[(label, pid)] if v is not None), default=0.0)
        lines.append("| " + " | ".join(cells + [
            f"{growth:+.1%}", f"{added / row[base]:+.1%}", f"{added:+.1f}",
            "yes" if ok else "NO", f"{store:,.1f}"]) + " |")
    if brief:
        sizes = f": USS {min(passing):,.1f} to {max(passing):,.1f} MiB" if passing else ""
        lines.append(f"\n{brief} more processes lived too briefly to have a figure "
                     f"(stand-ins that came and went, or ran their first task of a kind "
                     f"late; not at two checkpoints from a baseline on){sizes}")
    return "\n".join(lines), flat


def baseline(row: list[float | None], warm: int | None = None) -> int | None:
    """The column of the process's baseline: its first checkpoint a full interval after
    the one it was first seen at (column 0, before the first round, only says who was
    alive at start), and not before column ``warm``, the first after the process ran a
    task of each kind it ran (the module's docstring); None if it was not measured there
    (it had gone).

    >>> baseline([9.0, 10.0, 10.5]), baseline([None, None, 9.0, 10.0, 10.1]), baseline([None, 9.0])
    (1, 3, None)
    >>> baseline([None, 6.1, 6.2, 7.3, 7.3], warm=3), baseline([3.0, 8.0, 8.1], warm=1)
    (3, 1)
    >>> baseline([None, 6.1, 6.2, 7.3, None], warm=4)
    """
    first = next((i for i, v in enumerate(row) if v is not None), None)
    if first is None:
        return None
    base = max(first + 1, warm or 0)
    if base >= len(row) or row[base] is None:
        return None
    return base


def _growth(row: list[float | None], base: int | None) -> float | None:
    """Largest rise over the baseline at any later checkpoint, as a fraction (None
    without a baseline or a later value).

    >>> _growth([90.0, 100.0, 104.0, 109.0], 1), _growth([None, 100.0, None], 1)
    (0.09, None)
    >>> _growth([None, 100.0, 96.0], 1)
    -0.04
    """
    later = [v for v in row[base + 1:] if v is not None] if base is not None else []
    if not later:
        return None
    return round(max(later) / row[base] - 1, 4)


def _added(uss: list[float | None], anon: list[float | None], base: int) -> float:
    """MiB the process added after its baseline: at each later checkpoint the smaller of
    its USS rise and its Anonymous rise (the module's docstring), the largest of those.

    >>> _added([3.4, 3.4, 3.8], [14.5, 14.5, 14.5], 1)    # a forker's child exited
    0.0
    >>> _added([30.0, 32.0, 35.0, 34.0], [40.0, 42.0, 45.5, 44.0], 1)    # a leak
    3.0
    >>> _added([9.6, 9.6, 16.3], [40.0, 40.0, 40.2], 1)    # a node: its child exited
    0.2
    """
    rises = [min(u - uss[base], a - anon[base])
             for u, a in zip(uss[base + 1:], anon[base + 1:], strict=True)
             if u is not None and a is not None]
    return round(max(rises, default=0.0), 4)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--report-every", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=3600.0, help="stop after this long")
    parser.add_argument("--round", type=int, default=2_000, help="calls per get/wait")
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="per node")
    parser.add_argument("--tolerance", type=float, default=0.10)
    parser.add_argument("--smaps", default="", help="save every process's smaps at each "
                        "checkpoint into this folder (benchmarks/smaps.py reads them)")
    args = parser.parse_args()
    measured = run(args)
    text, flat = table(measured, args.tolerance)
    print(f"\n{measured.checkpoints[-1]:,} tasks in {measured.seconds:.0f} s "
          f"({measured.checkpoints[-1] / measured.seconds:,.0f} tasks/s); USS in MiB "
          f"(Private_Clean + Private_Dirty, less the store's pages: the last column has the "
          f"most seen); baseline (*) = a process's first checkpoint a "
          f"full interval after it was first seen (a worker's: and after its first task of "
          f"each kind); USS rise = the most over it at a later checkpoint; pages added = "
          f"the smaller of the USS and the Anonymous rise, over the baseline USS (pages "
          f"that changed hands raise USS only: the module's docstring); flat = pages added "
          f"within {args.tolerance:.0%} at every later checkpoint\n")
    print(text)
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
