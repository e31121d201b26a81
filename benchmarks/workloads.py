"""The workloads W1-W7 and W9-W12 (W8, cold init + idle memory, is measured by
run.py right after start, before any task runs).

W6, W7 and W9 need a bounded store: ``STORE_FOR`` names the Config field
holding the store size each one starts with, and run.py runs them in a child
of their own per store size (``group_by_setup``), so that every other workload
keeps the system's default store and W8 stays a cold start.

W10, W11 and W12 need several nodes (``OWN_CLUSTERS``): run.py starts nothing
for them; each starts and stops its own clusters through ``System.cluster``,
in a child of its own.

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

from bench_tasks import (compute, first_element, inc, make_block, mapper, noop, reducer,
                         seed_compute, total)
from systems import Unsupported

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
    w10_size: int = 512 * MiB
    w10_settle_s: float = 0.25
    w11_size: int = 64 * MiB
    w11_settle_s: float = 0.2
    w12_sizes: tuple = (10_000, 100_000)
    w12_big_repeat: int = 3                 # repeats for sizes >= 100,000 (seconds each)
    w13_sync_calls: int = 1000
    w13_async_calls: int = 10_000
    w14_depth: int = 6
    w12_live_tasks: int = 10_000
    w12_input: int = 64 * MiB
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
                      w9_store=256 * MiB, w9_size=128 * MiB, spill_settle_s=0.5,
                      w10_size=64 * MiB, w10_settle_s=0.2, w11_size=8 * MiB,
                      w11_settle_s=0.1, w12_sizes=(1000, 10_000), w12_live_tasks=1000,
                      w12_input=8 * MiB)
        else:
            cfg = cls()
        if repeat is not None:
            cfg.repeat = repeat
        return cfg


# Workloads that start the system with a bounded store -> the Config field
# holding its size.  Every other workload runs with the system's default store.
STORE_FOR = {"W6": "w6_store", "W7": "w7_store", "W9": "w9_store"}

# Workloads that start (and stop) their own multi-node clusters: run.py starts
# nothing for them, and gives each a child of its own.
OWN_CLUSTERS = ("W10", "W11", "W12")
OWN = "own"


def group_by_setup(workloads, cfg):
    """Split workloads into runs that share a setup: the default store first, then
    one per bounded-store size (bytes), then each own-cluster workload alone (``OWN``).

    >>> for group in group_by_setup(["W6", "W10", "W1", "W9", "W8", "W7", "W12"], Config()):
    ...     print(group)
    (None, ['W1', 'W8'])
    (1073741824, ['W6'])
    (2147483648, ['W9', 'W7'])
    ('own', ['W10'])
    ('own', ['W12'])
    """
    groups = {None: []}
    own = []
    for w in workloads:
        if w in OWN_CLUSTERS:
            own.append((OWN, [w]))
            continue
        store = getattr(cfg, STORE_FOR[w]) if w in STORE_FOR else None
        groups.setdefault(store, []).append(w)
    return [(store, ws) for store, ws in groups.items() if ws] + own


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


def na_row(metric, unit, better, reason):
    """A row this system has no equivalent for (its cell shows n/a, the reason is
    listed under the table)."""
    return {"metric": metric, "unit": unit, "better": better, "median": None,
            "samples": [], "na": reason}


def error_row(metric, unit, better, error, tb=None):
    """A row whose measurement raised, while the workload's other rows stand (its cell
    shows ERR[n], the message is listed under the table)."""
    return {"metric": metric, "unit": unit, "better": better, "median": None,
            "samples": [], "error": error, "traceback": tb}


def _err(exc):
    return f"{type(exc).__name__}: {exc}".strip()


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


# W10's transports: (System.cluster transport, row label).  Who has which is in
# the adapters' ``cluster`` docstrings.
W10_TRANSPORTS = (
    ("shm", "same host, shared memory"),
    ("tcp", "TCP loopback, unencrypted"),
    ("encrypted", "TCP loopback, encrypted (plait CurveZMQ, Dask TLS)"),
)


def w10_cross_node(s, cfg):
    """One large object made by a task on node-1, read by a task pinned on node-0.

    Per transport (``W10_TRANSPORTS``), on a fresh 2-node cluster: each round makes a
    new object on node-1 (``make_block``, element 0 = the round) and waits until it
    exists (untimed), then times the consumer: submitting ``first_element(x)`` pinned
    on node-0 and getting its value.  That time covers the copy to node-0 plus a task
    round trip; size / time is the end-to-end rate.  Where the system reports it
    (``System.trace``), the copy alone (bytes / its own start-to-end, as the receiving
    node recorded it) and the consumer task's own run time are reported too.  Round 0
    is a warm-up (worker imports, and the first touch of the destination store's
    pages): its sample is kept in the JSON, not in the median.

    A transport one system lacks, or a variant that fails, gives n/a or ERR rows for
    that transport only; the others still run.
    """
    size = cfg.w10_size
    label = size_label(size)
    rows = []
    for transport, what in W10_TRANSPORTS:
        metrics = [(f"{what}: {label} node-1 → node-0, consumer submit + get", "GB/s", "higher"),
                   (f"{what}: the copy alone, self-reported", "GB/s", "higher"),
                   (f"{what}: consumer task alone, self-reported", "ms", "lower")]
        try:
            samples = _w10_rounds(s, cfg, transport)
        except Unsupported as e:
            rows += [na_row(*m, reason=str(e)) for m in metrics]
            continue
        except Exception as e:
            import traceback
            tb = traceback.format_exc()
            rows += [error_row(*m, error=_err(e), tb=tb) for m in metrics]
            continue
        for m, (values, warmup) in zip(metrics, samples, strict=True):
            if values is None:
                rows.append(na_row(*m, reason=f"{s.name} reports no per-task or "
                                              f"per-transfer times to the driver"))
            else:
                rows.append(row(*m, values, warmup=warmup))
    return rows


def _w10_rounds(s, cfg, transport):
    """(samples, warm-up sample) for each of W10's three rows; None where not reported."""
    size = cfg.w10_size
    e2e, copy, task = [], [], []
    reported = True
    with s.cluster(2, transport) as (head, other):
        for i in range(cfg.repeat + 1):
            x = s.submit_on(other, make_block, size, i)
            s.wait_ready([x])
            with s.trace() as recorded:
                t0 = perf_counter()
                value = s.get(s.submit_on(head, first_element, x), cfg.get_timeout)
                seconds = perf_counter() - t0
            if value != i:
                raise AssertionError(f"the consumer read {value}, not {i}: wrong object")
            e2e.append(size / seconds / 1e9)
            if recorded is None:
                reported = False
            else:
                copies = [t for t in recorded.transfers if t.nbytes >= size]
                if len(copies) != 1:
                    raise AssertionError(f"expected one copy of the {size_label(size)} object "
                                         f"in the trace, got {recorded.transfers}")
                copy.append(copies[0].gbps)
                runs = [t for t in recorded.tasks if t.name == "first_element"]
                if len(runs) != 1:
                    raise AssertionError(f"expected one first_element task in the trace, "
                                         f"got {recorded.tasks}")
                task.append(runs[0].seconds * 1e3)
            del x
            settle(cfg.w10_settle_s)
    out = [(e2e[1:], e2e[0])]
    out += [(v[1:], v[0]) if reported else (None, None) for v in (copy, task)]
    return out


