"""Graph: the plain-data picture of what the requested refs need, handed to the compiler.

``collect(refs)`` walks back from the refs through tasks not yet submitted and returns a
``Graph`` of ``TaskNode`` records (ids and names only: no functions, no payloads) in
topological order, plus the live ``Task`` objects by id for the executor. Objects the graph
reads but does not produce (puts, results of earlier runs) are its *inputs*; the compiler
finds where they live in the cluster view.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from plait.graph.refs import ObjectRef
from plait.graph.task import Task

if TYPE_CHECKING:
    import networkx


@dataclass(frozen=True, slots=True)
class TaskNode:
    """One task as the compiler sees it."""

    id: str
    function_name: str
    function_id: str
    deps: tuple[str, ...]
    outputs: tuple[str, ...]
    node: str | None = None
    max_retries: int = 3
    nested: tuple[str, ...] = ()
    actor: str = ""                  # the actor it runs on (its creation has id == actor)
    num_cpus: float = 1              # worker slots it holds while it runs (rounded up)
    needs: tuple[tuple[str, float], ...] = ()   # other resources it holds: GPU, memory, custom
    soft: bool = False               # its pin may go: elsewhere if ``node`` cannot run it

    @property
    def reads(self) -> tuple[str, ...]:
        """Every object the task waits for: its arguments' refs, top-level then nested."""
        return self.deps + self.nested if self.nested else self.deps


@dataclass(frozen=True)
class Graph:
    """Tasks in topological order and the object ids the user asked for.

    A task's *position* is its index in ``tasks``' order. The compiler's passes refer to
    tasks by position rather than by id (``sources``, ``upstream``): at a million tasks every
    look-up in a dict of a million ids is a few cache misses, and a list is indexed without
    any (``benchmarks/scale.py compile``).
    """

    tasks: dict[str, TaskNode]
    targets: tuple[str, ...]
    made_at: dict[str, int] = field(init=False, repr=False, compare=False)  # object -> position

    def __post_init__(self) -> None:
        made_at = {oid: i for i, t in enumerate(self.tasks.values()) for oid in t.outputs}
        object.__setattr__(self, "made_at", made_at)

    @cached_property
    def ids(self) -> list[str]:
        """Task ids by position."""
        return list(self.tasks)

    def inputs(self) -> list[str]:
        """Objects read by the graph but produced outside it, in first-use order."""
        seen: dict[str, None] = {}
        for task in self.tasks.values():
            for oid in task.reads:
                if oid not in self.made_at:
                    seen.setdefault(oid)
        for oid in self.targets:
            if oid not in self.made_at:
                seen.setdefault(oid)
        return list(seen)

    @cached_property
    def sources(self) -> list[tuple[int, ...]]:
        """Per task by position: for each object it reads (in ``reads`` order), the position
        of the task that makes it, or -1 when it is made outside the graph.

        The one look-up of every read by object id: the passes after it (cull, placement,
        priorities, fusing, releases, validate) walk these positions beside ``reads``.
        """
        made_at = self.made_at
        return [_sources(task.reads, made_at) for task in self.tasks.values()]

    @cached_property
    def upstream(self) -> list[tuple[int, ...]]:
        """Per task by position: the positions of the tasks whose results it reads, each
        once, in the order it reads them."""
        return [_upstream(sources) for sources in self.sources]

    def consumers(self) -> dict[str, list[str]]:
        """Object id -> ids of the tasks that read it."""
        readers: dict[str, list[str]] = {}
        for task in self.tasks.values():
            for oid in task.reads:
                readers.setdefault(oid, []).append(task.id)
        return readers

    def to_networkx(self) -> networkx.DiGraph:
        """Tasks as vertices, an edge producer -> consumer per object passed between them."""
        import networkx

        digraph = networkx.DiGraph()
        ids = self.ids
        for task, sources in zip(self.tasks.values(), self.sources, strict=True):
            digraph.add_node(task.id, function=task.function_name)
            for oid, at in zip(task.reads, sources, strict=True):
                if at >= 0:
                    digraph.add_edge(ids[at], task.id, object=oid)
        return digraph


_OUTSIDE = (-1,)          # the sources of a task reading one object made outside the graph


def _sources(reads: tuple[str, ...], made_at: dict[str, int]) -> tuple[int, ...]:
    """The position of the task making each of ``reads`` (-1: made outside the graph).

    >>> _sources(("a", "in", "a"), {"a": 4}), _sources((), {})
    ((4, -1, 4), ())
    """
    if not reads:                     # a source task (W3's no-ops): no list comprehension
        return ()
    if len(reads) == 1:               # most tasks: one tuple shared by all that read an input
        at = made_at.get(reads[0])
        return _OUTSIDE if at is None else (at,)
    get = made_at.get
    if len(reads) == 2:               # the next most common: no list to build
        return get(reads[0], -1), get(reads[1], -1)
    return tuple([get(oid, -1) for oid in reads])


