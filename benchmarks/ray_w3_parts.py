"""W3 on Ray taken apart: what each part of a plait task costs Ray, beside plait-on-Ray.

    python benchmarks/ray_w3_parts.py [--rounds 9] [--variants ray,pin,arg,two,arg+two,plait]

One Ray cluster (3 nodes of 1 CPU, loopback) serves every variant; a round runs 1,000
no-op tasks and one get of each variant in turn, so load from other processes on this
shared machine falls on all of them alike. Variants:

- ``ray``: Ray alone, as benchmarks/engines.py W3 runs it (no pin).
- ``pin``: pinned round-robin to the 3 nodes, ``NodeAffinitySchedulingStrategy(soft=False)``.
- ``arg``: pinned, with one bytes argument (plait's task spec is one).
- ``two``: pinned, ``num_returns=2`` (plait's task report is the second return).
- ``arg+two``: both: the shape of a plait task on Ray, without plait's Python.
- ``free-arg``, ``free-two``, ``free-arg+two``: as those, unpinned (Ray places them as it
  would alone, as plait-on-Ray leaves tasks that read nothing and nothing reads).
- ``plait``: plait-on-Ray on the same cluster.

Printed per variant: median tasks/s, its ratio to the first variant, and the median CPU
time per task of every process of the cluster (psutil), which varies less than wall time
when the machine is shared: in all, then the driver's, the workers' and the rest's
(raylets, GCS).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

NOOPS = 1000
SPEC = b"s" * 640                  # about the size of a no-op's spec, function included


def noop():
    return None


def noop_arg(spec):
    return None


def noop_two():
    return None, b"r" * 200


def noop_arg_two(spec):
    return None, b"r" * 200


def variants(ray, plait):
    """Each variant as a function that runs W3 once."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])

    def pinned(function, **options):
        remote = ray.remote(function)
        return [remote.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            node, soft=False), **options) for node in nodes]

    def run(runners, *args, two=False):
        refs = [runners[i % len(runners)].remote(*args) for i in range(NOOPS)]
        ray.get([r[0] for r in refs] if two else refs)

    def free(function, **options):
        return [ray.remote(function).options(**options)]

    alone, pin, arg = ray.remote(noop), pinned(noop), pinned(noop_arg)
    two, both = pinned(noop_two, num_returns=2), pinned(noop_arg_two, num_returns=2)
    free_arg, free_two = free(noop_arg), free(noop_two, num_returns=2)
    free_both = free(noop_arg_two, num_returns=2)
    on_plait = plait.remote(noop)
    return {"ray": lambda: ray.get([alone.remote() for _ in range(NOOPS)]),
            "pin": lambda: run(pin), "arg": lambda: run(arg, SPEC),
            "two": lambda: run(two, two=True), "arg+two": lambda: run(both, SPEC, two=True),
            "free-arg": lambda: run(free_arg, SPEC), "free-two": lambda: run(free_two, two=True),
            "free-arg+two": lambda: run(free_both, SPEC, two=True),
            "plait": lambda: plait.get([on_plait.remote() for _ in range(NOOPS)])}


def cpu_seconds(process):
    """CPU seconds of ``process`` and of its descendants, by kind: "driver" (``process``,
    all its threads: Ray's core worker runs in the driver's process too), "workers" (Ray's
    worker processes) and "rest" (raylets, GCS, Ray's agents). Those that exit meanwhile
    are lost."""
    import psutil

    kinds = {"driver": 0.0, "workers": 0.0, "rest": 0.0}
    for p in [process, *process.children(recursive=True)]:
        try:
            times = p.cpu_times()
            command = " ".join(p.cmdline())       # a worker names itself ray::<its task>
            kind = "driver" if p is process else "workers" if command.startswith("ray::") \
                or "default_worker.py" in command else "rest"
        except psutil.Error:
            continue
        kinds[kind] += times.user + times.system
    return kinds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--variants", default="ray,pin,arg,two,arg+two,plait")
    args = parser.parse_args()
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import psutil
    import ray
    from ray.cluster_utils import Cluster

    import plait

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "object_store_memory": 1 << 30})
    for _ in range(2):
        cluster.add_node(num_cpus=1, object_store_memory=1 << 30)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    plait.init(engine="ray", address=cluster.address)
    try:
        chosen = args.variants.split(",")
        every = variants(ray, plait)
        for name in chosen:
            every[name]()                                        # warm
        rates = {name: [] for name in chosen}
        cpus = {name: [] for name in chosen}
        me = psutil.Process()
        for _ in range(args.rounds):
            for name in chosen:
                cpu, start = cpu_seconds(me), time.perf_counter()
                every[name]()
                rates[name].append(NOOPS / (time.perf_counter() - start))
                after = cpu_seconds(me)
                cpus[name].append({kind: (after[kind] - cpu[kind]) * 1000 / NOOPS
                                   for kind in after})
        first = statistics.median(rates[chosen[0]])
        print(f"load average {os.getloadavg()[0]:.1f} (shared machine), {args.rounds} rounds")
        print("| variant | tasks/s | ratio | CPU ms per task | driver | workers | rest |\n"
              "|---|---|---|---|---|---|---|")
        for name in chosen:
            rate = statistics.median(rates[name])
            kinds = {kind: statistics.median(c[kind] for c in cpus[name])
                     for kind in ("driver", "workers", "rest")}
            total = statistics.median(sum(c.values()) for c in cpus[name])
            print(f"| {name} | {rate:,.0f} | {rate / first:.2f} | {total:.2f} | "
                  + " | ".join(f"{kinds[kind]:.3f}" for kind in kinds) + " |")
    finally:
        plait.shutdown()
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
