"""The compiler's passes, each a pure function over plain data.

cull -> place -> cut stages -> plan transfers -> plan releases (then validate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from plait.compiler.plan import Stage, Transfer
from plait.compiler.units import format_bytes
from plait.compiler.view import ClusterView, CompileOptions
from plait.errors import PlanError
from plait.graph.graph import Graph, TaskNode

# Below this many input bytes on one node, locality is not worth piling work onto that
# node: the task goes where the queue is shortest instead.
LOCALITY_MIN_BYTES = 1 << 20


def cull(graph: Graph) -> Graph:
    """Drop tasks whose results no target needs (walking back from the targets)."""
    needed: set[str] = set()
    pending = [graph.producer[oid] for oid in graph.targets if oid in graph.producer]
    while pending:
        task_id = pending.pop()
        if task_id in needed:
            continue
        needed.add(task_id)
        pending.extend(graph.producer[oid] for oid in graph.tasks[task_id].reads
                       if oid in graph.producer)
    if len(needed) == len(graph.tasks):
        return graph
    return Graph({tid: t for tid, t in graph.tasks.items() if tid in needed}, graph.targets)


@dataclass(frozen=True, slots=True)
class Choice:
    """The placement pass's decision for one task."""

    node: str
    reason: str
    inputs: tuple[tuple[str, int, tuple[str, ...]], ...]
    bytes_moved: int


def place(graph: Graph, view: ClusterView, options: CompileOptions) -> dict[str, Choice]:
    """Put each task on the node where it would finish first, by a cost model.

    cost(node) = bytes to copy there / bandwidth + a fixed cost per transfer
               + a relay delay per small input made elsewhere
               + the work already queued there per worker (durations learned per function)

    so a task goes where the bytes of its inputs are unless waiting there costs more than
    moving them, and a fan-out of small tasks spreads over all workers. Load is counted in
    the pass itself; ties go to the earlier node in the view (the head first), which keeps
    the result deterministic.
    """
    order = view.node_ids()
    able = [n.id for n in view.nodes if n.workers > 0] or list(order)
    offered = {n.id: n for n in view.nodes}
    if not order:
        raise PlanError("the cluster has no nodes to run tasks on")
    workers = {n.id: max(n.workers, 1) for n in view.nodes}
    backlog = {n.id: n.queued * options.task_seconds for n in view.nodes}
    located: dict[str, tuple[int, tuple[str, ...]]] = {
        oid: (info.nbytes, info.nodes) for oid, info in view.objects.items()}
    choices: dict[str, Choice] = {}
    for task in graph.tasks.values():
        inputs = tuple((oid, *located.get(oid, (options.result_bytes_guess, ())))
                       for oid in task.reads)
        if task.actor and task.actor != task.id:
            node, reason = _actor_node(task, choices, view), "runs in its actor"
        else:
            fit = [n for n in able if offered[n].offers(task.needs)]
            if not fit:
                raise _unoffered(task, view)
            if task.node in offered and task.node not in fit:
                raise PlanError(f"task {task.id} ({task.function_name}) asks for "
                                f"{_named(task.needs)} but is pinned to {task.node}, which "
                                f"does not offer them", task_id=task.id)
            node, reason = _choose_node(task, inputs, order, fit, backlog, workers, options)
        choices[task.id] = Choice(node, reason, inputs, _moved(inputs, node, options))
        if not task.actor:          # an actor has a process of its own, outside the slots
            seconds = view.durations.get(task.function_name, options.task_seconds)
            backlog[node] += seconds * slots_of(task.num_cpus)
        size = view.result_sizes.get(task.function_name, options.result_bytes_guess)
        for oid in task.outputs:
            located[oid] = (size, (node,))
    return choices


def slots_of(num_cpus: float) -> int:
    """Worker slots a task holds for ``num_cpus`` (one worker is one CPU; at least one).

    >>> slots_of(0.5), slots_of(1), slots_of(2.5)
    (1, 1, 3)
    """
    return max(1, math.ceil(num_cpus))


def _actor_node(task: TaskNode, choices: dict[str, Choice], view: ClusterView) -> str:
    """A method call runs where its actor lives: created in this graph, or known to the view."""
    if task.actor in choices:
        return choices[task.actor].node
    if view.actors.get(task.actor) in view.node_ids():
        return view.actors[task.actor]
    raise PlanError(f"task {task.id} ({task.function_name}) calls actor {task.actor}, which "
                    f"the cluster does not know (created by another session?)", task_id=task.id)