def _upstream(sources: tuple[int, ...]) -> tuple[int, ...]:
    """``sources`` without -1 and repeats, in order. Most tasks read one object or two,
    which need no dict to de-duplicate.

    >>> _upstream((4, -1, 4, 2)), _upstream((-1,)), _upstream((3, 5))
    ((4, 2), (), (3, 5))
    """
    if not sources:                   # a source task (W3's no-ops)
        return sources
    if len(sources) == 1:
        return sources if sources[0] >= 0 else ()
    if len(sources) == 2 and sources[0] >= 0 and sources[1] >= 0:
        return sources if sources[0] != sources[1] else sources[:1]
    return tuple(dict.fromkeys([at for at in sources if at >= 0]))


def collect(refs: Iterable[ObjectRef], also: Iterable[Task] = ()
            ) -> tuple[Graph, dict[str, Task]]:
    """The unsubmitted tasks ``refs`` need, in topological order (iterative: deep chains ok).

    ``also``: more tasks to run (calls made but not requested), in the order they were
    made; their results are targets too.
    """
    refs = list(refs)
    extra = [task for task in also if not task.submitted]
    order: dict[str, Task] = {}
    for task in _post_order(extra + [ref.task for ref in refs]):      # made first: in order
        order[task.id] = task
    nodes = {tid: _task_node(task) for tid, task in order.items()}
    asked = [ref.id for ref in refs]
    seen = set(asked)
    targets = (*asked, *(oid for task in extra for oid in task.output_ids if oid not in seen))
    return Graph(nodes, targets), order


def _post_order(roots: Iterable[Task | None]) -> Iterator[Task]:
    """Unsubmitted tasks reachable from ``roots``, every task after its dependencies."""
    visited: set[str] = set()
    for root in roots:
        if root is None or root.submitted or root.id in visited:
            continue
        visited.add(root.id)
        if not root.deps and not root.nested:      # a source task (W3's no-ops): no stack
            yield root
            continue
        stack = [(root, iter(root.upstream()))]
        while stack:
            task, pending = stack[-1]
            for ref in pending:
                upstream = ref.task
                if upstream is not None and not upstream.submitted and upstream.id not in visited:
                    visited.add(upstream.id)
                    stack.append((upstream, iter(upstream.upstream())))
                    break
            else:
                stack.pop()
                yield task


_TASK_NODE_SLOTS = tuple(getattr(TaskNode, name).__set__ for name in TaskNode.__slots__)


def _task_node(task: Task) -> TaskNode:
    """A task as the compiler sees it: the frozen TaskNode, its slots filled directly (a
    frozen dataclass's ``__init__`` calls ``object.__setattr__`` once per field: the
    dearest part of collecting a graph of calls without arguments, W3), as the compiler's
    ``placed`` builds Placements.

    >>> from plait.graph.options import TaskOptions
    >>> class Called:
    ...     name = "f"
    ...     def pickled(self): return ("f@1", b"")
    >>> _task_node(Task("f-1", Called(), TaskOptions(), b"", ())) == TaskNode(
    ...     "f-1", "f", "f@1", (), ("f-1",))
    True
    """
    options = task.options
    function_id = "" if task.is_actor_call else task.function.pickled()[0]
    node = object.__new__(TaskNode)
    (set_id, set_function_name, set_function_id, set_deps, set_outputs, set_node,
     set_max_retries, set_nested, set_actor, set_num_cpus, set_needs, set_soft) = _TASK_NODE_SLOTS
    set_id(node, task.id)
    set_function_name(node, task.name)
    set_function_id(node, function_id)
    set_deps(node, task.dep_ids)
    set_outputs(node, task.output_ids)
    set_node(node, options.node)
    set_max_retries(node, options.max_retries)
    set_nested(node, task.nested_ids)
    set_actor(node, task.actor)
    set_num_cpus(node, options.num_cpus)
    set_needs(node, _needs(options))
    strategy = options.scheduling_strategy
    set_soft(node, strategy is not None and getattr(strategy, "soft", False))
    return node


def _needs(options: Any) -> tuple[tuple[str, float], ...]:
    """Resources other than CPUs the task asks for, by name (Ray's names: ``GPU`` for
    ``num_gpus``, ``memory`` for ``memory``, custom ones as given), sorted, none of 0.

    >>> from plait.graph.options import TaskOptions
    >>> _needs(TaskOptions(num_gpus=1, memory=100, resources={"disk": 2, "CPU": 4}))
    (('GPU', 1), ('disk', 2), ('memory', 100))
    """
    if not (options.resources or options.num_gpus or options.memory):
        return ()                     # most tasks: no dict to build and sort
    asked = {**(options.resources or {}), "GPU": options.num_gpus, "memory": options.memory}
    return tuple(sorted((name, amount) for name, amount in asked.items()
                        if amount and name != "CPU"))
