"""validate(plan, graph, view): name the first broken invariant before a plan leaves.

These are our own invariants, so a failure is a bug in the compiler: it raises
``AssertionError`` naming what broke, never a user-facing error.

The checks walk the placements in the graph's order beside the tasks (by position) rather
than looking each task up by id: at a million tasks, validating by look-ups cost as much as
placing (``benchmarks/scale.py compile``).
"""

from __future__ import annotations

from plait.compiler.plan import Plan
from plait.compiler.view import ClusterView
from plait.graph.graph import Graph


def validate(plan: Plan, graph: Graph, view: ClusterView) -> Plan:
    """Check dependencies, placements, stage order, transfers; return the plan unchanged."""
    _check_reads(graph, view)
    assert list(plan.placements) == graph.ids, "every task must be placed, in the graph's order"
    _check_stages(plan, view)
    for tid, placement in plan.placements.items():
        if placement.follows:
            before = plan.placements[placement.follows]
            assert before.node == placement.node, f"{tid} fused behind a task on another node"
    for task, placement in zip(graph.tasks.values(), plan.placements.values(), strict=True):
        if task.node is not None and not task.soft:
            assert task.node == placement.node, (
                f"{task.id} pinned to {task.node} but placed on {placement.node}")
    pairs = [(t.object_id, t.dst) for t in plan.transfers]
    assert len(pairs) == len(set(pairs)), "an object is copied to a node more than once"
    for transfer in plan.transfers:
        assert transfer.src != transfer.dst, f"transfer of {transfer.object_id} to its own node"
    return plan


def _check_stages(plan: Plan, view: ClusterView) -> None:
    """Every task is in exactly one stage: the one its placement names, on its node, listed
    in the graph's order. The stages' lists are rebuilt from the placements and compared,
    which also catches a task listed twice or missing."""
    nodes = set(view.node_ids())
    members: list[list[str]] = []
    for index, stage in enumerate(plan.stages):
        assert stage.index == index, f"stage {stage.index} is numbered out of order"
        assert stage.node in nodes, f"stage {stage.index} is on unknown node {stage.node}"
        members.append([])
    stages = plan.stages
    for tid, placement in plan.placements.items():
        assert 0 <= placement.stage < len(stages), f"{tid} names stage {placement.stage}"
        staged_on = stages[placement.stage].node
        assert placement.node == staged_on, (
            f"{tid} placed on {placement.node}, staged on {staged_on}")
        members[placement.stage].append(tid)
    for stage, placed_there in zip(stages, members, strict=True):
        assert list(stage.task_ids) == placed_there, (
            f"every task must be in exactly one stage: stage {stage.index} does not list the "
            f"tasks placed in it, in the graph's order")


def _check_reads(graph: Graph, view: ClusterView) -> None:
    """Every object a task reads comes from an earlier task (no cycle) or from the cluster."""
    objects, ids = view.objects, graph.ids
    for position, (task, sources) in enumerate(zip(graph.tasks.values(), graph.sources,
                                                   strict=True)):
        for oid, at in zip(task.reads, sources, strict=True):
            if at < 0:
                assert oid in objects, f"input {oid} is neither in the graph nor in the cluster"
            else:
                assert at < position, f"{task.id} reads {oid} before {ids[at]} produces it"