def check_capacity(graph: Graph, view: ClusterView, choices: dict[str, Choice],
                   options: CompileOptions) -> None:
    """Refuse a task whose inputs and result cannot be in its node's store at once.

    Spilling makes room for everything else, but a running task pins its inputs and the
    block its result is written into: if those alone exceed the store, no amount of
    spilling helps, and it is better said now than mid-run.
    """
    capacity = {n.id: n.store_capacity for n in view.nodes}
    for task in graph.tasks.values():
        choice = choices[task.id]
        result = view.result_sizes.get(task.function_name, options.result_bytes_guess)
        pinned = sum(nbytes for _, nbytes, _ in _unique(choice.inputs)
                     if nbytes > options.inline_bytes) + result * len(task.outputs)
        if pinned > capacity[choice.node]:
            raise PlanError(
                f"task {task.id} ({task.function_name}) needs {format_bytes(pinned)} in "
                f"{choice.node}'s store at once (its inputs and result), but the store holds "
                f"{format_bytes(capacity[choice.node])}; start plait with a larger store_memory or "
                f"split the work", task_id=task.id)


def critical_paths(graph: Graph, view: ClusterView, options: CompileOptions) -> dict[str, float]:
    """Seconds from each task's start to the end of the graph along its longest path.

    Nodes run ready tasks with the longest remaining path first, so the work that decides
    when the graph ends is never stuck behind work that does not.
    """
    consumers: dict[str, list[str]] = {}
    for task in graph.tasks.values():
        for oid in task.reads:
            if oid in graph.producer:
                consumers.setdefault(graph.producer[oid], []).append(task.id)
    remaining: dict[str, float] = {}
    for task_id in reversed(graph.tasks):
        own = view.durations.get(graph.tasks[task_id].function_name, options.task_seconds)
        remaining[task_id] = own + max((remaining[c] for c in consumers.get(task_id, ())),
                                       default=0.0)
    return remaining


Inputs = tuple[tuple[str, int, tuple[str, ...]], ...]


def _moved(inputs: Inputs, node: str, options: CompileOptions) -> int:
    """Bytes that must be copied to ``node`` (small objects ride in messages instead)."""
    return sum(nbytes for _, nbytes, nodes in _unique(inputs)
               if nodes and node not in nodes and nbytes > options.inline_bytes)


def _cost(inputs: Inputs, node: str, backlog: dict[str, float], workers: dict[str, int],
          options: CompileOptions) -> float:
    seconds = backlog[node] / workers[node]
    for _, nbytes, nodes in _unique(inputs):
        if not nodes or node in nodes:
            continue
        if nbytes > options.inline_bytes:
            seconds += nbytes / options.bandwidth + options.transfer_seconds
        else:
            seconds += options.relay_seconds
    return seconds


def _choose_node(task: TaskNode, inputs: Inputs, order: tuple[str, ...], able: list[str],
                 backlog: dict[str, float], workers: dict[str, int],
                 options: CompileOptions) -> tuple[str, str]:
    slots = slots_of(task.num_cpus)
    able = [n for n in able if workers[n] >= slots]
    if not able:
        raise PlanError(f"task {task.id} ({task.function_name}) needs num_cpus={task.num_cpus} "
                        f"({slots} worker slots), but the largest node has "
                        f"{max(workers.values())}", task_id=task.id, infeasible=True)
    if task.node is not None:
        if task.node in workers and workers[task.node] < slots:
            raise PlanError(f"task {task.id} ({task.function_name}) needs {slots} worker slots "
                            f"but is pinned to {task.node}, which has {workers[task.node]}",
                            task_id=task.id)
        if task.node not in backlog:
            raise PlanError(f"task {task.id} ({task.function_name}) is pinned to node "
                            f"{task.node!r}, which is not in the cluster ({', '.join(order)})",
                            task_id=task.id)
        return task.node, "pinned by node= option"
    rank = {node: i for i, node in enumerate(order)}
    best = min(able, key=lambda n: (_cost(inputs, n, backlog, workers, options), rank[n]))
    return best, _reason(inputs, best, able, options)


def _unoffered(task: TaskNode, view: ClusterView) -> PlanError:
    """No node has, in all, the resources ``task`` asks for: it could run only on a node
    that joins later (``infeasible``; Ray leaves such a task pending, plait says why)."""
    offered = "; ".join(f"{n.id}: {_named(n.resources) or 'CPUs only'}" for n in view.nodes)
    return PlanError(f"task {task.id} ({task.function_name}) asks for {_named(task.needs)}, "
                     f"which no node offers ({offered}); start plait with them "
                     f"(plait.init(num_gpus=..., resources={{...}})) or ask for less",
                     task_id=task.id, infeasible=True)


