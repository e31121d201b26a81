"""place(graph, view, options) -> [Choice]: each task on the node where it finishes first.

cost(node) = bytes to copy there / bandwidth + a fixed cost per transfer
           + a relay delay per small input made elsewhere
           + the work already queued there per worker (durations learned per function)

so a task goes where the bytes of its inputs are unless waiting there costs more than moving
them, and a fan-out of small tasks spreads over all workers. Load is counted in the pass
itself; ties go to the earlier node in the view (the head first), which keeps the result
deterministic.

Cost per task, not per task and node: a node that holds none of a task's inputs pays the
full cost of moving them all, the same on every such node, so among those the cheapest is
the least loaded one. Only the nodes holding an input and the least-loaded node
(``LeastLoaded``, a heap) are ever priced: O(inputs + log nodes) per task, however many
nodes the cluster has (one heap per kind of demand: worker slots and other resources, so a
task asking for a GPU is priced only on nodes that offer one). Compiling 1M tasks for 3
nodes took 48 s with a scan of every node per task and 9 s this way on this machine
(``benchmarks/scale.py compile``).
"""

from __future__ import annotations

import dataclasses

import functools
import heapq
import math
import zlib
from collections import Counter
from dataclasses import dataclass

from plait.compiler.units import format_bytes
from plait.compiler.view import ClusterView, CompileOptions, offers
from plait.errors import PlanError
from plait.graph.graph import Graph, TaskNode

# Below this many input bytes on one node, locality is not worth piling work onto that
# node: the task goes where the queue is shortest instead.
LOCALITY_MIN_BYTES = 1 << 20

Input = tuple[str, int, tuple[str, ...]]          # (object, bytes, nodes holding a copy)
Inputs = tuple[Input, ...]
Amounts = tuple[tuple[str, float], ...]           # resources by name: a node's, a task's needs


@dataclass(slots=True)
class Choice:
    """The placement pass's decision for one task (internal to one compile: not frozen,
    which makes it five times cheaper to build; the Plan's Placement is frozen)."""

    node: str
    reason: str
    inputs: Inputs
    bytes_moved: int


def slots_of(num_cpus: float) -> int:
    """Worker slots a task holds for ``num_cpus`` (one worker is one CPU; at least one).

    >>> slots_of(0.5), slots_of(1), slots_of(2.5)
    (1, 1, 3)
    """
    return 1 if num_cpus == 1 else max(1, math.ceil(num_cpus))


class LeastLoaded:
    """The node with the least queued seconds per worker (ties: the earlier node), among
    the nodes with at least ``slots`` workers that offer ``needs`` (GPU, custom resources):
    one lazy heap per (slots, needs) asked for.

    A node's load only grows during a pass; each growth pushes a fresh entry and entries
    whose load is stale are dropped when they reach the top. The load of each node is kept
    in ``current`` as it changes rather than worked out when asked: placement asks for it
    about four times per task (the heap's top, the candidates' costs), a quarter of the
    pass's time at a million tasks.

    >>> loads = LeastLoaded({"a": 0.0, "b": 0.0}, {"a": 1, "b": 2}, {"a": 0, "b": 1})
    >>> loads.least(1), loads.add("a", 1.0), loads.least(1), loads.least(2)
    ('a', None, 'b', 'b')
    >>> loads.resources = {"a": (("GPU", 1.0),)}
    >>> loads.least(1, (("GPU", 1.0),)), loads.least(1, (("GPU", 2.0),))
    ('a', None)
    """

    def __init__(self, backlog: dict[str, float], workers: dict[str, int],
                 rank: dict[str, int], resources: dict[str, Amounts] | None = None,
                 held: dict[str, int] | None = None) -> None:
        self.backlog, self.workers, self.rank = backlog, workers, rank
        self.resources = resources or {}
        self.held = held or {}
        self.heaps: dict[tuple[int, Amounts], list[tuple[float, int, str]]] = {}
        self.heaps_of: dict[str, list[list[tuple[float, int, str]]]] = {n: [] for n in backlog}
        self.current = {node: self.load(node) for node in backlog}

    def load(self, node: str) -> float:
        """Queued seconds per worker free to run tasks: slots that actors hold for their
        life run none, and a node whose slots they all hold comes last (a task sent
        there would wait as long as they live), though it may still run what fits it."""
        free = self.workers[node] - self.held.get(node, 0)
        return self.backlog[node] / free if free > 0 else math.inf

    def fits(self, node: str, slots: int, needs: Amounts) -> bool:
        """Whether ``node`` has ``slots`` workers and offers ``needs``, in all."""
        return self.workers[node] >= slots and (
            not needs or offers(self.resources.get(node, ()), needs))

    def least(self, slots: int, needs: Amounts = ()) -> str | None:
        """The least-loaded node with ``slots`` workers or more that offers ``needs`` (None:
        no node does)."""
        heap = self.heaps.get((slots, needs))
        if heap is None:
            heap = self._new_heap(slots, needs)
        current = self.current
        while heap:
            load, _, node = heap[0]
            if load == current[node]:
                return node
            heapq.heappop(heap)                          # an old entry of a busier node
        return None

    def _new_heap(self, slots: int, needs: Amounts) -> list[tuple[float, int, str]]:
        """The heap of the nodes that fit (slots, needs), each node told it is in it."""
        fitting = [n for n in self.backlog if self.fits(n, slots, needs)]
        heap = [(self.current[n], self.rank[n], n) for n in fitting]
        heapq.heapify(heap)
        self.heaps[slots, needs] = heap
        for node in fitting:
            self.heaps_of[node].append(heap)
        return heap

    def hold(self, node: str, slots: int) -> None:
        """An actor placed on ``node`` in this pass holds ``slots`` workers for its life."""
        self.held[node] = self.held.get(node, 0) + slots
        self.add(node, 0.0)

    def add(self, node: str, seconds: float) -> None:
        heaps = self.heaps_of.get(node)
        if heaps is None:
            return                    # a node outside the pool (no workers) gets no queue
        self.backlog[node] += seconds
        load = self.current[node] = self.load(node)
        entry = (load, self.rank[node], node)
        for heap in heaps:
            heapq.heappush(heap, entry)