def w11_seed_across_nodes(s, cfg):
    """The seed pattern (W2) on 3 nodes, with a large third input.

    put two 32x32 arrays and a 64 MiB one, then ten ``seed_compute(x, y, big)``
    tasks with no pins (plait: the compiler places them; Ray, Dask: their default
    scheduling), one get.  Timed: the whole thing, and the tasks + get alone.  Each
    task also says where it ran (``bench_tasks.where``): the nodes used.  Where the
    system reports transfers (plait's trace, Dask's transfer logs), the bytes moved
    between nodes per round: the seed's promise is that the big object reaches each
    node at most once, so at most 2 x 64 MiB on 3 nodes.  Fresh objects every round;
    round 0 is a warm-up.
    """
    np.random.seed(0)
    a, b = np.random.rand(32, 32), np.random.rand(32, 32)
    big = random_array(cfg.w11_size, seed=3)
    big[0] = 7.0
    expected = int(np.matmul(a, b).sum()) + 7
    whole, tasks, moved, used = [], [], [], []
    reported = True
    with s.cluster(3, "default"):
        for i in range(cfg.repeat + 1):
            with s.trace() as recorded:
                t0 = perf_counter()
                x, y, z = s.put(a), s.put(b), s.put(big)
                t1 = perf_counter()
                out = s.get([s.submit(seed_compute, x, y, z) for _ in range(10)],
                            cfg.get_timeout)
                t2 = perf_counter()
            values = [v for v, _ in out]
            if values != [expected] * 10:
                raise AssertionError(f"seed_compute returned {values}, not {expected}")
            if i > 0:
                whole.append((t2 - t0) * 1e3)
                tasks.append((t2 - t1) * 1e3)
                used.append(len({node for _, node in out}))
                if recorded is None:
                    reported = False
                else:
                    moved.append(recorded.bytes_moved / MiB)
            del x, y, z, out
            settle(cfg.w11_settle_s)
    big_label = size_label(cfg.w11_size)
    rows = [row(f"put 2 x 32x32 + {big_label}, 10 tasks, get (3 nodes)", "ms", "lower", whole),
            row("10 tasks + get alone (after the puts)", "ms", "lower", tasks),
            row("nodes that ran a task (of 3)", "count", None, used)]
    limit = size_label(2 * cfg.w11_size)
    if reported:
        rows += [row(f"bytes moved between nodes, self-reported (promise ≤ {limit})",
                     "MiB", None, moved),
                 row("bytes moved, most in one round", "MiB", None, [max(moved)])]
    else:
        reason = f"{s.name} reports no transfers to the driver"
        rows += [na_row(f"bytes moved between nodes, self-reported (promise ≤ {limit})",
                        "MiB", None, reason),
                 na_row("bytes moved, most in one round", "MiB", None, reason)]
    return rows