def _named(amounts: tuple[tuple[str, float], ...]) -> str:
    """Resources as people read them.

    >>> _named((("GPU", 1.0), ("disk", 0.5), ("memory", 3 << 30)))
    '1 GPU, 0.5 disk, 3.0 GiB memory'
    """
    return ", ".join(f"{format_bytes(int(amount)) if name == 'memory' else f'{amount:g}'} {name}"
                     for name, amount in amounts)


def _reason(inputs: Inputs, chosen: str, able: list[str], options: CompileOptions) -> str:
    local = {node: 0 for node in able}
    for _, nbytes, nodes in _unique(inputs):
        for node in nodes:
            if node in local:
                local[node] += nbytes
    richest = max(able, key=lambda n: local[n])
    if local[chosen] >= LOCALITY_MIN_BYTES:
        return f"{format_bytes(local[chosen])} of its inputs are already there"
    if local[richest] >= LOCALITY_MIN_BYTES:
        return (f"copying {format_bytes(_moved(inputs, chosen, options))} costs less than waiting "
                f"for {richest}, which holds {format_bytes(local[richest])}")
    if local[chosen] > 0:
        return "its inputs were made there"
    return "small inputs: least-loaded node"


def _unique(inputs):
    seen: set[str] = set()
    for item in inputs:
        if item[0] not in seen:
            seen.add(item[0])
            yield item


def cut_stages(graph: Graph, choices: dict[str, Choice],
               order: tuple[str, ...]) -> tuple[Stage, ...]:
    """One stage per node that has work, tasks in topological order, nodes in view order."""
    per_node: dict[str, list[str]] = {}
    for task_id in graph.tasks:
        per_node.setdefault(choices[task_id].node, []).append(task_id)
    used = [n for n in order if n in per_node]
    return tuple(Stage(i, node, tuple(per_node[node])) for i, node in enumerate(used))


def plan_transfers(graph: Graph, choices: dict[str, Choice],
                   options: CompileOptions) -> tuple[Transfer, ...]:
    """Each stored object a task reads on another node is copied there once."""
    made: dict[tuple[str, str], Transfer] = {}
    for task_id in graph.tasks:
        choice = choices[task_id]
        for oid, nbytes, nodes in choice.inputs:
            if nbytes <= options.inline_bytes:
                continue                      # small: travels inside messages
            if nodes and choice.node not in nodes and (oid, choice.node) not in made:
                made[(oid, choice.node)] = Transfer(oid, nodes[0], choice.node, nbytes)
    return tuple(made.values())


def fuse_chains(graph: Graph, choices: dict[str, Choice]) -> dict[str, str]:
    """Linear chains on one node run back to back in one worker: task -> the task it follows.

    A task follows its producer when that producer is the only task of the graph it reads
    from, it is the producer's only reader, and both are placed on the same node. The node
    then sends the whole chain to one worker in one message; results pass from task to task
    inside the worker, with no round trip through the node per hop.
    """
    readers: dict[str, int] = {}
    for task in graph.tasks.values():
        for producer in {graph.producer[oid] for oid in task.reads if oid in graph.producer}:
            readers[producer] = readers.get(producer, 0) + 1
    follows: dict[str, str] = {}
    taken: set[str] = set()
    for task in graph.tasks.values():
        producers = {graph.producer[oid] for oid in task.reads if oid in graph.producer}
        if len(producers) != 1:
            continue
        (producer,) = producers
        if task.actor or graph.tasks[producer].actor:
            continue                  # actor calls run in their actor's process, not a slot
        if task.needs or graph.tasks[producer].needs:
            continue                  # it waits for its own resources (GPU, ...) on its node
        if (readers[producer] == 1 and producer not in taken
                and choices[producer].node == choices[task.id].node):
            follows[task.id] = producer
            taken.add(producer)
    return follows


def plan_releases(graph: Graph) -> dict[str, str]:
    """Intermediate results nobody asked for can go after their last reader finishes."""
    targets = set(graph.targets)
    last: dict[str, str] = {}
    for task in graph.tasks.values():
        for oid in task.reads:
            if oid in graph.producer and oid not in targets:
                last[oid] = task.id
    return last
