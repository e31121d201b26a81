"""The workloads W1-W7 and W9 (W8, cold init + idle memory, is measured by
run.py right after start, before any task runs).

W6, W7 and W9 need a bounded store: ``STORE_FOR`` names the Config field
holding the store size each one starts with, and run.py runs them in a child
of their own per store size (``group_by_store``), so that every other workload
keeps the system's default store and W8 stays a cold start.

Each workload takes a ``System`` adapter and a ``Config`` and returns a list of
rows ``{"metric", "unit", "better", "median", "samples"}``.  Warm-ups happen
before timing wherever first-call costs (worker import of the task module,
function export, connection setup) would otherwise dominate a small workload.
"""

import gc
import statistics
import time
from dataclasses import dataclass
from time import perf_counter

import numpy as np

from bench_tasks import compute, inc, noop, total

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30


@dataclass
class Config:
    repeat: int = 5
    w1_sizes: tuple = (64 * MiB, 256 * MiB, 1 * GiB)
    w1_settle_s: float = 0.5
    w3_tasks: int = 10_000
    w3_warmup: int = 200
    w4_chain: int = 200
    w5_size: int = 256 * MiB
    w5_tasks: int = 8
    w6_store: int = 1 * GiB
    w6_arrays: int = 8
    w6_size: int = 256 * MiB
    w7_store: int = 2 * GiB
    w7_objects: int = 20_000
    w7_size: int = 101 * KiB
    w7_window: int = 1000
    w9_store: int = 2 * GiB
    w9_size: int = 1 * GiB
    spill_settle_s: float = 1.0
    w8_idle_s: float = 1.0
    get_timeout: float = 120.0

    @classmethod
    def make(cls, quick=False, repeat=None):
        """``quick``: small sizes and 2 repeats, for a smoke run in seconds."""
        if quick:
            cfg = cls(repeat=2, w1_sizes=(8 * MiB, 32 * MiB), w3_tasks=1000,
                      w3_warmup=50, w4_chain=50, w5_size=32 * MiB,
                      w6_store=256 * MiB, w6_size=64 * MiB,
                      w7_store=256 * MiB, w7_objects=2000, w7_window=200,
                      w9_store=256 * MiB, w9_size=128 * MiB, spill_settle_s=0.5)
        else:
            cfg = cls()
        if repeat is not None:
            cfg.repeat = repeat
        return cfg


# Workloads that start the system with a bounded store -> the Config field
# holding its size.  Every other workload runs with the system's default store.
STORE_FOR = {"W6": "w6_store", "W7": "w7_store", "W9": "w9_store"}


def group_by_store(workloads, cfg):
    """Split workloads into runs that share a store size, default store first.

    >>> group_by_store(["W6", "W1", "W9", "W8", "W7"], Config())
    [(None, ['W1', 'W8']), (1073741824, ['W6']), (2147483648, ['W9', 'W7'])]
    """
    groups = {None: []}
    for w in workloads:
        store = getattr(cfg, STORE_FOR[w]) if w in STORE_FOR else None
        groups.setdefault(store, []).append(w)
    return [(store, ws) for store, ws in groups.items() if ws]


def size_label(nbytes):
    """
    >>> size_label(GiB), size_label(256 * MiB), size_label(101 * KiB)
    ('1 GiB', '256 MiB', '101 KiB')
    """
    for unit, scale in (("GiB", GiB), ("MiB", MiB)):
        if nbytes % scale == 0:
            return f"{nbytes // scale} {unit}"
    return f"{nbytes // KiB} KiB"


def row(metric, unit, better, samples, **extra):
    return {"metric": metric, "unit": unit, "better": better,
            "median": statistics.median(samples), "samples": samples, **extra}


def settle(seconds):
    """Untimed pause after dropping refs: frees (and spill-file deletes) are
    asynchronous in every system, and the next round should start clean."""
    gc.collect()
    time.sleep(seconds)


def read_first(s, ref, timeout):
    """get one array and read its first element.  The value is dropped on
    return, which unpins it, so the store may spill it again."""
    return float(s.get(ref, timeout)[0])