def place(graph: Graph, view: ClusterView, options: CompileOptions) -> list[Choice]:
    """Put each task on the node where it would finish first, by the cost model above: a
    choice per task, in the graph's order."""
    order = view.node_ids()
    if not order:
        raise PlanError("the cluster has no nodes to run tasks on")
    rank = {node: i for i, node in enumerate(order)}
    workers = {n.id: max(n.workers, 1) for n in view.nodes}
    pool = [n for n in view.nodes if n.workers > 0] or list(view.nodes)
    loads = LeastLoaded({n.id: n.queued * options.task_seconds for n in pool}, workers, rank,
                        {n.id: n.resources for n in view.nodes if n.resources},
                        {n.id: n.held for n in view.nodes if n.held})
    outside: dict[str, Input] = {
        oid: (oid, info.nbytes, info.nodes) for oid, info in view.objects.items()}
    guess = options.result_bytes_guess
    where = {node: (node,) for node in order}    # one tuple per node, shared by its results
    actors_on = Counter(view.actors.values())     # actors per node, to spread new ones
    sizes: list[int] = []                  # by position: the result size a task is expected
    made_on: list[tuple[str, ...]] = []    # to make, and the node it makes it on
    actors: dict[str, str] = {}            # actors created in this graph -> their node
    choices: list[Choice] = []
    for task, sources in zip(graph.tasks.values(), graph.sources, strict=True):
        inputs = tuple([(oid, sizes[at], made_on[at]) if at >= 0
                        else outside.get(oid) or (oid, guess, ())
                        for oid, at in zip(task.reads, sources, strict=True)]) if sources else ()
        unique = unique_inputs(inputs) if len(inputs) > 1 else inputs
        slots = slots_of(task.num_cpus)
        unheld = _unheld_soft_pin(task, slots, loads)
        if unheld:
            task = dataclasses.replace(task, node=None)
        if task.actor and task.actor != task.id:
            node, reason = _actor_node(task, actors, view), "runs in its actor"
        elif task.actor and _spreads(task, unique) and len(pool) > 1:
            turn = zlib.crc32(task.id.encode())      # ties turn with the actor's id
            node = min((n.id for n in pool),
                       key=lambda n: (actors_on[n], (rank[n] + turn) % len(rank)))
            reason = "an actor asking for no CPU: the node with the fewest actors"
        else:
            node, reason = _choose_node(task, slots, unique, loads, view, options)
        if unheld:
            reason = f"{reason}; {unheld}"
        choices.append(Choice(node, reason, inputs, _moved(unique, node, options)))
        if not task.actor:          # an actor has a process of its own, outside the slots
            seconds = view.durations.get(task.function_name, options.task_seconds)
            loads.add(node, seconds * task.num_cpus)    # two of num_cpus=0.5 share a worker
        elif task.actor == task.id:
            actors[task.id] = node
            actors_on[node] += 1
            if task.num_cpus >= 1:                           # unless it asked for CPUs
                loads.hold(node, math.ceil(task.num_cpus))
        sizes.append(view.result_sizes.get(task.function_name, guess))
        made_on.append(where[node])
    return choices


