"""How a plan's picture looks, shared by the SVG and DOT renderers: node colours, arrow widths.

Colours are a fixed palette indexed by the node's place in the picture's (natural-sorted)
node list, so node-0 is blue and node-1 orange in every picture of a cluster. The first ten
are Tableau 10, chosen to stay apart for common colour blindness; beyond ten the hue walks
the golden angle so every node still gets its own colour, deterministically.
"""

from __future__ import annotations

import colorsys
import math

from plait.compiler.draw.picture import Edge

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
           "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")
UNKNOWN = "#8c8c8c"          # an object no node holds (a plan built by hand)
SAME_NODE = "#8a8a8a"        # arrows whose bytes stay on one node
THIN = 1.2                   # width of those arrows
THICK_MIN, THICK_MAX = 2.0, 9.0


def node_colours(nodes: tuple[str, ...]) -> dict[str, str]:
    """Node -> colour, by position in ``nodes``; '' (nobody holds it) is grey.

    >>> node_colours(("node-0", "node-1"))
    {'node-0': '#4e79a7', 'node-1': '#f28e2b', '': '#8c8c8c'}
    """
    colours = {node: palette_colour(i) for i, node in enumerate(nodes)}
    colours.setdefault("", UNKNOWN)
    return colours


def palette_colour(index: int) -> str:
    """The ``index``-th colour: Tableau 10, then golden-angle hues.

    >>> palette_colour(0), palette_colour(10) != palette_colour(11)
    ('#4e79a7', True)
    """
    if index < len(PALETTE):
        return PALETTE[index]
    hue = (index * 0.618033988749895) % 1.0
    return _hex(colorsys.hls_to_rgb(hue, 0.5, 0.55))


def mix(colour: str, other: str, share: float) -> str:
    """``colour`` moved ``share`` of the way toward ``other`` (tints and shades).

    >>> mix("#000000", "#ffffff", 0.5)
    '#808080'
    """
    a, b = _rgb(colour), _rgb(other)
    return _hex(tuple(x + (y - x) * share for x, y in zip(a, b, strict=True)))


def tint(colour: str, share: float = 0.8) -> str:
    return mix(colour, "#ffffff", share)


def shade(colour: str, share: float = 0.35) -> str:
    return mix(colour, "#000000", share)


def edge_width(edge: Edge) -> float:
    """Stroke width: thin inside a node; across nodes 2 px at 1 KiB, +0.3 px per doubling.

    Logarithmic (capped at 9 px), because the bytes a plan moves span kilobytes to gigabytes.

    >>> [round(edge_width(Edge("a", "b", n, 1, True, "x", "y", True, "")), 1)
    ...  for n in (1 << 10, 1 << 20, 1 << 30)]
    [2.0, 5.0, 8.0]
    """
    if not edge.crossing:
        return THIN
    steps = math.log2(max(edge.nbytes, 1) / 1024) if edge.nbytes > 1024 else 0.0
    return min(THICK_MAX, THICK_MIN + steps * 0.3)


def _rgb(colour: str) -> tuple[float, float, float]:
    value = int(colour.lstrip("#"), 16)
    return ((value >> 16 & 255) / 255, (value >> 8 & 255) / 255, (value & 255) / 255)


def _hex(rgb: tuple[float, ...]) -> str:
    return "#" + "".join(f"{round(max(0.0, min(1.0, c)) * 255):02x}" for c in rgb)
