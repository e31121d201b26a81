"""validate(plan, graph, view): name the first broken invariant before a plan leaves.

These are our own invariants, so a failure is a bug in the compiler: it raises
``AssertionError`` naming what broke, never a user-facing error.
"""

from __future__ import annotations

from plait.compiler.plan import Plan
from plait.compiler.view import ClusterView
from plait.graph.graph import Graph


def validate(plan: Plan, graph: Graph, view: ClusterView) -> Plan:
    """Check placements, stage order, dependencies, transfers; return the plan unchanged."""
    nodes = set(view.node_ids())
    staged = [tid for stage in plan.stages for tid in stage.task_ids]
    assert len(staged) == len(graph.tasks) and set(staged) == graph.tasks.keys(), (
        "every task must be in exactly one stage")
    assert plan.placements.keys() == graph.tasks.keys(), "every task must be placed"
    for stage in plan.stages:
        assert stage.node in nodes, f"stage {stage.index} is on unknown node {stage.node}"
        for tid in stage.task_ids:
            placement = plan.placements[tid]
            assert placement.node == stage.node, (
                f"{tid} placed on {placement.node}, staged on {stage.node}")
            assert placement.stage == stage.index, f"{tid} names stage {placement.stage}"
    for tid, placement in plan.placements.items():
        if placement.follows:
            before = plan.placements[placement.follows]
            assert before.node == placement.node, f"{tid} fused behind a task on another node"
    _check_pins_and_reads(plan, graph, view)
    pairs = [(t.object_id, t.dst) for t in plan.transfers]
    assert len(pairs) == len(set(pairs)), "an object is copied to a node more than once"
    for transfer in plan.transfers:
        assert transfer.src != transfer.dst, f"transfer of {transfer.object_id} to its own node"
    return plan


def _check_pins_and_reads(plan: Plan, graph: Graph, view: ClusterView) -> None:
    """A pinned task is on its node; every object a task reads comes from an earlier task
    (no cycle) or from the cluster. One walk over the tasks for both."""
    producer, objects = graph.producer, view.objects
    before: set[str] = set()
    for tid, task in graph.tasks.items():
        if task.node is not None:
            placed = plan.placements[tid].node
            assert task.node == placed, f"{tid} pinned to {task.node} but placed on {placed}"
        for oid in task.reads:
            made_by = producer.get(oid)
            if made_by is None:
                assert oid in objects, f"input {oid} is neither in the graph nor in the cluster"
            else:
                assert made_by in before, f"{tid} reads {oid} before {made_by} produces it"
        before.add(tid)
