"""How far one head goes (issue 15): compile time by graph size, and (``sim``) the real
head driven by many simulated nodes.

    python benchmarks/scale.py compile                       # 10k, 100k, 1M tasks, 3 nodes
    python benchmarks/scale.py compile --tasks 100000 --nodes 3 100 1000
    python benchmarks/scale.py sim --nodes 20                # the envelope at 20 nodes
    python benchmarks/scale.py sim --nodes 10 100 1000 --json out.json

``compile`` times ``plait.compiler.compile`` alone on W12's shape (N/2 map tasks, map i
reading input i % K held on node i % K, and N/2 reduce tasks in a chain over the maps) for
a K-node view: plain data in, a Plan out, no process. It prints wall and CPU seconds
(CPU: this process only, less noisy on a shared machine) and the ratio to the first size.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import subprocess
import sys
import time

import zmq

import plait
from plait.compiler import ClusterView, NodeView, ObjectInfo, compile
from plait.graph.graph import Graph, TaskNode
from plait.store.serialization import INLINE_THRESHOLD

INPUT_BYTES = 64 << 20


def map_reduce(n_tasks: int, n_nodes: int, input_bytes: int = INPUT_BYTES,
               workers: int = 1) -> tuple[Graph, ClusterView]:
    """W12's graph over ``n_nodes`` nodes, each holding one of the inputs the maps read:
    ``n_tasks // 2`` maps, map i reading input ``i % n_nodes``, then ``n_tasks // 2``
    reduces in a chain, reduce i reading reduce i-1 and map i; the last reduce is the
    target. Built from ``TaskNode`` records, as the compiler sees graphs in production."""
    nodes = tuple(NodeView(f"node-{k}", workers) for k in range(n_nodes))
    inputs = {f"in-{k}": ObjectInfo(f"in-{k}", input_bytes, (f"node-{k}",))
              for k in range(n_nodes)}
    tasks, half, acc = {}, n_tasks // 2, None
    for i in range(half):
        tid = f"map-{i}"
        tasks[tid] = TaskNode(tid, "mapper", "mapper@0", (f"in-{i % n_nodes}",), (tid,))
    for i in range(half):
        tid = f"reduce-{i}"
        deps = (f"map-{i}",) if acc is None else (acc, f"map-{i}")
        tasks[tid] = TaskNode(tid, "reducer", "reducer@0", deps, (tid,))
        acc = tid
    return Graph(tasks, (acc,)), ClusterView(nodes, inputs)


def time_compile(n_tasks: int, n_nodes: int) -> tuple[float, float]:
    """Wall and CPU seconds of one compile (the graph is built beforehand, not timed)."""
    graph, view = map_reduce(n_tasks, n_nodes)
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    plan = compile(graph, view)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert len(plan.placements) == n_tasks
    return wall, cpu


def run_compile(args: argparse.Namespace) -> None:
    print("| tasks | nodes | wall s | CPU s | CPU / first | load avg (1 min) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for nodes in args.nodes:
        first = None
        for n in args.tasks:
            best = min((time_compile(n, nodes) for _ in range(args.repeat)),
                       key=lambda t: t[1])
            first = first or best[1]
            load = open("/proc/loadavg").read().split()[0]
            print(f"| {n:,} | {nodes} | {best[0]:.2f} | {best[1]:.2f} | "
                  f"{best[1] / first:.1f}x | {load} |", flush=True)


# -- the simulator ---------------------------------------------------------------------------

NODES_PER_PROCESS = 250        # simulated nodes per process (each its own DEALER socket)
HERE = os.path.dirname(os.path.abspath(__file__))


@plait.remote
def noop(*args):
    """Never runs: simulated nodes complete it without unpickling it."""


def rss(pid: int) -> int:
    """Resident bytes of a process (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class SimCluster:
    """The real head (node-0, no workers, started as ``plait.init`` starts it) and
    ``n_nodes`` simulated nodes (node-1..node-N) in processes of up to NODES_PER_PROCESS;
    ``alone``: nodes that get a process of their own (to be killed one at a time)."""

    def __init__(self, n_nodes: int, workers: int = 4, sizes: list[int] | None = None,
                 alone: tuple[str, ...] = ()) -> None:
        from plait.executor.driver.connection import LocalCluster

        self.n_nodes = n_nodes
        self.sizes = sizes or [8]
        session = f"sim{os.getpid():x}"
        self.cluster = LocalCluster.start(session, 1, 0, 256 << 20, None)
        self.head_pid = self.cluster.processes[0].pid
        self.ctx = zmq.Context()
        self.control = self.ctx.socket(zmq.ROUTER)
        self.control.setsockopt(zmq.LINGER, 0)
        address = f"ipc://{self.cluster.run_dir}/sim-control.sock"
        self.control.bind(address)
        names = [f"node-{i}" for i in range(1, n_nodes + 1)]
        groups = [[n] for n in names if n in alone]
        rest = [n for n in names if n not in alone]
        groups += [rest[i:i + NODES_PER_PROCESS] for i in range(0, len(rest), NODES_PER_PROCESS)]
        self.processes: dict[str, subprocess.Popen] = {}
        self.identities: dict[str, bytes] = {}
        self.group_of = {node: f"sim-{k}" for k, group in enumerate(groups) for node in group}
        self.head_rss0 = 0
        self.started = time.perf_counter()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        for k, group in enumerate(groups):
            config = {"name": f"sim-{k}", "nodes": group, "head": self.cluster.client_address,
                      "control": address, "workers": workers, "sizes": sizes or [8]}
            self.processes[f"sim-{k}"] = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "simnode.py"), json.dumps(config)], env=env)
        while len(self.identities) < len(groups):
            identity, body = self.recv()
            self.identities[json.loads(body)["hello"]] = identity
        from plait.executor.driver.session import Session
        from plait.graph import context

        self.session = Session(self.cluster, n_nodes + 1, submit_after_idle=None)
        self.joined = time.perf_counter() - self.started
        plait.api._session = self.session
        context.install(self.session)

    def recv(self, timeout: float = 60.0) -> tuple[bytes, bytes]:
        if not self.control.poll(int(timeout * 1000)):
            raise TimeoutError("a simulator process did not answer")
        identity, body = self.control.recv_multipart()
        return identity, body

    def command(self, **command) -> list[dict]:
        """Send a command to every live simulator process; their answers (stats)."""
        live = [name for name, proc in self.processes.items() if proc.poll() is None]
        for name in live:
            self.control.send_multipart([self.identities[name], json.dumps(command).encode()])
        return [json.loads(self.recv()[1]) for _ in live]

    def held(self) -> int:
        return sum(answer["held"] for answer in self.command(cmd="stats"))

    def wait_held(self, count: int, timeout: float = 600.0) -> None:
        """Until the simulated nodes hold ``count`` tasks between them (polls: a benchmark)."""
        deadline = time.monotonic() + timeout
        while self.held() < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the nodes hold {self.held()} of {count} tasks")
            time.sleep(0.05)

    def kill(self, node: str) -> float:
        """Kill the process of a node that has one of its own; when it died."""
        process = self.processes[self.group_of[node]]
        process.kill()
        process.wait()
        return time.perf_counter()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.command(cmd="stop")
        plait.shutdown()
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.control.close(0)
        self.ctx.term()


