"""Quantities as people read them: the one bytes formatter of the compiler's messages.

Placement reasons, ``plan.explain()`` and the plan's pictures all name sizes; they share
this formatter so a size reads the same in every place it appears.
"""

from __future__ import annotations

_UNITS = (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))


def format_bytes(nbytes: int) -> str:
    """Human-readable bytes, in binary units with one decimal.

    >>> format_bytes(512), format_bytes(1536), format_bytes(3 << 20), format_bytes(5 << 30)
    ('512 B', '1.5 KiB', '3.0 MiB', '5.0 GiB')
    """
    for unit, scale in _UNITS:
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"
