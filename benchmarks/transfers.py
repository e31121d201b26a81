#!/usr/bin/env python
"""Transfers between nodes over TCP loopback (issue 15): plait, Dask and raw ZeroMQ, plain
and encrypted, 64 MiB to 1 GiB.

    python benchmarks/transfers.py                                    # all, ~6 min
    python benchmarks/transfers.py --systems plait --sizes 512 --repeat 7
    PYTHONPATH=/other/checkout python benchmarks/transfers.py --systems plait   # its plait
    PLAIT_BENCH_KEEP_LOGS=/tmp/kept python benchmarks/transfers.py   # a failing row keeps
                                                                      # its nodes' logs there

plait and Dask: W10's transfer (workloads._w10_rounds' steps, System.cluster): per round a
task pinned on node-1 makes the object (untimed, waited for), then timed: a task pinned on
node-0 reading one element of it, submit + get. Rows per size and transport:

- ``e2e``: size / (submit + get), the copy plus a task round trip;
- ``copy``: the copy alone as the system reports it (plait's trace transfer event, Dask's
  ``transfer_incoming_log``);
- ``cpu``: CPU seconds per GB, of the node (plait) or worker (Dask) processes of both sides
  over the timed block, from /proc/<pid>/stat: on a busy shared machine wall time stretches
  with the load, CPU time much less, so this says what a transfer costs.

Raw ZeroMQ (benchmarks/rawzmq.py): the same bytes in 1 MiB frames from one process to
another, received in place, over 1 and 2 streams; ``cpu`` is both processes' too.

Medians over ``--repeat`` rounds after one warm-up round. The load average is printed
before and after each system: the machine is shared (2 cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from time import perf_counter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_tasks import first_element, make_block  # noqa: E402
from rawzmq import cpu_seconds, measure  # noqa: E402

MiB = 1 << 20
TRANSPORTS = ("tcp", "encrypted")


def node_pids(s):
    """The processes that move the bytes: plait's node processes, Dask's workers."""
    if s.name == "plait":
        return [n.pid for n in s.plait.nodes()]
    return list(s.client.run(os.getpid).values())


def rounds(s, size, transport, repeat):
    """{"e2e", "copy", "cpu"}: samples of ``repeat`` rounds after a warm-up one."""
    out = {"e2e": [], "copy": [], "cpu": []}
    with s.cluster(2, transport) as (head, other):
        pids = node_pids(s)
        for i in range(repeat + 1):
            x = s.submit_on(other, make_block, size, i)
            s.wait_ready([x])
            with s.trace() as recorded:
                cpu0 = sum(cpu_seconds(pid) for pid in pids)
                t0 = perf_counter()
                value = s.get(s.submit_on(head, first_element, x), 600)
                seconds = perf_counter() - t0
                cpu = sum(cpu_seconds(pid) for pid in pids) - cpu0
            if value != i:
                raise AssertionError(f"the consumer read {value}, not {i}: wrong object")
            copies = [t for t in recorded.transfers if t.nbytes >= size]
            if i and len(copies) == 1:
                out["copy"].append(copies[0].gbps)
            if i:
                out["e2e"].append(size / seconds / 1e9)
                out["cpu"].append(cpu / (size / 1e9))
            del x
    return out


def report(name, size, transport, samples):
    cells = []
    for key, unit in (("e2e", "GB/s"), ("copy", "GB/s"), ("cpu", "CPU s/GB")):
        values = samples.get(key) or []
        if values:
            cells.append(f"{key} {statistics.median(values):.2f} {unit}")
    print(f"| {name} | {transport} | {size >> 20} MiB | " + " | ".join(cells)
          + f" | load {os.getloadavg()[0]:.1f} |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--systems", default="zmq,plait,dask")
    ap.add_argument("--sizes", default="64,256,512,1024", help="MiB")
    ap.add_argument("--transports", default=",".join(TRANSPORTS))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    sizes = [int(x) * MiB for x in args.sizes.split(",")]
    transports = args.transports.split(",")
    for name in args.systems.split(","):
        print(f"{name}: load average before {os.getloadavg()}", flush=True)
        if name == "zmq":
            for transport in transports:
                for streams in (1, 2):
                    for size in sizes:
                        out = measure(size, transport == "encrypted", streams, args.repeat)
                        report(f"raw ZeroMQ, {streams} stream(s)", size, transport,
                               {"copy": out["rates"],
                                "cpu": [out["receiver_cpu"] + out["sender_cpu"]]})
            continue
        from systems import SYSTEMS, Unsupported

        s = SYSTEMS[name]()
        s.load()
        label = name
        if name == "plait":
            label = f"plait ({os.path.dirname(os.path.dirname(s.plait.__file__))})"
        for transport in transports:
            for size in sizes:
                try:
                    report(label, size, transport, rounds(s, size, transport, args.repeat))
                except Unsupported as error:
                    print(f"| {label} | {transport} | n/a: {error} |")
                except Exception as error:           # one row's failure; the others still run
                    print(f"| {label} | {transport} | {size >> 20} MiB | ERR "
                          f"{type(error).__name__}: {error} |", flush=True)
        print(f"{name}: load average after {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
