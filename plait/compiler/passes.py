"""The compiler's passes, each a pure function over plain data.

cull -> place (placement.py) -> cut stages -> plan transfers -> plan releases (then validate).
"""

from __future__ import annotations

from plait.compiler.placement import Choice, unique_inputs
from plait.compiler.plan import Stage, Transfer
from plait.compiler.units import format_bytes
from plait.compiler.view import ClusterView, CompileOptions
from plait.errors import PlanError
from plait.graph.graph import Graph, TaskNode


def cull(graph: Graph) -> Graph:
    """Drop tasks whose results no target needs.

    One walk from the last task back to the first: a task is needed when a target or a
    needed task reads one of its results, and every reader comes after its producer (the
    graph is in topological order), so each task is decided before its producers are seen.
    """
    wanted = set(graph.targets)           # objects a target or a needed task reads
    dropped: set[str] = set()
    for task in reversed(graph.tasks.values()):
        if wanted.isdisjoint(task.outputs):
            dropped.add(task.id)
        else:
            wanted.update(task.reads)
    if not dropped:
        return graph
    return Graph({tid: t for tid, t in graph.tasks.items() if tid not in dropped}, graph.targets)


def check_capacity(graph: Graph, view: ClusterView, choices: dict[str, Choice],
                   options: CompileOptions) -> None:
    """Refuse a task whose inputs and result cannot be in its node's store at once.

    Spilling makes room for everything else, but a running task pins its inputs and the
    block its result is written into: if those alone exceed the store, no amount of
    spilling helps, and it is better said now than mid-run.
    """
    capacity = {n.id: n.store_capacity for n in view.nodes}
    sizes, guess, inline = view.result_sizes, options.result_bytes_guess, options.inline_bytes
    for task, choice in zip(graph.tasks.values(), choices.values(), strict=True):
        inputs = choice.inputs
        if len(inputs) == 1:
            stored = inputs[0][1] if inputs[0][1] > inline else 0
        else:
            stored = sum(nbytes for _, nbytes, _ in unique_inputs(inputs) if nbytes > inline)
        pinned = stored + sizes.get(task.function_name, guess) * len(task.outputs)
        if pinned > capacity[choice.node]:
            raise PlanError(
                f"task {task.id} ({task.function_name}) needs {format_bytes(pinned)} in "
                f"{choice.node}'s store at once (its inputs and result), but the store holds "
                f"{format_bytes(capacity[choice.node])}; start plait with a larger store_memory or "
                f"split the work", task_id=task.id)


def critical_paths(graph: Graph, view: ClusterView, options: CompileOptions) -> list[float]:
    """Seconds from each task's start to the end of the graph along its longest path, in
    the graph's order (walked beside the tasks, not looked up).

    Nodes run ready tasks with the longest remaining path first, so the work that decides
    when the graph ends is never stuck behind work that does not.
    """
    durations, guess = view.durations, options.task_seconds
    longest: dict[str, float] = {}        # task -> the longest path of its readers
    remaining: list[float] = []           # from the last task back to the first
    for (task_id, task), producers in zip(reversed(graph.tasks.items()),
                                          reversed(graph.upstream.values()), strict=True):
        here = durations.get(task.function_name, guess) + longest.get(task_id, 0.0)
        remaining.append(here)
        for producer in producers:
            if here > longest.get(producer, 0.0):
                longest[producer] = here
    remaining.reverse()
    return remaining


def cut_stages(graph: Graph, choices: dict[str, Choice],
               order: tuple[str, ...]) -> tuple[Stage, ...]:
    """One stage per node that has work, tasks in topological order, nodes in view order."""
    per_node: dict[str, list[str]] = {}
    for task_id, choice in choices.items():           # in the graph's order
        per_node.setdefault(choice.node, []).append(task_id)
    used = [n for n in order if n in per_node]
    return tuple(Stage(i, node, tuple(per_node[node])) for i, node in enumerate(used))


def plan_transfers(graph: Graph, choices: dict[str, Choice],
                   options: CompileOptions) -> tuple[Transfer, ...]:
    """Each stored object a task reads on another node is copied there once."""
    made: dict[tuple[str, str], Transfer] = {}
    for choice in choices.values():                     # in the graph's order
        for oid, nbytes, nodes in choice.inputs:
            if nbytes <= options.inline_bytes:
                continue                      # small: travels inside messages
            if nodes and choice.node not in nodes and (oid, choice.node) not in made:
                made[(oid, choice.node)] = Transfer(oid, nodes[0], choice.node, nbytes)
    return tuple(made.values())


def fuse_chains(graph: Graph, choices: dict[str, Choice]) -> list[str]:
    """Linear chains on one node run back to back in one worker: the task each task follows
    ("": none), in the graph's order.

    A task follows its producer when that producer is the only task of the graph it reads
    from, it is the producer's only reader, and both are placed on the same node. The node
    then sends the whole chain to one worker in one message; results pass from task to task
    inside the worker, with no round trip through the node per hop.
    """
    readers: dict[str, int] = {}
    for producers in graph.upstream.values():
        for producer in producers:
            readers[producer] = readers.get(producer, 0) + 1
    follows: list[str] = []
    taken: set[str] = set()
    for task, producers, choice in zip(graph.tasks.values(), graph.upstream.values(),
                                       choices.values(), strict=True):
        follows.append(_followed(task, producers[0], choice, graph, choices, readers, taken)
                       if len(producers) == 1 else "")
    return follows


def _followed(task: TaskNode, producer: str, choice: Choice, graph: Graph,
              choices: dict[str, Choice], readers: dict[str, int], taken: set[str]) -> str:
    """``producer`` if ``task`` (its one producer) runs right after it in the same worker,
    else "" (see fuse_chains)."""
    before = graph.tasks[producer]
    if task.actor or before.actor:
        return ""                     # actor calls run in their actor's process, not a slot
    if task.needs or before.needs:
        return ""                     # it waits for its own resources (GPU, ...) on its node
    if readers[producer] != 1 or producer in taken or choices[producer].node != choice.node:
        return ""
    taken.add(producer)
    return producer


def plan_releases(graph: Graph) -> dict[str, str]:
    """Intermediate results nobody asked for can go after their last reader finishes."""
    targets, producer = set(graph.targets), graph.producer
    last: dict[str, str] = {}
    for task_id, task in graph.tasks.items():
        for oid in task.reads:
            if oid in producer and oid not in targets:
                last[oid] = task_id
    return last
