#!/usr/bin/env python
"""One node, the last gaps to Ray (issue 15): Ray and plait side by side, in one run.

    python benchmarks/onenode.py                      # ~4 min: 3 rounds + transfers
    python benchmarks/onenode.py --parts init,put,get --rounds 5
    python benchmarks/onenode.py --parts transfers --systems plait,dask

What it measures, per system, each in a fresh subprocess of its own (the parent imports no
system, as run.py), alternating systems round by round so that a busy spell of this shared
machine falls on both:

- ``init``: cold ``init`` (import not included: it is timed apart), one sample per round.
- ``get``: a repeated ``get`` of a 1 MiB array already in this node's store (put once, got
  once untimed, then ``--gets`` gets timed one by one and the value dropped each time).
- ``put``: W1's put (workloads.w1_put_get: fresh ref per repeat, a settle pause between)
  of 1 MiB, 16 MiB, 256 MiB and 1 GiB arrays; W1's get of the same comes along.
- ``transfers``: W10's TCP rows (workloads._w10_rounds over System.cluster: 512 MiB made
  by a task on node-1, read by a task pinned on node-0), plain and encrypted, for every
  system that has them (Ray: plain only; Dask: its TCP and TLS comms).

Medians over all samples of all rounds.  The load average is printed before and after: the
machine is shared, and a figure taken under load says so.  ``--out`` writes every sample.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from time import perf_counter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Ray's init without an address joins a cluster that another process of this machine
# started (/tmp/ray/ray_current_cluster): "local" starts one of its own, as plait does.
os.environ["RAY_ADDRESS"] = "local"

from workloads import MiB, GiB, Config, row, size_label  # noqa: E402  (numpy only)

PARTS = ("init", "get", "put", "transfers")
LOCAL_PARTS = ("init", "get", "put")
SYSTEM_NAMES = ("ray", "plait", "dask")
PUT_SIZES = (1 * MiB, 16 * MiB, 256 * MiB, 1 * GiB)
GET_SIZE = 1 * MiB


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default=",".join(PARTS))
    p.add_argument("--systems", default="ray,plait",
                   help="comma-separated (default ray,plait; dask adds its transfers)")
    p.add_argument("--rounds", type=int, default=3,
                   help="fresh children per system (init, get, put)")
    p.add_argument("--repeat", type=int, default=5, help="puts per size and transfers per round")
    p.add_argument("--gets", type=int, default=500, help="timed gets per round")
    p.add_argument("--out", default=None, help="write every sample as JSON here")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per child")
    p.add_argument("--child", choices=SYSTEM_NAMES, help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.parts = [x for x in args.parts.split(",") if x]
    args.systems = [x for x in args.systems.split(",") if x]
    return args


# --------------------------------------------------------------------------
# Child: one system, in this process.


def local_rows(s, parts, args):
    """init (timed start), then get and put on the started system; stop."""
    t0 = perf_counter()
    s.load()
    import_s = perf_counter() - t0
    t0 = perf_counter()
    s.start()
    rows = [row("cold init", "s", "lower", [perf_counter() - t0]),
            row("import (not in init)", "s", "lower", [import_s])]
    try:
        if "get" in parts:
            rows.append(row(f"get {size_label(GET_SIZE)}, already in this node's store",
                            "ms", "lower", local_gets(s, args.gets)))
        if "put" in parts:
            from workloads import w1_put_get

            rows += w1_put_get(s, Config(repeat=args.repeat, w1_sizes=PUT_SIZES))
    finally:
        s.stop()
    if "init" not in parts:
        rows = rows[2:]
    return rows


def local_gets(s, n):
    """Milliseconds of each of ``n`` gets of one object held in the local store."""
    import numpy as np

    arr = np.arange(GET_SIZE // 8, dtype=np.float64)
    ref = s.put(arr)
    if not np.array_equal(s.get(ref, 60), arr):
        raise AssertionError("get returned different data")
    times = []
    for _ in range(n):
        t0 = perf_counter()
        out = s.get(ref, 60)
        times.append((perf_counter() - t0) * 1e3)
        del out
    return times


def transfer_rows(s, args):
    """W10's plain and encrypted TCP rows (n/a where the system has no such setup)."""
    from systems import Unsupported
    from workloads import W10_TRANSPORTS, _w10_rounds

    s.load()
    cfg = Config(repeat=args.repeat)
    rows = []
    for transport, what in W10_TRANSPORTS:
        if transport == "shm":
            continue
        label = f"{what}: 512 MiB node-1 → node-0"
        try:
            samples = _w10_rounds(s, cfg, transport)
        except Unsupported:
            continue
        names = (f"{label}, consumer submit + get", f"{label}, the copy alone")
        for name, (values, _warmup) in zip(names, samples[:2], strict=True):
            if values is not None:
                rows.append(row(name, "GB/s", "higher", values))
    return rows


