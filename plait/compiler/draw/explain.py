"""plan.explain(): a plain-text table of where each task runs and why, then totals."""

from __future__ import annotations

from plait.compiler.plan import Plan
from plait.compiler.units import format_bytes


def explain(plan: Plan) -> str:
    header = ("task", "function", "node", "stage", "inputs (where they live)", "moved", "why")
    rows = [header]
    for p in plan.placements.values():
        inputs = ", ".join(f"{oid} {format_bytes(nbytes)}@{'/'.join(nodes) or 'inline'}"
                           for oid, nbytes, nodes in p.inputs) or "-"
        why = f"{p.reason}; fused after {p.follows}" if p.follows else p.reason
        rows.append((p.task_id, p.function_name, p.node, str(p.stage), inputs,
                     format_bytes(p.bytes_moved), why))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    per_node = ", ".join(f"{node}: {n}" for node, n in sorted(plan.tasks_per_node().items()))
    fused = sum(1 for p in plan.placements.values() if p.follows)
    lines += ["", f"{len(plan.placements)} tasks in {len(plan.stages)} stage(s); "
                  f"tasks per node: {per_node or '-'}; {fused} fused into chains",
              f"predicted bytes moved: {format_bytes(plan.bytes_moved)} in "
              f"{len(plan.transfers)} transfer(s); critical path "
              f"{plan.critical_path * 1000:.1f} ms of estimated task time",
              "(workers are chosen by each node at run time; plait.trace() shows which)"]
    return "\n".join(lines)