# W12's targets: tasks -> seconds.
W12_TARGETS = {10_000: 0.5, 100_000: 5.0}


def _target(n):
    t = W12_TARGETS.get(n)
    return f" (target < {t:g} s)" if t is not None else ""


def w12_compile_time(s, cfg):
    """plait's compiler: time to place a large graph (plait only).

    Hand-built: ``System.map_reduce_graph`` (N/2 map tasks each reading one of 3
    inputs held on 3 nodes, N/2 reduce tasks in a chain over the maps), then
    ``compile_graph`` (``plait.compiler.compile(graph, view)``) timed alone, for each
    N in ``w12_sizes``; building the graph is not timed.  End to end: on a live 3-node
    cluster with the 3 inputs made on their nodes, the same shape as N ``.remote()``
    calls (timed on their own row), then ``compile_refs`` (``plait.compile(last)``:
    graph collection, one cluster-view round trip to the head, compile), not run.
    """
    rows = []
    for n in cfg.w12_sizes:
        graph = s.map_reduce_graph(n, cfg.w12_input)
        repeat = cfg.repeat if n < 100_000 else min(cfg.repeat, cfg.w12_big_repeat)
        times = []
        for _ in range(repeat):
            gc.collect()
            t0 = perf_counter()
            placed = s.compile_graph(graph)
            times.append(perf_counter() - t0)
            if placed != n:
                raise AssertionError(f"the plan placed {placed} of {n} tasks")
        del graph
        rows.append(row(f"compile {n:,} tasks, hand-built graph{_target(n)}", "s", "lower",
                        times))
    n = cfg.w12_live_tasks
    remote_s, compile_s = [], []
    with s.cluster(3, "default", lazy=True) as nodes:
        inputs = [s.submit_on(node, make_block, cfg.w12_input, k) for k, node in enumerate(nodes)]
        s.wait_ready(inputs)
        for i in range(cfg.repeat + 1):
            gc.collect()
            t0 = perf_counter()
            maps = [s.submit(mapper, inputs[j % 3], j) for j in range(n // 2)]
            acc = 0
            for m in maps:
                acc = s.submit(reducer, acc, m)
            t1 = perf_counter()
            placed = s.compile_refs([acc])
            t2 = perf_counter()
            if placed != n:
                raise AssertionError(f"plait.compile placed {placed} of {n} tasks")
            del maps, acc
            if i > 0:                      # round 0: warm-up
                remote_s.append(t1 - t0)
                compile_s.append(t2 - t1)
    rows += [row(f"plait.compile of {n:,} .remote() calls, live 3-node cluster{_target(n)}",
                 "s", "lower", compile_s),
             row(f"the {n:,} .remote() calls (not in compile)", "s", "lower", remote_s)]
    return rows


def w13_actor_calls(s, cfg):
    """An actor's call round trip (call, then get, one at a time) and calls per second
    when many are made before one get (Ray's microbenchmark: 1:1 actor calls sync/async)."""
    from bench_tasks import Counter

    counter = s.actor(Counter)
    s.get_calls([s.call(counter, "incr") for _ in range(100)], cfg.get_timeout)   # warm-up
    sync_ms, async_rate = [], []
    for _ in range(cfg.repeat):
        n = cfg.w13_sync_calls
        t0 = perf_counter()
        for _ in range(n):
            s.get_calls([s.call(counter, "incr")], cfg.get_timeout)
        sync_ms.append((perf_counter() - t0) * 1e3 / n)
        n = cfg.w13_async_calls
        before = s.get_calls([s.call(counter, "incr")], cfg.get_timeout)[0]
        t0 = perf_counter()
        values = s.get_calls([s.call(counter, "incr") for _ in range(n)], cfg.get_timeout)
        async_rate.append(n / (perf_counter() - t0))
        expected = list(range(before + 1, before + n + 1))
        if (values if s.ordered_actor_calls else sorted(values)) != expected:
            raise AssertionError("actor calls ran out of order or lost state")
    return [row("actor call round trip (sync)", "ms", "lower", sync_ms),
            row(f"{cfg.w13_async_calls:,} actor calls, one get (async)", "calls/s", "higher",
                async_rate)]


def w14_tree_of_tasks(s, cfg):
    """Ray's tree-of-tasks pattern: every task submits two children and waits for them,
    ``depth`` levels (127 tasks at depth 6, 63 of them blocked at once on 2 workers)."""
    from bench_tasks import tree

    depth = cfg.w14_depth
    expected = 2 ** depth
    if s.get(s.submit(tree, s.name, depth), cfg.get_timeout) != expected:   # warm-up
        raise AssertionError("tree returned a wrong count")
    times = []
    for _ in range(cfg.repeat):
        t0 = perf_counter()
        s.get(s.submit(tree, s.name, depth), cfg.get_timeout)
        times.append(perf_counter() - t0)
    return [row(f"tree of tasks, depth {depth} ({2 * expected - 1} tasks)", "s", "lower", times)]


WORKLOADS = {
    "W1": w1_put_get,
    "W2": w2_tutorial,
    "W3": w3_noop_throughput,
    "W4": w4_chain_latency,
    "W5": w5_shared_read,
    "W6": w6_spill_restore,
    "W7": w7_small_puts,
    "W9": w9_get_under_pressure,
    "W10": w10_cross_node,
    "W11": w11_seed_across_nodes,
    "W12": w12_compile_time,
    "W13": w13_actor_calls,
    "W14": w14_tree_of_tasks,
}
ALL_WORKLOADS = ["W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9", "W10", "W11", "W12",
                 "W13", "W14"]
