"""The workloads W1-W5 (W8, cold init + idle memory, is measured by run.py
right after start, before any task runs).

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
    w8_idle_s: float = 1.0
    get_timeout: float = 120.0

    @classmethod
    def make(cls, quick=False, repeat=None):
        """``quick``: small sizes and 2 repeats, for a smoke run in seconds."""
        if quick:
            cfg = cls(repeat=2, w1_sizes=(8 * MiB, 32 * MiB), w3_tasks=1000,
                      w3_warmup=50, w4_chain=50, w5_size=32 * MiB)
        else:
            cfg = cls()
        if repeat is not None:
            cfg.repeat = repeat
        return cfg


def size_label(nbytes):
    return f"{nbytes // GiB} GiB" if nbytes % GiB == 0 else f"{nbytes // MiB} MiB"


def row(metric, unit, better, samples):
    return {"metric": metric, "unit": unit, "better": better,
            "median": statistics.median(samples), "samples": samples}


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
    del ref
    return [row(f"{cfg.w5_tasks} x sum of {size_label(cfg.w5_size)}", "ms", "lower", times)]


WORKLOADS = {
    "W1": w1_put_get,
    "W2": w2_tutorial,
    "W3": w3_noop_throughput,
    "W4": w4_chain_latency,
    "W5": w5_shared_read,
}
ALL_WORKLOADS = [*WORKLOADS, "W8"]
