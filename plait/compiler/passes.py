"""The compiler's passes, each a pure function over plain data.

cull -> place (placement.py) -> cut stages -> plan transfers -> plan releases (then validate).
"""

from __future__ import annotations

from plait.compiler.placement import Choice
from plait.compiler.plan import Stage, Transfer
from plait.compiler.view import ClusterView, CompileOptions
from plait.graph.graph import Graph, TaskNode


def cull(graph: Graph) -> Graph:
    """Drop tasks whose results no target needs.

    One walk from the last task back to the first: a task is needed when a target or a
    needed task reads one of its results, and every reader comes after its producer (the
    graph is in topological order), so each task is decided before its producers are seen.
    """
    needed = [False] * len(graph.tasks)           # by position
    for oid in graph.targets:
        at = graph.made_at.get(oid)
        if at is not None:
            needed[at] = True
    sources = graph.sources
    for position in range(len(needed) - 1, -1, -1):
        if needed[position]:
            for at in sources[position]:
                if at >= 0:
                    needed[at] = True
    if all(needed):
        return graph
    kept = zip(graph.tasks.items(), needed, strict=True)
    return Graph({tid: task for (tid, task), keep in kept if keep}, graph.targets)


def critical_paths(graph: Graph, view: ClusterView, options: CompileOptions) -> list[float]:
    """Seconds from each task's start to the end of the graph along its longest path, by
    position.

    Nodes run ready tasks with the longest remaining path first, so the work that decides
    when the graph ends is never stuck behind work that does not. One walk from the last
    task back to the first: a task's readers all come after it, so its path is known when
    it is reached, and it then lengthens its producers'.
    """
    durations, guess = view.durations, options.task_seconds
    longest = [0.0] * len(graph.tasks)            # so far: the longest path of its readers
    position = len(longest)
    for task, producers in zip(reversed(graph.tasks.values()), reversed(graph.upstream),
                               strict=True):
        position -= 1
        here = longest[position] = durations.get(task.function_name, guess) + longest[position]
        for at in producers:
            if here > longest[at]:
                longest[at] = here
    return longest


def cut_stages(graph: Graph, choices: list[Choice],
               order: tuple[str, ...]) -> tuple[Stage, ...]:
    """One stage per node that has work, tasks in topological order, nodes in view order."""
    per_node: dict[str, list[str]] = {}
    for task_id, choice in zip(graph.tasks, choices, strict=True):
        per_node.setdefault(choice.node, []).append(task_id)
    used = [n for n in order if n in per_node]
    return tuple(Stage(i, node, tuple(per_node[node])) for i, node in enumerate(used))


def plan_transfers(choices: list[Choice], options: CompileOptions) -> tuple[Transfer, ...]:
    """Each stored object a task reads on another node is copied there once."""
    made: dict[tuple[str, str], Transfer] = {}
    for choice in choices:                     # in the graph's order
        for oid, nbytes, nodes in choice.inputs:
            if nbytes <= options.inline_bytes:
                continue                      # small: travels inside messages
            if nodes and choice.node not in nodes and (oid, choice.node) not in made:
                made[(oid, choice.node)] = Transfer(oid, nodes[0], choice.node, nbytes)
    return tuple(made.values())


def fuse_chains(graph: Graph, choices: list[Choice]) -> list[str]:
    """Linear chains on one node run back to back in one worker: the task each task follows
    ("": none), by position.

    A task follows its producer when that producer is the only task of the graph it reads
    from, it is the producer's only reader, and both are placed on the same node. The node
    then sends the whole chain to one worker in one message; results pass from task to task
    inside the worker, with no round trip through the node per hop. (A producer with one
    reader is followed by that reader only: no chain forks.)
    """
    readers = [0] * len(graph.tasks)                  # by position
    for producers in graph.upstream:
        for at in producers:
            readers[at] += 1
    tasks, ids = list(graph.tasks.values()), graph.ids
    follows: list[str] = []
    for task, producers, choice in zip(tasks, graph.upstream, choices, strict=True):
        at = producers[0] if len(producers) == 1 else -1
        fused = (at >= 0 and readers[at] == 1 and choices[at].node == choice.node
                 and _may_fuse(tasks[at], task))
        follows.append(ids[at] if fused else "")
    return follows


def _may_fuse(before: TaskNode, task: TaskNode) -> bool:
    """Whether ``task`` may run right after ``before`` in the same worker (see fuse_chains):
    neither holds a process or resources of its own."""
    if task.actor or before.actor:
        return False                  # actor calls run in their actor's process, not a slot
    return not (task.needs or before.needs)    # it waits for its own resources (GPU, ...)


def plan_releases(graph: Graph) -> dict[str, str]:
    """Intermediate results nobody asked for can go after their last reader finishes."""
    targets = set(graph.targets)
    last: dict[str, str] = {}
    for task, sources in zip(graph.tasks.values(), graph.sources, strict=True):
        for oid, at in zip(task.reads, sources, strict=True):
            if at >= 0 and oid not in targets:
                last[oid] = task.id
    return last
