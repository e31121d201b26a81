#!/usr/bin/env python
"""More than the store holds: Ray's fallback to disk beside plait's, in one run.

    python benchmarks/overstore.py [--rounds 3] [--store-mib 256]

Each system runs in a fresh subprocess of its own per round (Ray 2.60, plait), the systems
alternating round by round, each started with a ``--store-mib`` store and 2 CPUs, on
loopback. Per round, each step timed once:

- ``get of 4 x 100 MiB``: four 100 MiB arrays put (400 MiB, more than the store), then one
  ``get`` of all four; the values are checked.
- ``task reading 4 x 100 MiB``: one task given the four arrays, summing each one's first
  and last element.
- ``put of 400 MiB`` and ``get of it``: an array larger than the whole store.
- ``task on another node reading it``, twice: on a cluster of two nodes (Ray: a
  ``ray.cluster_utils.Cluster``; plait: ``num_nodes=2``) of 1 CPU and a ``--store-mib``
  store each, the 400 MiB array put by the driver and read by a task pinned to the other
  node; the second read finds the copy the first left there.

Ray writes what its store cannot hold to its fallback files (``/tmp/ray``); plait reads
what its store cannot hold from its spill files and writes objects larger than the store
to files of their own. Medians over the rounds; the load average is printed before and
after (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

MiB = 1 << 20
PART = 100 * MiB
PARTS = 4
HUGE = 400 * MiB
STEPS = ("get of 4 x 100 MiB", "task reading 4 x 100 MiB", "put of 400 MiB",
         "get of the 400 MiB", "task on another node reading it",
         "... and again (its copy there)")


def ends(*arrays):
    return [float(a[0]) + float(a[-1]) for a in arrays]


def run_system(name: str, store_mib: int) -> dict[str, float]:
    """One round on ``name``: seconds per step."""
    import numpy as np

    if name == "ray":
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        os.environ["RAY_ADDRESS"] = "local"
        import ray as system

        system.init(num_cpus=2, object_store_memory=store_mib * MiB, include_dashboard=False,
                    logging_level="ERROR")
    else:
        import plait as system

        system.init(num_cpus=2, object_store_memory=store_mib * MiB)
    try:
        remote_ends = system.remote(ends)
        system.get(remote_ends.remote(np.ones(4)))                 # workers up
        parts = [np.full(PART // 8, float(i)) for i in range(PARTS)]
        refs = [system.put(part) for part in parts]
        seconds = {}
        start = time.perf_counter()
        values = system.get(refs)
        seconds[STEPS[0]] = time.perf_counter() - start
        assert [float(v[0]) + float(v[-1]) for v in values] == [2.0 * i for i in range(PARTS)]
        del values
        start = time.perf_counter()
        summed = system.get(remote_ends.remote(*refs))
        seconds[STEPS[1]] = time.perf_counter() - start
        assert summed == [2.0 * i for i in range(PARTS)]
        del refs, parts
        huge = np.arange(HUGE // 8, dtype=np.float64)
        start = time.perf_counter()
        ref = system.put(huge)
        seconds[STEPS[2]] = time.perf_counter() - start
        start = time.perf_counter()
        value = system.get(ref)
        seconds[STEPS[3]] = time.perf_counter() - start
        assert value[-1] == huge[-1]
        del value, ref
    finally:
        system.shutdown()
    seconds.update(read_elsewhere(name, store_mib))
    return seconds


def read_elsewhere(name: str, store_mib: int) -> dict[str, float]:
    """The 400 MiB array put by the driver, read twice by a task on the other node of two:
    seconds for each read."""
    import numpy as np

    cluster = None
    if name == "ray":
        import ray as system
        from ray.cluster_utils import Cluster
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "object_store_memory": store_mib * MiB})
        cluster.add_node(num_cpus=1, object_store_memory=store_mib * MiB)
        cluster.wait_for_nodes()
        system.init(address=cluster.address, logging_level="ERROR")
        here = system.get_runtime_context().get_node_id()
        there = next(n["NodeID"] for n in system.nodes() if n["NodeID"] != here)
        reader = system.remote(ends).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(there, soft=False))
    else:
        import plait as system

        system.init(num_nodes=2, num_workers=1, object_store_memory=store_mib * MiB)
        reader = system.remote(ends).options(node="node-1")
    try:
        system.get(reader.remote(np.ones(4)))                       # a worker there, up
        huge = np.arange(HUGE // 8, dtype=np.float64)
        ref = system.put(huge)
        seconds = {}
        for step in STEPS[4:]:
            start = time.perf_counter()
            assert system.get(reader.remote(ref)) == [0.0 + huge[-1]]
            seconds[step] = time.perf_counter() - start
        return seconds
    finally:
        system.shutdown()
        if cluster is not None:
            cluster.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--store-mib", type=int, default=256)
    parser.add_argument("--systems", default="ray,plait")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_system(args.child, args.store_mib)), flush=True)
        return
    systems = args.systems.split(",")
    samples: dict[str, dict[str, list[float]]] = {s: {step: [] for step in STEPS}
                                                  for s in systems}
    print(f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
    for round_ in range(args.rounds):
        for name in systems:
            done = subprocess.run([sys.executable, __file__, "--child", name, "--store-mib",
                                   str(args.store_mib)], capture_output=True, text=True,
                                  timeout=600)
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            if done.returncode or not lines:
                print(f"{name} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
                continue
            for step, value in json.loads(lines[-1]).items():
                samples[name][step].append(value)
            print(f"  round {round_ + 1}: {name} done", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print(f"| {args.store_mib} MiB store | " + " | ".join(systems) +
          (" | plait/ray |" if systems == ["ray", "plait"] else " |"))
    print("|---" * (len(systems) + 1 + (systems == ["ray", "plait"])) + "|")
    for step in STEPS:
        medians = [statistics.median(samples[s][step]) if samples[s][step] else float("nan")
                   for s in systems]
        ratio = f" {medians[1] / medians[0]:.2f}x |" if systems == ["ray", "plait"] else ""
        print(f"| {step} (s) | " + " | ".join(f"{m:.3f}" for m in medians) + " |" + ratio)


if __name__ == "__main__":
    main()