def first_dispatch(sim: SimCluster, n: int) -> dict:
    """An n-task graph (independent calls): get -> the first Assign at a node, and the get."""
    sim.command(cmd="reset")
    refs = [noop.remote(i) for i in range(n)]
    wall = time.time()
    t0 = time.perf_counter()
    plait.wait(refs[-1:], timeout=3600)   # compiles and submits all n; the last is done
    plait.wait(refs, num_returns=n, timeout=3600)
    done = time.perf_counter() - t0
    first = min(a["first_assign"] for a in sim.command(cmd="stats") if a["first_assign"])
    del refs
    return {"tasks": n, "first_dispatch_s": first - wall, "all_done_s": done,
            "tasks_per_s": n / done}


def throughput(sim: SimCluster, n: int, batch: int = 10_000) -> dict:
    """n independent tasks in batches of ``batch`` (submit, wait): tasks/s end to end."""
    cpu0, t0 = cpu_seconds(sim.head_pid), time.perf_counter()
    for start in range(0, n, batch):
        refs = [noop.remote(i) for i in range(start, min(n, start + batch))]
        plait.wait(refs, num_returns=len(refs), timeout=3600)
    elapsed = time.perf_counter() - t0
    head_cpu = cpu_seconds(sim.head_pid) - cpu0
    return {"tasks": n, "seconds": elapsed, "tasks_per_s": n / elapsed,
            "head_cpu_us_per_task": head_cpu / n * 1e6}


def one_get(sim: SimCluster, n: int) -> dict:
    """n finished tasks' results (inline: simulated stores hold no bytes to read), then one
    ``get`` of all n refs."""
    sim.command(cmd="set", sizes=[8])
    refs = [noop.remote(i) for i in range(n)]
    plait.wait(refs, num_returns=n, timeout=3600)
    t0 = time.perf_counter()
    values = plait.get(refs, timeout=3600)
    elapsed = time.perf_counter() - t0
    sim.command(cmd="set", sizes=sim.sizes)
    assert len(values) == n
    return {"objects": n, "get_s": elapsed}


