"""What a plan's picture shows: vertices (tasks, groups, objects) and the edges between them.

Data flow of ``plan.visualize``::

    Plan --build_picture--> Picture --layout.layout--> Layout --visualize.render_*--> text

An edge runs from the task whose ``outputs`` hold an object to every task that lists the
object among its ``inputs``; an input no task of the plan produces is an *external* object
(a put, an earlier result) and gets a small vertex of its own, coloured by the node holding it.

A plan of thousands of tasks is unreadable one box per task, so above ``COLLAPSE_ABOVE``
tasks the repeated calls of one function within one stage (same function, node and stage)
become one group vertex ``name ×count``, and external objects read by the same vertices from
the same nodes become one. Edges between the same two vertices merge; their bytes add up over
the *distinct* objects they carry, because an object is copied to a node once per plan however
many of a group's tasks read it (summing per reader would overstate what moves).

Pure: no I/O. Every order below is fixed by the plan's own order, so equal plans give equal
pictures.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from plait.compiler.plan import Placement, Plan
from plait.compiler.units import format_bytes

COLLAPSE_ABOVE = 200        # tasks; above this, repeated calls in one stage draw as one group
DETAIL_LINES = 12           # hover text lists at most this many members / inputs


@dataclass(frozen=True, slots=True)
class Vertex:
    """One box: a task, a group of calls of one function in one stage, or external object(s)."""

    key: str                    # unique in the picture: "t:<task>", "g:<stage>:<fn>", "o:<obj>"
    kind: str                   # "task", "group" or "object"
    label: str                  # first line: task id, "name ×count", or object id
    sublabel: str               # second line: function name, id range, or size
    nodes: tuple[str, ...]      # the node it runs on; for objects every node holding them
    stage: int | None           # None for objects: they belong to no stage
    rank: int                   # position in topological order; layout ties break on it
    details: str                # hover text, one fact per line
    members: tuple[str, ...]    # task ids (tasks, groups) or object ids (objects)

    @property
    def node(self) -> str:
        """The node that colours the box (an object's first holder; '' if nobody holds it)."""
        return self.nodes[0] if self.nodes else ""


@dataclass(frozen=True, slots=True)
class Edge:
    """Objects flowing from one vertex to another, merged into one arrow."""

    src: str
    dst: str
    nbytes: int                 # bytes of the distinct objects carried
    count: int                  # how many distinct objects
    crossing: bool              # the objects live on another node: they are copied (transfers)
    src_node: str
    dst_node: str
    labelled: bool              # first arrow of a transfer: the one that shows its size
    details: str


@dataclass(frozen=True, slots=True)
class Lane:
    """One stage: a labelled box around the tasks sent to one node together."""

    index: int
    node: str
    title: str


@dataclass(frozen=True)
class Picture:
    """Everything a renderer draws; ``nodes`` is the legend order (palette index)."""

    summary: str
    nodes: tuple[str, ...]
    lanes: tuple[Lane, ...]           # one per stage, in stage order
    vertices: tuple[Vertex, ...]      # tasks and groups in topological order, then objects
    edges: tuple[Edge, ...]
    collapsed: bool


def build_picture(plan: Plan, collapse: bool | None = None) -> Picture:
    """The picture of ``plan``; ``collapse`` None means: group repeated calls above 200 tasks."""
    if collapse is None:
        collapse = len(plan.placements) > COLLAPSE_ABOVE
    order = topological_order(plan)
    producer = {oid: p.task_id for p in plan.placements.values() for oid in p.outputs}
    task_key = _task_keys(plan, order, collapse)
    object_key = _object_keys(plan, order, producer, task_key, collapse)
    vertices = _task_vertices(plan, order, task_key) + _object_vertices(plan, order, object_key)
    by_key = {v.key: v for v in vertices}
    edges = _edges(plan, order, producer, task_key, object_key, by_key)
    return Picture(_summary(plan, len(vertices), collapse), node_order(plan), _lanes(plan),
                   tuple(vertices), tuple(edges), collapse)


def topological_order(plan: Plan) -> list[str]:
    """Task ids, each after the tasks it reads from; ties keep the plan's own order.

    The compiler already lists placements topologically, and then this returns that order
    unchanged (Kahn's algorithm picking the earliest ready task); sorting anyway keeps a
    hand-built plan drawable. Tasks caught in a cycle (a broken plan) come last, in plan order.
    """
    position = {tid: i for i, tid in enumerate(plan.placements)}
    producer = {oid: p.task_id for p in plan.placements.values() for oid in p.outputs}
    waiting = dict.fromkeys(plan.placements, 0)
    readers: dict[str, list[str]] = {}
    for tid, placement in plan.placements.items():
        for oid in _unique_ids(placement):
            source = producer.get(oid)
            if source is not None and source != tid:
                waiting[tid] += 1
                readers.setdefault(source, []).append(tid)
    ready = [(position[tid], tid) for tid, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, tid = heapq.heappop(ready)
        order.append(tid)
        for reader in readers.get(tid, ()):
            waiting[reader] -= 1
            if waiting[reader] == 0:
                heapq.heappush(ready, (position[reader], reader))
    placed = set(order)
    return order + [tid for tid in plan.placements if tid not in placed]


def node_order(plan: Plan) -> tuple[str, ...]:
    """Every node the plan mentions, in natural order (node-2 before node-10).

    Sorting by name rather than by first use keeps a node's colour the same across the
    pictures of different plans on one cluster.
    """
    names = {p.node for p in plan.placements.values()} | {s.node for s in plan.stages}
    names |= {node for p in plan.placements.values() for _, _, held in p.inputs for node in held}
    return tuple(sorted(names, key=natural_key))


def natural_key(text: str) -> tuple[tuple[int, str | int], ...]:
    """Sort key that compares runs of digits as numbers.

    >>> sorted(["node-10", "node-2", "head"], key=natural_key)
    ['head', 'node-2', 'node-10']
    """
    return tuple((1, int(part)) if part.isdigit() else (0, part)
                 for part in re.split(r"(\d+)", text) if part)


def _unique_ids(placement: Placement) -> Iterator[str]:
    return iter(dict.fromkeys(oid for oid, _, _ in placement.inputs))


def _unique_inputs(placement: Placement) -> Iterator[tuple[str, int, tuple[str, ...]]]:
    """A task's inputs, each object once (a task may pass one ref twice)."""
    seen: set[str] = set()
    for item in placement.inputs:
        if item[0] not in seen:
            seen.add(item[0])
            yield item


# -- vertices ------------------------------------------------------------------------------

def _task_keys(plan: Plan, order: list[str], collapse: bool) -> dict[str, str]:
    """Task id -> vertex key; when collapsing, calls sharing (stage, node, function) share one."""
    if not collapse:
        return {tid: f"t:{tid}" for tid in order}
    members: dict[tuple[int, str, str], list[str]] = {}
    for tid in order:
        p = plan.placements[tid]
        members.setdefault((p.stage, p.node, p.function_name), []).append(tid)
    keys: dict[str, str] = {}
    for (stage, node, function), tids in members.items():
        key = f"t:{tids[0]}" if len(tids) == 1 else f"g:{stage}:{node}:{function}"
        keys.update(dict.fromkeys(tids, key))
    return keys


def _object_keys(plan: Plan, order: list[str], producer: dict[str, str],
                 task_key: dict[str, str], collapse: bool) -> dict[str, str]:
    """External object id -> vertex key; when collapsing, one key per (holders, readers)."""
    holders: dict[str, tuple[str, ...]] = {}
    readers: dict[str, dict[str, None]] = {}
    for tid in order:
        for oid, _, held in _unique_inputs(plan.placements[tid]):
            if oid not in producer:
                holders.setdefault(oid, held)
                readers.setdefault(oid, {})[task_key[tid]] = None
    if not collapse:
        return {oid: f"o:{oid}" for oid in holders}
    first: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}
    keys: dict[str, str] = {}
    for oid, held in holders.items():
        keys[oid] = first.setdefault((held, tuple(readers[oid])), f"o:{oid}")
    return keys


def _task_vertices(plan: Plan, order: list[str], task_key: dict[str, str]) -> list[Vertex]:
    members: dict[str, list[str]] = {}
    for tid in order:
        members.setdefault(task_key[tid], []).append(tid)
    rank = {tid: i for i, tid in enumerate(order)}
    return [_task_vertex(plan.placements[tids[0]], rank[tids[0]]) if key.startswith("t:")
            else _group_vertex(key, [plan.placements[t] for t in tids], rank[tids[0]])
            for key, tids in members.items()]


def _task_vertex(p: Placement, rank: int) -> Vertex:
    inputs = [f"  {oid} {format_bytes(nbytes)} @ {', '.join(held) or 'unknown'}"
              for oid, nbytes, held in p.inputs]
    lines = [f"task {p.task_id}", f"function: {p.function_name}",
             f"node: {p.node}, stage {p.stage}",
             "inputs (where they live):" if inputs else "inputs: none",
             *_clip(inputs), f"outputs: {', '.join(p.outputs) or '-'}",
             f"bytes moved: {format_bytes(p.bytes_moved)}", f"why: {p.reason}"]
    return Vertex(f"t:{p.task_id}", "task", p.task_id, p.function_name, (p.node,), p.stage, rank,
                  "\n".join(lines), (p.task_id,))


def _group_vertex(key: str, group: list[Placement], rank: int) -> Vertex:
    first = group[0]
    reasons: dict[str, int] = {}
    for p in group:
        reasons[p.reason] = reasons.get(p.reason, 0) + 1
    lines = [f"{first.function_name} ×{len(group)}: repeated calls in one stage",
             f"node: {first.node}, stage {first.stage}", "tasks:",
             *_clip(f"  {p.task_id}" for p in group),
             f"bytes moved: {format_bytes(sum(p.bytes_moved for p in group))}",
             *(f"why ×{n}: {reason}" for reason, n in reasons.items())]
    return Vertex(key, "group", f"{first.function_name} ×{len(group)}",
                  f"{first.task_id} … {group[-1].task_id}", (first.node,), first.stage, rank,
                  "\n".join(lines), tuple(p.task_id for p in group))


def _object_vertices(plan: Plan, order: list[str], object_key: dict[str, str]) -> list[Vertex]:
    found: dict[str, dict[str, tuple[int, tuple[str, ...], int]]] = {}
    for rank, tid in enumerate(order):
        for oid, nbytes, held in _unique_inputs(plan.placements[tid]):
            if oid in object_key:
                found.setdefault(object_key[oid], {}).setdefault(oid, (nbytes, held, rank))
    return [_object_vertex(key, objects) for key, objects in found.items()]


def _object_vertex(key: str, objects: dict[str, tuple[int, tuple[str, ...], int]]) -> Vertex:
    (oid, (_, held, rank)), count = next(iter(objects.items())), len(objects)
    total = sum(nbytes for nbytes, _, _ in objects.values())
    where = ", ".join(held) or "unknown"
    lines = [f"object {oid}" if count == 1 else f"{count} objects",
             f"size: {format_bytes(total)}", f"held on: {where}",
             "read from outside the plan (a put or an earlier result)"]
    if count > 1:
        lines[3:3] = _clip(f"  {o} {format_bytes(n)}" for o, (n, _, _) in objects.items())
    label = oid if count == 1 else f"{count} objects"
    return Vertex(key, "object", label, format_bytes(total), held, None, rank, "\n".join(lines),
                  tuple(objects))


def _clip(lines: Iterable[str]) -> list[str]:
    """At most DETAIL_LINES lines, then how many were left out.

    >>> _clip(str(i) for i in range(14))[-2:]
    ['10', '… and 3 more']
    """
    kept = list(lines)
    if len(kept) <= DETAIL_LINES:
        return kept
    return kept[:DETAIL_LINES - 1] + [f"… and {len(kept) - DETAIL_LINES + 1} more"]


# -- edges ---------------------------------------------------------------------------------

def _edges(plan: Plan, order: list[str], producer: dict[str, str], task_key: dict[str, str],
           object_key: dict[str, str], by_key: dict[str, Vertex]) -> list[Edge]:
    """Merged arrows in first-use order; arrows inside one group are dropped."""
    carried: dict[tuple[str, str], dict[str, int]] = {}
    crossing: dict[tuple[str, str], bool] = {}
    for tid in order:
        p = plan.placements[tid]
        dst = task_key[tid]
        for oid, nbytes, held in _unique_inputs(p):
            src = task_key[producer[oid]] if oid in producer else object_key[oid]
            if src != dst:
                carried.setdefault((src, dst), {})[oid] = nbytes
                crossing[(src, dst)] = bool(held) and p.node not in held
    copied: set[tuple[str, str]] = set()
    edges = []
    for (src, dst), objects in carried.items():
        node = by_key[dst].node
        fresh = {(oid, node) for oid in objects} - copied if crossing[(src, dst)] else set()
        copied |= fresh
        edges.append(_edge(by_key[src], by_key[dst], objects, crossing[(src, dst)], bool(fresh)))
    return edges


def _edge(src: Vertex, dst: Vertex, objects: dict[str, int], crossing: bool,
          labelled: bool) -> Edge:
    nbytes = sum(objects.values())
    how = (f"copied {src.node} → {dst.node} (once per node, however many tasks read it)"
           if crossing else "same node: read in place from the store, nothing copied")
    lines = [f"{src.label} → {dst.label}", f"{len(objects)} object(s), {format_bytes(nbytes)}", how,
             *_clip(f"  {oid} {format_bytes(n)}" for oid, n in objects.items())]
    return Edge(src.key, dst.key, nbytes, len(objects), crossing, src.node, dst.node, labelled,
                "\n".join(lines))


def _lanes(plan: Plan) -> tuple[Lane, ...]:
    """A lane per stage; a task naming a stage the plan lacks still gets one (drawn, not lost)."""
    lanes = {s.index: Lane(s.index, s.node, _lane_title(s.index, s.node, len(s.task_ids)))
             for s in plan.stages}
    for p in plan.placements.values():
        if p.stage not in lanes:
            count = sum(1 for q in plan.placements.values() if q.stage == p.stage)
            lanes[p.stage] = Lane(p.stage, p.node, _lane_title(p.stage, p.node, count))
    return tuple(lanes[index] for index in sorted(lanes))


def _lane_title(index: int, node: str, count: int) -> str:
    return f"stage {index} · {node} · {count} task{'s' if count != 1 else ''}"


def _summary(plan: Plan, vertices: int, collapsed: bool) -> str:
    nodes = len({p.node for p in plan.placements.values()})
    text = (f"{len(plan.placements)} tasks in {len(plan.stages)} stage(s) on {nodes} node(s); "
            f"{len(plan.transfers)} transfer(s), {format_bytes(plan.bytes_moved)} moved")
    if collapsed:
        text += f"; repeated calls grouped ({vertices} boxes)"
    return text
