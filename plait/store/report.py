"""Memory reports: ``plait.memory_summary()`` and ``plait memory`` print these tables."""

from __future__ import annotations

from collections.abc import Iterable

from plait.store.store import StoreSummary


def format_memory(nodes: Iterable[StoreSummary], largest: bool = True) -> str:
    lines = []
    for node in nodes:
        lines.append(
            f"{node.node}: {_size(node.used)} used of {_size(node.capacity)} "
            f"({100 * node.used / max(node.capacity, 1):.0f}%), {_size(node.pinned)} pinned, "
            f"{node.objects} objects in the store; spilled: {_size(node.spilled_bytes)} in "
            f"{node.spilled_objects} objects; since start: {_size(node.spilled_total)} "
            f"spilled at {node.spill_gbps:.2f} GB/s, {_size(node.restored_total)} restored at "
            f"{node.restore_gbps:.2f} GB/s")
        if largest and node.largest:
            lines.append("  largest objects:")
            lines += [f"    {o.id:<24} {_size(o.nbytes):>10}  {o.state:<8} created by "
                      f"{o.created_by or '?'}" for o in node.largest]
    return "\n".join(lines)


def _size(nbytes: float) -> str:
    """
    >>> _size(3 << 30), _size(1536)
    ('3.0 GiB', '1.5 KiB')
    """
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{int(nbytes)} B"
