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


# Units a size may be written in, as Dask's ``parse_bytes`` reads them: decimal (kB, MB,
# GB, TB; k, M, G, T alone) and binary (KiB, MiB, GiB, TiB), any case; a bare number is bytes.
_SIZE_UNITS = {"": 1, "b": 1,
               **{p + "b": 1000 ** (i + 1) for i, p in enumerate("kmgt")},
               **{p: 1000 ** (i + 1) for i, p in enumerate("kmgt")},
               **{p + "ib": 1 << (10 * (i + 1)) for i, p in enumerate("kmgt")}}


def parse_bytes(size: int | str) -> int:
    """A size in bytes: an int as given, or a string with a unit.

    >>> parse_bytes(512), parse_bytes("512MiB"), parse_bytes("2GB"), parse_bytes("1.5 kib")
    (512, 536870912, 2000000000, 1536)
    >>> parse_bytes("2 parsecs")
    Traceback (most recent call last):
    ...
    ValueError: cannot read '2 parsecs' as a size: write bytes, or a number with a unit ...
    """
    if isinstance(size, bool) or not isinstance(size, int | str):
        raise TypeError(f"a size is an int of bytes or a string such as '2GB', "
                        f"got {size!r}")
    if isinstance(size, int):
        return size
    text = size.strip().lower().replace(" ", "")
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    scale = _SIZE_UNITS.get(text[len(number):])
    try:
        value = float(number)
    except ValueError:
        value = None
    if scale is None or value is None or value < 0:
        raise ValueError(f"cannot read {size!r} as a size: write bytes, or a number with a "
                         f"unit such as 512MiB or 2GB (kB MB GB TB are powers of 1000, KiB "
                         f"MiB GiB TiB of 1024)")
    return int(value * scale)
