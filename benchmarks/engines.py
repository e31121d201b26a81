"""plait on Ray and Dask: locality and cost, beside each engine alone and plait native.

    python benchmarks/engines.py [--systems ray,plait-ray,dask,plait-dask,plait] [--mib 200]
                                 [--workloads w7,w11,w3] [--rounds 9]

Each system runs in a process of its own on 3 nodes of 1 CPU on this machine, all on
loopback (Ray: a ``ray.cluster_utils.Cluster``; Dask: a ``LocalCluster`` of 3 workers;
plait: ``num_nodes=3``), and reports, one JSON line each:

- W7 locality: k = 1 and 2 arrays of ``--mib`` MiB made on each node (pinned), then one
  consumer per array with no hint. Where each consumer really ran (the task says so), the
  fraction kept beside its array, the bytes that had to move, the consumers' time.
- W11 seed: put two 32x32 arrays and a 64 MiB one, ten ``seed(x, y, big)`` tasks without
  hints, one get: time, nodes used, and the big object's copies (64 MiB per other node).
- W3 overhead: 1,000 no-op tasks and one get: tasks/s; plait-on-X beside X alone is the cost
  of planning on top of the engine. X alone and plait-on-X share one cluster of X, in a
  process of their own, and take turns round by round (``--rounds``; who goes first swaps
  each round), so that a busy spell of this shared machine, or the order they run in, falls
  on both: run one after the other, each in its own cluster, the ratio swung from 0.81 to
  1.01 with the order alone (RESULTS.md, stop 38). The ratio is the median of the rounds'
  ratios. plait native's W3 runs in its own process, with its W7 and W11; either of X and
  plait-on-X in ``--systems`` brings W3 of both.

Timing figures are noisy on a shared 2-core machine: say so when quoting them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

MiB = 1 << 20
SYSTEMS = ("ray", "plait-ray", "dask", "plait-dask", "plait")
NOOPS = 1000


def make(mib):
    return np.ones(mib * MiB, dtype=np.uint8)


def consume(array):
    return int(array[:10].sum()), here()


def seed(x, y, big):
    return int(np.matmul(x, y).sum()) + int(big[0]), here()


def noop():
    return None


def here():
    """The engine's id of the node running the caller (every system's own name)."""
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    if "distributed" in sys.modules:
        import distributed

        try:
            return distributed.get_worker().address
        except ValueError:
            pass
    import plait

    return plait.get_runtime_context().node_id


# -- each system as the workloads use it: pin(f, node), submit(f, *args), get, put --------

def ray_cluster():
    """3 Ray nodes of 1 CPU and a 1 GiB store each, on loopback."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "object_store_memory": 1 << 30})
    for _ in range(2):
        cluster.add_node(num_cpus=1, object_store_memory=1 << 30)
    cluster.wait_for_nodes()
    return cluster


class RayAlone:
    def __init__(self):
        import ray

        self.cluster = ray_cluster()
        ray.init(address=self.cluster.address)
        self.ray = ray
        self.remote = {}

    def nodes(self):
        alive = [n for n in self.ray.nodes() if n["Alive"]]
        alive.sort(key=lambda n: ("node:__internal_head__" not in n["Resources"], n["NodeID"]))
        return [n["NodeID"] for n in alive]

    def fn(self, f):
        if f not in self.remote:
            self.remote[f] = self.ray.remote(f)
        return self.remote[f]

    def pinned(self, f, node, *args):
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        return self.fn(f).options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            node, soft=False)).remote(*args)

    def submit(self, f, *args):
        return self.fn(f).remote(*args)

    def get(self, refs):
        return self.ray.get(refs)

    def put(self, value):
        return self.ray.put(value)

    def put_node(self, ref):
        return self.ray.get_runtime_context().get_node_id()

    def close(self):
        self.ray.shutdown()
        self.cluster.shutdown()