def cancel_pending(sim: SimCluster, n: int) -> dict:
    """n tasks held in flight by every node, then ``plait.cancel`` of all (without force,
    Ray's default: each node answers with the task's result): time until every ref is ready
    (failed with TaskCancelledError); head memory per pending task."""
    nodes = [f"node-{i}" for i in range(1, sim.n_nodes + 1)]
    sim.command(cmd="set", hold=nodes)
    before = rss(sim.head_pid)
    refs = [noop.remote(i) for i in range(n)]
    plait.wait(refs, num_returns=1, timeout=0.001)          # submits them
    sim.wait_held(n)
    pending = rss(sim.head_pid) - before
    t0 = time.perf_counter()
    plait.cancel(refs)
    ready, _ = plait.wait(refs, num_returns=n, timeout=3600)
    elapsed = time.perf_counter() - t0
    sim.command(cmd="set", hold=[])
    assert len(ready) == n
    return {"tasks": n, "cancel_s": elapsed, "head_bytes_per_pending_task": pending / n}


def node_loss(sim: SimCluster, n: int, victim: str) -> dict:
    """n tasks pinned to ``victim``, which holds them in flight; its process is killed:
    time until all n are done elsewhere (the head retries them on the least-loaded)."""
    sim.command(cmd="set", hold=[victim])
    refs = [noop.options(node=victim, max_retries=1).remote(i) for i in range(n)]
    plait.wait(refs, num_returns=1, timeout=0.001)
    sim.wait_held(n)
    sim.command(cmd="set", hold=[])
    t0 = sim.kill(victim)
    ready, _ = plait.wait(refs, num_returns=n, timeout=3600)
    elapsed = time.perf_counter() - t0
    assert len(ready) == n
    if max(sim.sizes) < INLINE_THRESHOLD:
        plait.get(refs[:100], timeout=60)            # they ran again elsewhere, not failed
    return {"tasks": n, "retry_all_s": elapsed}


def run_scenarios(sim: SimCluster, args: argparse.Namespace, victim: str) -> dict:
    """Each scenario in turn; one that fails is recorded as such and the others still run.
    Each result is printed to stderr as it comes (a long run shows its progress)."""
    scenarios = [
        ("cancel", cancel_pending, args.cancel),        # first: a fresh head's memory
        ("throughput", throughput, args.tasks),
        ("first_dispatch", first_dispatch, args.graphs),
        ("one_get", one_get, args.gets),
        ("node_loss", node_loss, args.loss)]
    results: dict = {}
    for name, scenario, sizes in scenarios:
        try:
            if name == "node_loss":
                results[name] = node_loss(sim, sizes, victim)
            elif isinstance(sizes, list):
                results[name] = [scenario(sim, n) for n in sizes]
            else:
                results[name] = scenario(sim, sizes)
        except Exception as error:
            results[name] = {"error": f"{type(error).__name__}: {error}"[:500]}
        print(json.dumps({name: results[name]}), file=sys.stderr, flush=True)
    return results


def run_sim(args: argparse.Namespace) -> None:
    results = []
    for n_nodes in args.nodes:
        victim = f"node-{n_nodes}"
        rss_before = 0
        sim = SimCluster(n_nodes, sizes=args.sizes, alone=(victim,))
        try:
            row: dict = {"nodes": n_nodes, "join_s": sim.joined,
                         "load_avg": open("/proc/loadavg").read().split()[0]}
            rss_before = rss(sim.head_pid)
            row["head_rss_mb"] = rss_before / 1e6
            row.update(run_scenarios(sim, args, victim))
            stats = sim.command(cmd="stats")
            row["heartbeat_max_wait_s"] = max(a["beat_max"] for a in stats)
            row["simulator_longest_turn_s"] = max(a["turn_max"] for a in stats)
            row["live_nodes_declared_dead"] = sum(a["declared_dead"] for a in stats)
            row["nodes_alive_at_end"] = len(plait.nodes()) - 1
            row["state_problems"] = plait.util.validate_state()
        finally:
            sim.close()
        print(json.dumps(row), flush=True)
        results.append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compile", help="time the compiler alone")
    c.add_argument("--tasks", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    c.add_argument("--nodes", type=int, nargs="+", default=[3])
    c.add_argument("--repeat", type=int, default=1, help="best of this many (CPU time)")
    m = sub.add_parser("sim", help="the real head and simulated nodes")
    m.add_argument("--nodes", type=int, nargs="+", default=[10, 100, 1000])
    m.add_argument("--tasks", type=int, default=50_000, help="for tasks/s")
    m.add_argument("--graphs", type=int, nargs="+", default=[10_000, 100_000],
                   help="graph sizes for get -> first dispatch")
    m.add_argument("--gets", type=int, nargs="+", default=[10_000, 100_000])
    m.add_argument("--cancel", type=int, default=100_000)
    m.add_argument("--loss", type=int, default=100_000)
    m.add_argument("--sizes", type=int, nargs="+", default=[8],
                   help="result sizes in bytes, drawn in turn")
    m.add_argument("--json", help="write the rows here too")
    args = parser.parse_args()
    {"compile": run_compile, "sim": run_sim}[args.command](args)


if __name__ == "__main__":
    main()
