"""Do two trees of plait compile the same plans? A check for changes meant to be speed only.

    python benchmarks/plan_digest.py --trees /work/main .          # 3,000 random graphs
    python benchmarks/plan_digest.py --graphs 500 --print           # this tree's digests

Each tree compiles the same seeded random graphs in a process of its own (its directory
first on ``PYTHONPATH``) and prints one line per graph: the seed and the plan written out
in full, as plain data, in order (placements, stages, transfers, releases, every field), or
the error's type and message when the compiler refuses the graph. The lines are compared
and the first seed whose plans differ is shown from both trees.

The graphs are small (up to 60 tasks, 1 to 7 nodes) and mix what placement decides on:
inputs small and large on one or several nodes, results read twice or not at all (culled),
several results per task, nested reads, pins (some to unknown nodes), ``num_cpus`` above a
node's workers, GPUs and custom resources offered by some nodes, actors created in the graph
or known to the view, learned durations and result sizes, queued work, small stores, and
non-default cost constants.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys

from plait.compiler import ClusterView, CompileOptions, NodeView, ObjectInfo, PlanError, compile
from plait.graph.graph import Graph, TaskNode

MiB = 1 << 20
FUNCTIONS = ("load", "mapper", "reducer", "train", "fetch")


def random_view(rng: random.Random) -> ClusterView:
    """1 to 7 nodes, some without workers, some offering GPUs or a custom resource."""
    nodes = []
    for k in range(rng.randint(1, 7)):
        resources = tuple(sorted(rng.sample([("GPU", float(rng.randint(1, 2))), ("disk", 1.0)],
                                            rng.randint(0, 2)))) if rng.random() < 0.4 else ()
        nodes.append(NodeView(f"node-{k}", rng.choice((0, 1, 1, 2, 4)),
                              queued=rng.choice((0, 0, 3, 50)),
                              store_capacity=rng.choice((1 << 40,) * 9 + (300 * MiB,)),
                              resources=resources))
    ids = [n.id for n in nodes]
    objects = {}
    for i in range(rng.randint(0, 8)):
        holders = tuple(rng.sample(ids, rng.randint(1, len(ids)))) if rng.random() < 0.9 else ()
        objects[f"in-{i}"] = ObjectInfo(f"in-{i}", rng.choice((100, 50 << 10, 2 * MiB,
                                                               64 * MiB, 400 * MiB)), holders)
    durations = {f: rng.choice((1e-3, 0.05, 2.0)) for f in FUNCTIONS if rng.random() < 0.5}
    sizes = {f: rng.choice((8, 200 << 10, 32 * MiB)) for f in FUNCTIONS if rng.random() < 0.5}
    actors = {"actor-x": rng.choice(ids + ["node-gone"] * (rng.random() < 0.05))
              } if rng.random() < 0.3 else {}
    return ClusterView(tuple(nodes), objects, durations, sizes, actors)


def random_task(rng: random.Random, i: int, made: list[str], view: ClusterView,
                actors: list[str], wild: bool) -> TaskNode:
    """Task ``t{i}`` reading up to four earlier results or inputs, with its options drawn:
    only ones some node can meet unless ``wild`` (then the compiler may refuse the graph)."""
    pool = made + list(view.objects)
    reads = tuple(rng.choice(pool) for _ in range(rng.randint(0, 4))) if pool else ()
    nested = tuple(dict.fromkeys(rng.sample(pool, 1))) if pool and rng.random() < 0.1 else ()
    tid = f"t{i}"
    outputs = (tid,) if rng.random() < 0.85 else tuple(f"{tid}.{k}" for k in range(3))
    working = [n for n in view.nodes if n.workers] or list(view.nodes)
    offered = sorted({amount for n in working for amount in n.resources})
    needs: tuple[tuple[str, float], ...] = ()
    if rng.random() < 0.05:
        wanted = [(("tpu", 1.0),), (("GPU", 1.0), ("disk", 1.0))] if wild else []
        needs = rng.choice(wanted + [((name, amount / 2),) for name, amount in offered] or [()])
    widest = max(max(n.workers, 1) for n in working)
    num_cpus = rng.choice((1, 1, 1, 0.5, 2, 3))
    if not wild:
        num_cpus = min(num_cpus, widest)
    actor = ""
    if rng.random() < 0.05:
        actor = tid                                       # creates an actor (its handle:
                                                          # the first result)
        actors.append(outputs[0])
    elif rng.random() < 0.1 and (actors or view.actors):
        handle = rng.choice(actors + list(view.actors))   # a method call: runs in its actor
        reads += (handle,) if handle in actors else ()    # and reads the creation's handle
        actor = handle.split(".")[0]
    node = None
    if rng.random() < 0.05 and actor in ("", tid):
        fitting = [n.id for n in view.nodes if max(n.workers, 1) >= num_cpus
                   and n.offers(needs) and (n.workers or len(working) == len(view.nodes))]
        node = rng.choice(fitting + ["node-nowhere"] * wild) if fitting or wild else None
    return TaskNode(tid, rng.choice(FUNCTIONS), "f@0", reads, outputs, node=node,
                    nested=nested, actor=actor, num_cpus=num_cpus, needs=needs)


def random_graph(rng: random.Random, view: ClusterView) -> Graph:
    """Up to 60 tasks in topological order; a few of the results are targets. One graph in
    ten may ask for what the cluster cannot give."""
    tasks: dict[str, TaskNode] = {}
    made: list[str] = []
    actors: list[str] = []
    wild = rng.random() < 0.1
    for i in range(rng.randint(1, 60)):
        task = random_task(rng, i, made, view, actors, wild)
        tasks[task.id] = task
        made.extend(task.outputs)
    targets = tuple(dict.fromkeys(rng.sample(made, rng.randint(1, min(4, len(made))))))
    if rng.random() < 0.1 and view.objects:
        targets += (next(iter(view.objects)),)            # an input asked for as it is
    return Graph(tasks, targets)


def random_options(rng: random.Random) -> CompileOptions:
    if rng.random() < 0.7:
        return CompileOptions()
    return CompileOptions(bandwidth=rng.choice((1e8, 2e9)), task_seconds=rng.choice((1e-3, 0.5)),
                          result_bytes_guess=rng.choice((1024, 10 * MiB)),
                          inline_bytes=rng.choice((100 << 10, 0)))


def digest(seed: int) -> str:
    """The plan compiled for graph ``seed``, as one line of plain data (or the error)."""
    rng = random.Random(seed)
    view = random_view(rng)
    graph, options = random_graph(rng, view), random_options(rng)
    try:
        plan = compile(graph, view, options)
    except PlanError as error:
        return f"{seed} refused {error!r} {error.task_id} {error.infeasible}"
    except Exception as error:     # a bug: compared like the rest, so both trees must share it
        return f"{seed} failed {error!r}"
    placements = [tuple(getattr(p, f) for f in p.__slots__) for p in plan.placements.values()]
    return f"{seed} plan " + repr((plan.targets, list(plan.placements), placements,
                 [(s.index, s.node, s.task_ids) for s in plan.stages],
                 [(t.object_id, t.src, t.dst, t.nbytes) for t in plan.transfers],
                 list(plan.releases.items())))


def digests_of(tree: str, graphs: int) -> list[str]:
    """The digests printed by this script run against ``tree``'s plait."""
    env = {**os.environ, "PYTHONPATH": os.path.abspath(tree)}
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--graphs", str(graphs),
                          "--print"], env=env, check=True, capture_output=True, text=True,
                         cwd=os.path.abspath(tree), timeout=600)
    return out.stdout.splitlines()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--graphs", type=int, default=3000)
    parser.add_argument("--trees", nargs=2, metavar=("BEFORE", "AFTER"))
    parser.add_argument("--print", action="store_true", help="print this tree's digests")
    args = parser.parse_args()
    if args.print or not args.trees:
        for seed in range(args.graphs):
            print(digest(seed))
        return
    before, after = (digests_of(tree, args.graphs) for tree in args.trees)
    refused = sum(line.split(" ", 2)[1] == "refused" for line in before)
    failed = sum(line.split(" ", 2)[1] == "failed" for line in before)
    for old, new in zip(before, after, strict=True):
        if old != new:
            sys.exit(f"plans differ:\n{args.trees[0]}: {old}\n{args.trees[1]}: {new}")
    print(f"{len(before)} graphs, identical plans from both trees "
          f"({refused} refused and {failed} failed with the same error)")


if __name__ == "__main__":
    main()