def _spreads(task: TaskNode, inputs: Inputs) -> bool:
    """An actor that asks for nothing (no CPU, resource or node) and reads no large object
    goes where the fewest actors live, as Ray spreads such actors over its nodes: they hold
    no worker slot, so by load alone every one would land on the first node, and a chain of
    actors passing large values would share (and fill) one store. Among nodes with as few,
    the actor's id picks (a turn, not a chance: the plan stays a function of its input), so
    actors made and dropped one at a time do not all land on the same one either."""
    return (task.actor == task.id and task.num_cpus == 0 and not task.needs
            and task.node is None
            and all(nbytes < LOCALITY_MIN_BYTES for _, nbytes, _ in inputs))


def _unheld_soft_pin(task: TaskNode, slots: int, loads: LeastLoaded) -> str:
    """Why a soft pin (Ray's ``NodeAffinitySchedulingStrategy(soft=True)``) cannot be held:
    its node is not in the cluster, or has not the slots or resources the task asks for.
    Ray then runs the task elsewhere, and so does plait. Empty: the pin holds, or is hard
    (a hard pin that cannot be held is refused with a PlanError)."""
    node = task.node
    if not task.soft or node is None:
        return ""
    if node not in loads.workers:
        return f"soft pin to {node}, which is not in the cluster, not held"
    if not loads.fits(node, slots, task.needs):
        return f"soft pin to {node}, which cannot run it, not held"
    return ""


def _actor_node(task: TaskNode, actors: dict[str, str], view: ClusterView) -> str:
    """A method call runs where its actor lives: created in this graph (``actors``), or
    known to the view.

    An actor whose node has left the view is dead or restarting elsewhere: the head routes
    the call to where it restarts, or fails it with ActorDiedError (the placement is only a
    hint for actor calls), so it is placed on the first node rather than refused here."""
    if task.actor in actors:
        return actors[task.actor]
    if task.actor in view.actors:
        node = view.actors[task.actor]
        return node if node in view.node_ids() else view.nodes[0].id
    raise PlanError(f"task {task.id} ({task.function_name}) calls actor {task.actor}, which "
                    f"the cluster does not know (created by another session?)", task_id=task.id)


def _choose_node(task: TaskNode, slots: int, inputs: Inputs, loads: LeastLoaded,
                 view: ClusterView, options: CompileOptions) -> tuple[str, str]:
    """The cheapest of: the nodes holding an input, and the least-loaded node (of those
    with ``slots`` workers and the other resources the task asks for)."""
    needs = task.needs
    least = loads.least(slots, needs)
    if least is None and needs and task.node is None and task.actor == task.id \
            and task.num_cpus == 0:
        # an actor asking for no CPU holds no worker slot: a node without workers (a head
        # started with num_cpus=0) may host it, if it offers what the actor asks for
        home = next((n.id for n in view.nodes if offers(n.resources, needs)), None)
        if home is not None:
            return home, "an actor with num_cpus=0, on the first node offering its resources"
    if needs:
        _check_offered(task, loads, view)
    if least is None:
        raise PlanError(f"task {task.id} ({task.function_name}) needs num_cpus={task.num_cpus} "
                        f"({slots} worker slots), but the largest node has "
                        f"{max(loads.workers.values())}", task_id=task.id, infeasible=True)
    if task.node is not None:
        return _pinned(task, slots, loads), "pinned by node= option"
    if not inputs:                      # a source task: nothing to weigh against the queue
        return least, _LEAST_LOADED
    local = {least: 0}                  # candidate -> bytes of the task's inputs it holds
    backlog = loads.backlog
    anywhere = slots == 1 and not needs        # every node of the pool fits (at least 1 worker)
    for _, nbytes, nodes in inputs:
        for node in nodes:
            if node in local:
                local[node] += nbytes
            elif node in backlog and (anywhere or loads.fits(node, slots, needs)):
                local[node] = nbytes
    best = least
    if len(local) > 1:
        rank = loads.rank
        best_key = (_cost(inputs, least, loads, options), rank[least])
        for node in local:
            if node != least:
                key = (_cost(inputs, node, loads, options), rank[node])
                if key < best_key:
                    best, best_key = node, key
    return best, _reason(inputs, best, local, loads.rank, options)


