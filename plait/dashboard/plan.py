"""The Plan page's drawing: the head's latest submission drawn by plait's own plan picture.

    PlanReport --plan_of--> Plan --build_picture, draw_svg--> SVG + {box key: its task ids}

The head keeps only the tasks it was sent (id, function, node, inputs, outputs), so the
plan is rebuilt from them: a stage per node and depth (tasks a node can run once what
they read exists), transfers where a task reads what another node made. Byte sizes are
not known here (0); the page shows predicted against actual bytes from the snapshot. The
browser colours each box by the live state of its tasks (``members``).
"""

from __future__ import annotations

from plait.compiler.draw.picture import build_picture
from plait.compiler.draw.svg import draw_svg
from plait.compiler.plan import Placement, Plan, Stage, Transfer
from plait.executor.wire import protocol as p


def plan_of(report: p.PlanReport) -> Plan:
    """A drawable Plan of the report's tasks (in the order the driver listed them, which
    is topological). Stages are numbered first, so each Placement is made once (making
    and then replacing 10,000 of them was most of the drawing's time)."""
    node_of = {oid: node for _, _, node, _, outputs, _ in report.tasks for oid in outputs}
    depth: dict[str, int] = {}
    stages: dict[tuple[int, str], list[str]] = {}
    transfers: dict[tuple[str, str], Transfer] = {}
    for task_id, _, node, deps, outputs, _ in report.tasks:
        depth[task_id] = 1 + max((depth.get(d, -1) for d in deps), default=-1)
        for oid in outputs:
            depth[oid] = depth[task_id]
        stages.setdefault((depth[task_id], node), []).append(task_id)
        for d in deps:
            if node_of.get(d, node) != node:
                transfers.setdefault((d, node), Transfer(d, node_of[d], node, 0))
    index = {key: i for i, key in enumerate(sorted(stages))}
    placements = {
        task_id: Placement(task_id, function, node, index[(depth[task_id], node)], "",
                           tuple((d, 0, (node_of[d],) if d in node_of else ()) for d in deps),
                           0, outputs, follows)
        for task_id, function, node, deps, outputs, follows in report.tasks}
    targets = tuple(report.tasks[-1][4]) if report.tasks else ()
    return Plan(targets, placements,
                tuple(Stage(index[key], key[1], tuple(ids)) for key, ids in sorted(stages.items())),
                tuple(transfers.values()), {})


def draw_plan(report: p.PlanReport) -> dict:
    """The page's plan: SVG text, and for each task's box (or group's) the tasks in it."""
    if not report.tasks:
        return {"number": report.number, "svg": "", "members": {},
                "predicted_bytes": report.predicted_bytes}
    picture = build_picture(plan_of(report))
    members = {v.key: list(v.members) for v in picture.vertices if v.kind != "object"}
    return {"number": report.number, "svg": draw_svg(picture), "members": members,
            "predicted_bytes": report.predicted_bytes, "tasks": len(report.tasks)}