def random_array(nbytes, seed=0):
    """Deterministic float64 data (np.random.rand with a fixed seed)."""
    np.random.seed(seed)
    return np.random.rand(nbytes // 8)


def w1_put_get(s, cfg):
    """put and get of large arrays, each timed alone.

    The previous ref (and get's result) is dropped between repeats, followed
    by a short untimed pause, so the store can reuse memory instead of
    growing: frees are asynchronous (in Ray, a put issued right after a del
    of the same size often misses the freed block and takes the slow
    fresh-page path, making the samples bimodal).  Correctness is checked
    once, outside the timing.
    """
    rows = []
    for nbytes in cfg.w1_sizes:
        arr = random_array(nbytes)
        put_s, get_s = [], []
        for i in range(cfg.repeat):
            t0 = perf_counter()
            ref = s.put(arr)
            t1 = perf_counter()
            out = s.get(ref, cfg.get_timeout)
            t2 = perf_counter()
            if i == 0 and not np.array_equal(out, arr):
                raise AssertionError(f"get returned different data ({size_label(nbytes)})")
            del out, ref
            gc.collect()
            time.sleep(cfg.w1_settle_s)
            put_s.append((t1 - t0) * 1e3)
            get_s.append((t2 - t1) * 1e3)
        del arr
        label = size_label(nbytes)
        rows += [row(f"put {label}", "ms", "lower", put_s),
                 row(f"get {label}", "ms", "lower", get_s)]
    return rows


def w2_tutorial(s, cfg):
    """Ray tutorial seed: 2 small puts, 10 matmul-sum tasks, one get.

    Times the whole thing (puts + submits + get): latency of a tiny graph.
    """
    np.random.seed(0)
    a, b = np.random.rand(32, 32), np.random.rand(32, 32)
    expected = [int(np.matmul(a, b).sum())] * 10

    def once():
        m1, m2 = s.put(a), s.put(b)
        refs = [s.submit(compute, m1, m2) for _ in range(10)]
        return s.get(refs, cfg.get_timeout)

    if list(once()) != expected:
        raise AssertionError("compute returned wrong results")
    times = []
    for _ in range(cfg.repeat):
        t0 = perf_counter()
        once()
        times.append((perf_counter() - t0) * 1e3)
    return [row("put x2 + 10 tasks + get", "ms", "lower", times)]


def w3_noop_throughput(s, cfg):
    """Many independent no-op tasks: per-task scheduling overhead."""
    n = cfg.w3_tasks
    s.get(s.map(noop, range(cfg.w3_warmup)), cfg.get_timeout)
    rates = []
    for _ in range(cfg.repeat):
        t0 = perf_counter()
        refs = s.map(noop, range(n))
        out = s.get(refs, cfg.get_timeout)
        rates.append(n / (perf_counter() - t0))
        if len(out) != n:
            raise AssertionError(f"got {len(out)} results for {n} tasks")
        del refs, out
    return [row(f"{n:,} no-op tasks", "tasks/s", "higher", rates)]


def w4_chain_latency(s, cfg):
    """A chain of dependent x+1 tasks: end-to-end latency of one hop
    (dependency resolution + dispatch + result handoff)."""
    n = cfg.w4_chain

    def once():
        r = 0
        for _ in range(n):
            r = s.submit(inc, r)
        return s.get(r, cfg.get_timeout)

    if once() != n:
        raise AssertionError("chain returned a wrong value")
    per_hop = []
    for _ in range(cfg.repeat):
        t0 = perf_counter()
        once()
        per_hop.append((perf_counter() - t0) * 1e3 / n)
    return [row(f"chain of {n}, per hop", "ms", "lower", per_hop)]


def w5_shared_read(s, cfg):
    """One large array put once, read by several tasks: tests zero-copy
    sharing with workers (put is outside the timing)."""
    arr = random_array(cfg.w5_size, seed=1)
    expected = float(arr.sum())
    ref = s.put(arr)
    del arr

    def once():
        return s.get([s.submit(total, ref) for _ in range(cfg.w5_tasks)], cfg.get_timeout)

    if not np.allclose(once(), expected):
        raise AssertionError("sum tasks returned a wrong value")
    times = []
    for _ in range(cfg.repeat):
        t0 = perf_counter()
        once()
        times.append((perf_counter() - t0) * 1e3)
    return [row(f"{cfg.w5_tasks} x sum of {size_label(cfg.w5_size)}", "ms", "lower", times)]


def w6_spill_restore(s, cfg):
    """Put twice the store's worth of arrays, then get them all back, in put
    order: spill throughput (the puts) and restore throughput (the gets).

    Each array is the same random data with element 0 set to its index, so
    the restore phase checks it got the right object back, reading just that
    element.  With LRU spilling, the first arrays are on disk by the end of
    the puts, and each get in put order restores one (spilling another), so
    the restore phase also spills.  A system's own spill figures (plait:
    ``memory_summary``) are cumulative over the session; the row shows the
    reading after the last round, the JSON has one reading per round.
    """
    n, size = cfg.w6_arrays, cfg.w6_size
    total_bytes = n * size
    arr = random_array(size, seed=2)
    put_rates, get_rates, after_puts, reports = [], [], [], []
    for _ in range(cfg.repeat):
        refs = []
        t0 = perf_counter()
        for i in range(n):
            arr[0] = i
            refs.append(s.put(arr))
        t1 = perf_counter()
        after_puts.append(s.spill_report())
        t2 = perf_counter()
        firsts = [read_first(s, ref, cfg.get_timeout) for ref in refs]
        t3 = perf_counter()
        reports.append(s.spill_report())
        if firsts != list(range(n)):
            raise AssertionError(f"gets returned the wrong objects: element 0 is {firsts}")
        del refs
        settle(cfg.spill_settle_s)
        put_rates.append(total_bytes / (t1 - t0) / 1e9)
        get_rates.append(total_bytes / (t3 - t2) / 1e9)
    label = f"{n} x {size_label(size)} in a {size_label(cfg.w6_store)} store"
    rows = [row(f"put {label}", "GB/s", "higher", put_rates),
            row("get + read 1 element each, in put order", "GB/s", "higher", get_rates)]
    if reports[-1] is not None:
        rows += [
            row("spilled after the puts, self-reported", "GiB", None,
                [r.spilled_bytes / GiB for r in after_puts]),
            row("spill, self-reported (cumulative)", "GB/s", "higher",
                [reports[-1].spill_gbps], per_round=[r.spill_gbps for r in reports]),
            row("restore, self-reported (cumulative)", "GB/s", "higher",
                [reports[-1].restore_gbps], per_round=[r.restore_gbps for r in reports]),
        ]
    return rows


def w7_small_puts(s, cfg):
    """Many objects just above the inline threshold (100 KiB in plait and in
    Ray), so every one is allocated in the store: does a put get slower as
    the store fills?  One round; each latency row is the median of a window
    of individually timed puts.

    20,000 x 101 KiB is 1.93 GiB of payload in a 2 GiB store: in plait
    (4 KiB-aligned blocks) it's 99% full at the end, so the last puts also
    meet a nearly full allocator, and a store with more per-object overhead
    starts spilling.  The same zero-filled array is put every time (no data
    generation inside the loop).
    """
    n, k = cfg.w7_objects, cfg.w7_window
    x = np.zeros(cfg.w7_size, dtype=np.uint8)
    refs, latencies = [], []
    t_all = perf_counter()
    for _ in range(n):
        t0 = perf_counter()
        refs.append(s.put(x))
        latencies.append(perf_counter() - t0)
    t_all = perf_counter() - t_all
    report = s.spill_report()
    del refs
    settle(cfg.spill_settle_s)
    first = [t * 1e6 for t in latencies[:k]]
    last = [t * 1e6 for t in latencies[-k:]]
    ratio = statistics.median(last) / statistics.median(first)
    label = f"{n:,} x {size_label(cfg.w7_size)} in a {size_label(cfg.w7_store)} store"
    rows = [row(f"put, first {k:,} of {label}", "µs", "lower", first),
            row(f"put, last {k:,}", "µs", "lower", last),
            row("last/first (flat = 1)", "x", None, [ratio]),
            row(f"all {n:,} puts", "s", "lower", [t_all])]
    if report is not None:
        rows.append(row("objects spilled at the end, self-reported", "count", None,
                        [report.spilled_objects]))
    return rows


def w9_get_under_pressure(s, cfg):
    """get of a large object that was spilled because the store filled up.

    Per round: put a 1 GiB array, then its two halves as two more objects
    (the store is now over-full, so the big one, least recently used, spills),
    then time one get of the big one plus a read of element 0: a restore that
    must first spill other objects to make room (unless the system spilled
    ahead, or placed the halves elsewhere: Ray spills in the background and
    its rounds are bimodal, hence the slowest-round row).  The big array's
    element 0 is set to the round number, so the read checks it's the right
    object.  The data is ``arange`` rather than random: neither system
    compresses, and it saves seconds of generating 1 GiB.
    """
    big = np.arange(cfg.w9_size // 8, dtype=np.float64)
    halves = (big[:big.size // 2], big[big.size // 2:])
    times, spilled = [], []
    for i in range(cfg.repeat):
        big[0] = i
        ref = s.put(big)
        filler = [s.put(h) for h in halves]
        report = s.spill_report()
        spilled.append(None if report is None else report.spilled_bytes / GiB)
        t0 = perf_counter()
        first = read_first(s, ref, cfg.get_timeout)
        times.append((perf_counter() - t0) * 1e3)
        if first != i:
            raise AssertionError(f"get returned the wrong object: element 0 is {first}, not {i}")
        del ref, filler
        settle(cfg.spill_settle_s)
    size = size_label(cfg.w9_size)
    rows = [row(f"get {size} after 2 x {size_label(cfg.w9_size // 2)} more "
                f"into a {size_label(cfg.w9_store)} store", "ms", "lower", times),
            row(f"same, slowest of {len(times)} rounds", "ms", "lower", [max(times)])]
    if spilled[0] is not None:
        rows.append(row("spilled before the get, self-reported", "GiB", None, spilled))
    return rows


WORKLOADS = {
    "W1": w1_put_get,
    "W2": w2_tutorial,
    "W3": w3_noop_throughput,
    "W4": w4_chain_latency,
    "W5": w5_shared_read,
    "W6": w6_spill_restore,
    "W7": w7_small_puts,
    "W9": w9_get_under_pressure,
}
ALL_WORKLOADS = ["W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9"]