def _check_offered(task: TaskNode, loads: LeastLoaded, view: ClusterView) -> None:
    """Refuse a task no node offers the resources of (``infeasible``: only a node that
    joins later could run it; Ray leaves it pending, plait says why), or one pinned to a
    node that does not offer them."""
    if loads.least(1, task.needs) is None:
        offered = "; ".join(f"{n.id}: {_named(n.resources) or 'CPUs only'}" for n in view.nodes)
        raise PlanError(f"task {task.id} ({task.function_name}) asks for {_named(task.needs)}, "
                        f"which no node offers ({offered}); start plait with them "
                        f"(plait.init(num_gpus=..., resources={{...}})) or ask for less",
                        task_id=task.id, infeasible=True)
    if task.node in loads.workers and not offers(loads.resources.get(task.node, ()), task.needs):
        raise PlanError(f"task {task.id} ({task.function_name}) asks for "
                        f"{_named(task.needs)} but is pinned to {task.node}, which "
                        f"does not offer them", task_id=task.id)


def _named(amounts: Amounts) -> str:
    """Resources as people read them.

    >>> _named((("GPU", 1.0), ("disk", 0.5), ("memory", 3 << 30)))
    '1 GPU, 0.5 disk, 3.0 GiB memory'
    """
    return ", ".join(f"{format_bytes(int(amount)) if name == 'memory' else f'{amount:g}'} {name}"
                     for name, amount in amounts)


def _pinned(task: TaskNode, slots: int, loads: LeastLoaded) -> str:
    node = task.node
    assert node is not None
    if node in loads.workers and loads.workers[node] < slots:
        raise PlanError(f"task {task.id} ({task.function_name}) needs {slots} worker slots "
                        f"but is pinned to {node}, which has {loads.workers[node]}",
                        task_id=task.id)
    if node not in loads.workers:
        raise PlanError(f"task {task.id} ({task.function_name}) is pinned to node "
                        f"{node!r}, which is not in the cluster ({', '.join(loads.rank)})",
                        task_id=task.id)
    return node


def _cost(inputs: Inputs, node: str, loads: LeastLoaded, options: CompileOptions) -> float:
    seconds = loads.current[node]
    for _, nbytes, nodes in inputs:
        if not nodes or node in nodes:
            continue
        if nbytes > options.inline_bytes:
            seconds += nbytes / options.bandwidth + options.transfer_seconds
        else:
            seconds += options.relay_seconds
    return seconds


def _moved(inputs: Inputs, node: str, options: CompileOptions) -> int:
    """Bytes that must be copied to ``node`` (small objects ride in messages instead)."""
    moved, inline = 0, options.inline_bytes      # a loop: a third cheaper than sum(generator)
    for _, nbytes, nodes in inputs:
        if nbytes > inline and nodes and node not in nodes:
            moved += nbytes
    return moved


def _reason(inputs: Inputs, chosen: str, local: dict[str, int], rank: dict[str, int],
            options: CompileOptions) -> str:
    """Why ``chosen``: the bytes already there, or what the best-stocked node would cost."""
    if local[chosen] >= LOCALITY_MIN_BYTES:
        return _held_there(local[chosen])
    if max(local.values()) >= LOCALITY_MIN_BYTES:
        richest = min(local, key=lambda n: (-local[n], rank[n]))
        return _cheaper_than(_moved(inputs, chosen, options), richest, local[richest])
    if local[chosen] > 0:
        return "its inputs were made there"
    return _LEAST_LOADED


_LEAST_LOADED = "small inputs: least-loaded node"


# A reason is one of few sentences: each is written once and shared by every task it
# explains (a million tasks would otherwise hold a million equal strings, ~90 MB).

@functools.lru_cache(maxsize=1024)
def _held_there(nbytes: int) -> str:
    return f"{format_bytes(nbytes)} of its inputs are already there"


@functools.lru_cache(maxsize=1024)
def _cheaper_than(moved: int, richest: str, held: int) -> str:
    return (f"copying {format_bytes(moved)} costs less than waiting for {richest}, which "
            f"holds {format_bytes(held)}")


def unique_inputs(inputs: Inputs) -> Inputs:
    """Each object once (a task may read one object in several arguments).

    >>> unique_inputs((("a", 1, ()), ("b", 2, ()), ("a", 1, ())))
    (('a', 1, ()), ('b', 2, ()))
    """
    if len(inputs) < 2:
        return inputs
    if len(inputs) == 2:                # the common case of several: no dict needed
        return inputs if inputs[0][0] != inputs[1][0] else inputs[:1]
    seen: dict[str, Input] = {}
    for item in inputs:
        seen.setdefault(item[0], item)
    return tuple(seen.values()) if len(seen) < len(inputs) else inputs