class DaskAlone:
    def __init__(self):
        import distributed

        self.cluster = distributed.LocalCluster(n_workers=3, threads_per_worker=1,
                                                host="127.0.0.1", dashboard_address=None)
        self.client = distributed.Client(self.cluster)

    def nodes(self):
        return sorted(self.client.scheduler_info(n_workers=-1)["workers"])

    def pinned(self, f, node, *args):
        return self.client.submit(f, *args, workers=[node], allow_other_workers=False,
                                  pure=False)

    def submit(self, f, *args):
        return self.client.submit(f, *args, pure=False)

    def get(self, futures):
        return self.client.gather(futures)

    def put(self, value):
        return self.client.scatter(value, hash=False)

    def put_node(self, future):
        return self.client.who_has([future])[future.key][0]

    def close(self):
        self.client.close()
        self.cluster.close()


class Plait:
    """plait native, or plait on an engine: on a cluster of its own, or on ``alone``'s
    (a RayAlone or DaskAlone of this process, which then keeps and closes it)."""

    def __init__(self, engine, alone=None):
        import plait

        self.plait = plait
        self.engine = engine
        self.cluster = None
        if engine == "ray":
            if alone is None:
                self.cluster = ray_cluster()
            plait.init(engine="ray", address=(alone or self).cluster.address)
        elif engine == "dask":
            plait.init(engine="dask", **({"address": alone.client} if alone else
                                         {"num_nodes": 3}))
        else:
            plait.init(num_nodes=3, num_workers=1, store_memory=2 << 30)
        self.remote = {}
        names = [n.id for n in plait.nodes()]
        self.ids = dict(zip(names, plait.get([self.fn(here).options(node=name).remote()
                                              for name in names]), strict=True))

    def nodes(self):
        return list(self.ids)

    def fn(self, f):
        if f not in self.remote:
            self.remote[f] = self.plait.remote(f)
        return self.remote[f]

    def pinned(self, f, node, *args):
        return self.fn(f).options(node=node).remote(*args)

    def submit(self, f, *args):
        return self.fn(f).remote(*args)

    def get(self, refs):
        return self.plait.get(refs)

    def put(self, value):
        return self.plait.put(value)

    def put_node(self, ref):
        session = self.plait.api.session()
        return self.ids[session.holders[ref.id][0]] if hasattr(session, "holders") else \
            self.ids["node-0"]

    def close(self):
        self.plait.shutdown()
        if self.cluster is not None:
            import ray

            ray.shutdown()
            self.cluster.shutdown()


def w7(system, mib):
    rows = []
    nodes = system.nodes()
    for per_node in (1, 2):
        arrays = [(node, system.pinned(make, node, mib)) for node in nodes
                  for _ in range(per_node)]
        _wait(system, [ref for _, ref in arrays])
        start = time.perf_counter()
        out = system.get([system.submit(consume, ref) for _, ref in arrays])
        seconds = time.perf_counter() - start
        node_of = {n: n for n in nodes} if not isinstance(system, Plait) else \
            {name: system.ids[name] for name in nodes}
        local = sum(node_of[made] == ran for (made, _), (_, ran) in zip(arrays, out,
                                                                         strict=True))
        rows.append({"workload": f"W7 {per_node}/node", "local": local / len(arrays),
                     "moved_mib": (len(arrays) - local) * mib, "seconds": seconds})
        del arrays, out
    return rows


def _wait(system, refs):
    """Every array made before the consumers are submitted (they are not timed)."""
    system.get([system.submit(noop)])
    if isinstance(system, Plait):
        system.plait.wait(refs, num_returns=len(refs))
    elif isinstance(system, RayAlone):
        system.ray.wait(refs, num_returns=len(refs))
    else:
        import distributed

        distributed.wait(refs)