def child_main(args):
    from systems import SYSTEMS

    s = SYSTEMS[args.child]()
    parts = set(args.parts)
    rows = []
    if parts & set(LOCAL_PARTS):
        rows += local_rows(s, parts, args)
    if "transfers" in parts:
        rows += transfer_rows(s, args)
    with open(args.child_out, "w") as f:
        json.dump(rows, f)


# --------------------------------------------------------------------------
# Parent: children one after the other, the table at the end.


def run_child(name, parts, args):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name, "--child-out", out,
           "--parts", ",".join(parts), "--repeat", str(args.repeat), "--gets", str(args.gets)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [HERE, os.path.dirname(HERE)] + os.environ.get("PYTHONPATH", "").split(os.pathsep)))
    try:
        proc = subprocess.run(cmd, env=env, timeout=args.timeout, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"! {name} {parts} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
            return []
        with open(out) as f:
            return json.load(f)
    except subprocess.TimeoutExpired:
        print(f"! {name} {parts} timed out after {args.timeout} s", file=sys.stderr)
        return []
    finally:
        os.unlink(out)


def merge(samples, rows, name):
    for r in rows:
        key = (r["metric"], r["unit"], r["better"])
        samples.setdefault(key, {}).setdefault(name, []).extend(r["samples"])


def fmt(v):
    if v is None:
        return "—"
    return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"


def render(samples, systems):
    """A markdown table: each system's median, then plait's over each other system's."""
    peers = [n for n in systems if n != "plait"] if "plait" in systems else []
    head = "| metric | " + " | ".join(systems) + "".join(f" | plait/{n}" for n in peers) + " |"
    lines = [head, "|" + "---|" * (len(systems) + len(peers) + 1)]
    for (metric, unit, _better), by in samples.items():
        med = {n: statistics.median(v) if v else None for n, v in by.items()}
        cells = [fmt(med.get(n)) for n in systems]
        ratios = [f"{med['plait'] / med[n]:.2f}x" if med.get("plait") and med.get(n) else "—"
                  for n in peers]
        lines.append(f"| {metric} ({unit}) | " + " | ".join(cells + ratios) + " |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    print(f"load average before: {os.getloadavg()}", flush=True)
    samples = {}
    local = [p for p in args.parts if p in LOCAL_PARTS]
    for k in range(args.rounds if local else 0):
        for name in args.systems:
            if name == "dask":
                continue
            t0 = time.monotonic()
            merge(samples, run_child(name, local, args), name)
            print(f"  round {k + 1}: {name} {time.monotonic() - t0:.0f} s", flush=True)
    if "transfers" in args.parts:
        for name in args.systems:
            merge(samples, run_child(name, ["transfers"], args), name)
            print(f"  transfers: {name} done", flush=True)
    print(f"load average after: {os.getloadavg()}")
    print(render(samples, args.systems))
    if args.out:
        with open(args.out, "w") as f:
            json.dump([{"metric": m, "unit": u, "samples": by}
                       for (m, u, _), by in samples.items()], f, indent=1)


if __name__ == "__main__":
    main()