def w11(system, rounds=3):
    np.random.seed(0)
    a, b = np.random.rand(32, 32), np.random.rand(32, 32)
    big = np.ones(64 * MiB // 8)
    times, used, moved = [], [], []
    for i in range(rounds + 1):
        start = time.perf_counter()
        x, y, z = system.put(a), system.put(b), system.put(big)
        out = system.get([system.submit(seed, x, y, z) for _ in range(10)])
        seconds = time.perf_counter() - start
        ran = {node for _, node in out}
        if i:
            times.append(seconds)
            used.append(len(ran))
            moved.append(len(ran - {system.put_node(z)}) * 64)
        del x, y, z
    return [{"workload": "W11 seed", "seconds": float(np.median(times)),
             "nodes_used": max(used), "moved_mib": max(moved)}]


def w3_once(system):
    """One W3 round: its tasks/s."""
    start = time.perf_counter()
    system.get([system.submit(noop) for _ in range(NOOPS)])
    return NOOPS / (time.perf_counter() - start)


def w3(system, rounds=3):
    w3_once(system)                                    # warm: workers started, imports
    rates = [w3_once(system) for _ in range(rounds)]
    return [{"workload": W3, "tasks_per_s": float(np.median(rates))}]


def w3_side_by_side(engine, rounds):
    """W3 on ``engine`` alone and plait-on-``engine``, on one cluster, taking turns (who
    goes first swaps each round): rows for both, plait's with the median of its ratios."""
    alone = RayAlone() if engine == "ray" else DaskAlone()
    try:
        on = Plait(engine, alone)
        try:
            systems = {engine: alone, f"plait-{engine}": on}
            for system in systems.values():
                w3_once(system)                        # warm
            rates = {name: [] for name in systems}
            for i in range(rounds):
                for name in list(systems)[::1 if i % 2 == 0 else -1]:
                    rates[name].append(w3_once(systems[name]))
        finally:
            on.close()
    finally:
        alone.close()
    ratios = [mine / theirs for mine, theirs in zip(rates[f"plait-{engine}"], rates[engine],
                                                     strict=True)]
    rows = [{"system": name, "workload": W3, "tasks_per_s": float(np.median(r))}
            for name, r in rates.items()]
    rows[1].update(ratio=float(np.median(ratios)), ratios=[round(r, 3) for r in ratios])
    return rows


W3 = f"W3 {NOOPS} no-ops"
WORKLOADS = {"w7": lambda system, mib: w7(system, mib), "w11": lambda system, mib: w11(system),
             "w3": lambda system, mib: w3(system)}


def run_one(name, mib, workloads):
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    if name == "ray":
        system = RayAlone()
    elif name == "dask":
        system = DaskAlone()
    else:
        system = Plait(name.partition("-")[2] or "native")
    try:
        rows = [row for workload in workloads for row in WORKLOADS[workload](system, mib)]
    finally:
        system.close()
    for row in rows:
        print(json.dumps({"system": name, **row}), flush=True)


def run_side_by_side(engine, rounds):
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    for row in w3_side_by_side(engine, rounds):
        print(json.dumps(row), flush=True)


def table(results):
    lines = ["| workload | system | local | moved (MiB) | time (s) | nodes used | tasks/s "
             "| of the engine's |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: (r["workload"], SYSTEMS.index(r["system"]))):
        lines.append("| {} | {} | {} | {} | {} | {} | {} | {} |".format(
            r["workload"], r["system"],
            f"{r['local']:.0%}" if "local" in r else "",
            r.get("moved_mib", ""), f"{r['seconds']:.3f}" if "seconds" in r else "",
            r.get("nodes_used", ""), f"{r['tasks_per_s']:.0f}" if "tasks_per_s" in r else "",
            f"{r['ratio']:.2f} ({', '.join(f'{x:.2f}' for x in r['ratios'])})"
            if "ratio" in r else ""))
    return "\n".join(lines)


def in_child(args, timeout=900):
    """Run this script with ``args`` in a process of its own: the rows it printed."""
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          timeout=timeout)
    found = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not found:
        print(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help="which to run, in order (a system repeated in --systems runs again)")
    parser.add_argument("--rounds", type=int, default=9,
                        help="W3 rounds of an engine alone and plait on it, in turn")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--side-by-side", help=argparse.SUPPRESS)
    args = parser.parse_args()
    workloads = args.workloads.split(",")
    if args.one:
        run_one(args.one, args.mib, workloads)
        return
    if args.side_by_side:
        run_side_by_side(args.side_by_side, args.rounds)
        return
    systems = args.systems.split(",")
    results = []
    for name in systems:
        # W3 on an engine runs side by side below; plait native's runs here
        mine = [w for w in workloads if w != "w3" or name == "plait"]
        if mine:
            results += in_child(["--one", name, "--mib", str(args.mib),
                                 "--workloads", ",".join(mine)])
    if "w3" in workloads:
        for engine in ("ray", "dask"):
            if engine in systems or f"plait-{engine}" in systems:
                results += in_child(["--side-by-side", engine, "--rounds", str(args.rounds)])
    print(table(results))


if __name__ == "__main__":
    main()
