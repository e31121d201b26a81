"""A Picture as SVG text: legend, a lane per stage, arrows, boxes, and hover details.

Drawn back to front: legend, lanes, arrows, lane titles, boxes, then the size labels of
transfers, so no arrow strikes out a title and no box hides a label. Every box and arrow
carries its details in a ``<title>`` child, which any SVG viewer shows on hover (the HTML
page turns them into a tooltip), and ``data-*`` attributes naming what it stands for. All
text from the plan is escaped here by ``xml_text`` / ``xml_attr``; nothing else writes plan
text into markup.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape

from plait.compiler.draw.layout import (EM_WIDTH, LANE_TITLE_SIZE, MARGIN, Box, Point, layout,
                                       text_width)
from plait.compiler.draw.picture import Edge, Lane, Picture, Vertex
from plait.compiler.draw.style import SAME_NODE, UNKNOWN, edge_width, node_colours, shade, tint
from plait.compiler.units import format_bytes

FONT = "Helvetica, Arial, sans-serif"
INK = "#222222"
MUTED = "#555555"
LEGEND_H = 60.0          # title line and key line above the drawing
SVG_NS = "http://www.w3.org/2000/svg"
LABEL_PLACES = (0.5, 0.38, 0.62, 0.26, 0.74, 0.14, 0.86, 0.5)   # along a curve; last: fallback
Rect = tuple[float, float, float, float]             # left, top, right, bottom

# Characters XML 1.0 forbids even escaped: C0 controls but tab/newline/return, lone
# surrogates, U+FFFE/U+FFFF. They are replaced, not dropped, so a reader sees something odd.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str) -> str:
    """``text`` safe inside an XML element.

    >>> xml_text("<lambda>-3 & co")
    '&lt;lambda&gt;-3 &amp; co'
    """
    return _NOT_XML.sub("\ufffd", escape(text))


def xml_attr(text: str) -> str:
    """``text`` safe inside a double-quoted XML attribute; newlines survive as ``&#10;``.

    >>> xml_attr('say "hi"\\nbye')
    'say &quot;hi&quot;&#10;bye'
    """
    return xml_text(text).replace('"', "&quot;").replace("\n", "&#10;").replace("\t", "&#9;")


def draw_svg(picture: Picture) -> str:
    """The whole drawing; equal pictures give byte-equal text."""
    colours = node_colours(picture.nodes)
    legend, legend_width = _legend(picture, colours)
    placed = layout(picture, top=MARGIN + LEGEND_H)
    width = max(placed.width, legend_width + 2 * MARGIN)
    markers: dict[str, str] = {}
    routes = [placed.routes[(e.src, e.dst)] for e in picture.edges]
    arrows = [_arrow(e, r, colours, markers) for e, r in zip(picture.edges, routes, strict=True)]
    sizes = _size_labels(list(picture.edges), routes, colours)
    return "\n".join([
        _open(width, placed.height, picture.summary), _defs(markers), legend,
        '<g class="plait-stages">',
        *(_lane(lane, placed.lanes[lane.index], colours) for lane in picture.lanes), "</g>",
        '<g class="plait-edges" fill="none">', *arrows, "</g>",
        f'<g class="plait-stage-titles" font-size="{LANE_TITLE_SIZE:.0f}" font-weight="bold" '
        'stroke-width="4" paint-order="stroke">',
        *(_lane_title(lane, placed.lanes[lane.index], colours) for lane in picture.lanes), "</g>",
        '<g class="plait-vertices">',
        *(_vertex(v, placed.boxes[v.key], colours) for v in picture.vertices), "</g>",
        '<g class="plait-sizes" font-size="10" text-anchor="middle" stroke="#ffffff" '
        'stroke-width="3" paint-order="stroke">', *sizes, "</g>", "</svg>", ""])


def _open(width: float, height: float, summary: str) -> str:
    return (f'<svg xmlns="{SVG_NS}" class="plait-plan-svg" width="{width:.0f}" '
            f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
            f'font-family="{FONT}" font-size="11" fill="{INK}">\n'
            f"<title>plait plan: {xml_text(summary)}</title>\n"
            f'<rect width="100%" height="100%" fill="#ffffff"/>')


def _defs(markers: dict[str, str]) -> str:
    return "<defs>" + "".join(markers[key] for key in sorted(markers)) + "</defs>"


# -- legend --------------------------------------------------------------------------------

def _legend(picture: Picture, colours: dict[str, str]) -> tuple[str, float]:
    """Title and summary, then a key: one swatch per node and what the shapes mean."""
    y = MARGIN + 14
    parts = ['<g class="plait-legend">',
             f'<text x="{MARGIN}" y="{y}" font-size="15" font-weight="bold">plait plan</text>',
             f'<text x="{MARGIN + 96}" y="{y}" font-size="12" fill="{MUTED}">'
             f"{xml_text(picture.summary)}</text>"]
    x, key_y = MARGIN, MARGIN + 32
    for node in picture.nodes:
        colour = colours[node]
        parts.append(f'<g class="plait-legend-node" data-node="{xml_attr(node)}">'
                     f'<rect x="{x}" y="{key_y}" width="14" height="14" rx="3" '
                     f'fill="{tint(colour)}" stroke="{colour}" stroke-width="1.5"/>'
                     f'<text x="{x + 20}" y="{key_y + 11}">{xml_text(node)}</text></g>')
        x = round(x + 20 + text_width(node, 11) + 18, 1)
    for swatch, meaning in _key(picture.collapsed):
        parts.append(swatch.format(x=x, y=key_y, x2=x + 30, ym=key_y + 7))
        parts.append(f'<text x="{x + 36}" y="{key_y + 11}" fill="{MUTED}">{meaning}</text>')
        x = round(x + 36 + text_width(meaning, 11) + 18, 1)
    parts.append("</g>")
    return "\n".join(parts), max(96 + text_width(picture.summary, 12), x - MARGIN)


def _key(collapsed: bool) -> list[tuple[str, str]]:
    """(swatch template, meaning) for the shapes and lines a reader must decode."""
    line = '<line x1="{x}" y1="{ym}" x2="{x2}" y2="{ym}" stroke="%s" stroke-width="%s"%s/>'
    key = [(line % (SAME_NODE, 1.2, ""), "same node: read in place"),
           (line % (MUTED, 4, ' stroke-dasharray="7 4"'),
            "transfer between nodes (width grows with bytes)"),
           ('<rect x="{x}" y="{y}" width="30" height="14" rx="7" fill="#ffffff" '
            f'stroke="{MUTED}"/>', "object from outside the plan")]
    if collapsed:
        key.append(('<rect x="{x}" y="{y}" width="30" height="14" rx="3" fill="#eeeeee" '
                    f'stroke="{MUTED}" stroke-width="2.5"/>', "name ×n: calls grouped"))
    return key


# -- lanes, arrows, boxes -----------------------------------------------------------------

def _lane(lane: Lane, box: Box, colours: dict[str, str]) -> str:
    colour = colours.get(lane.node, UNKNOWN)
    return (f'<g class="plait-stage" data-stage="{lane.index}" data-node="{xml_attr(lane.node)}">'
            f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" height="{box.h:.1f}" '
            f'rx="10" fill="{tint(colour, 0.93)}" stroke="{colour}" stroke-width="1.2"/></g>')


def _lane_title(lane: Lane, box: Box, colours: dict[str, str]) -> str:
    """Drawn over the arrows, haloed in the lane's fill, so an arrow never strikes it out."""
    colour = colours.get(lane.node, UNKNOWN)
    return (f'<text x="{box.x + 12:.1f}" y="{box.y + 18:.1f}" fill="{shade(colour)}" '
            f'stroke="{tint(colour, 0.93)}">{xml_text(lane.title)}</text>')


def _arrow(edge: Edge, route: tuple[Point, ...], colours: dict[str, str],
           markers: dict[str, str]) -> str:
    """One arrow; transfers are dashed in the source node's colour, width by bytes."""
    colour = colours.get(edge.src_node, UNKNOWN) if edge.crossing else SAME_NODE
    width = edge_width(edge)
    marker = _marker(colour, width, markers)
    dash = ' stroke-dasharray="8 5"' if edge.crossing else ""
    kind = "plait-edge plait-transfer" if edge.crossing else "plait-edge"
    return (f'<g class="{kind}" data-src="{xml_attr(edge.src)}" data-dst="{xml_attr(edge.dst)}">'
            f"<title>{xml_text(edge.details)}</title>"
            f'<path d="{_path(route)}" stroke="{colour}" '
            f'stroke-width="{width:.1f}"{dash} marker-end="url(#{marker})"/></g>')


def _marker(colour: str, width: float, markers: dict[str, str]) -> str:
    """Id of an arrowhead sized for ``width`` (one per colour and whole width, made once)."""
    size = 8 + 1.6 * round(width)
    key = f"plait-arrow-{colour.lstrip('#')}-{round(width)}"
    markers.setdefault(key, f'<marker id="{key}" viewBox="0 0 10 10" refX="9" refY="5" '
                            f'markerWidth="{size:.1f}" markerHeight="{size:.1f}" '
                            f'markerUnits="userSpaceOnUse" orient="auto">'
                            f'<path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>')
    return key


def _path(route: tuple[Point, ...]) -> str:
    """Curves from each point to the next bend's top (or the end), straight down each bend.

    >>> _path(((0.0, 0.0), (10.0, 40.0)))
    'M0.0,0.0 C0.0,24.0 10.0,16.0 10.0,40.0'
    """
    steps = [f"M{route[0][0]:.1f},{route[0][1]:.1f}"]
    for i in range(1, len(route)):
        (x, y), (nx, ny) = route[i - 1], route[i]
        if i % 2 == 0:      # from a bend's top straight down to its bottom
            steps.append(f"L{nx:.1f},{ny:.1f}")
        else:
            c1, c2 = _controls(y, ny)
            steps.append(f"C{x:.1f},{c1:.1f} {nx:.1f},{c2:.1f} {nx:.1f},{ny:.1f}")
    return " ".join(steps)


def _controls(y: float, ny: float) -> tuple[float, float]:
    """The y of a curve's two control points: vertical at both ends, looping when backward."""
    bend = max(24.0, (ny - y) / 2) if ny > y else 80.0
    return y + bend, ny - bend


def _point(a: Point, b: Point, t: float) -> Point:
    """The point at ``t`` of the curve ``_path`` draws from ``a`` to ``b``."""
    c1, c2 = _controls(a[1], b[1])
    s = 1 - t
    weights = (s * s * s, 3 * s * s * t, 3 * s * t * t, t * t * t)
    return (sum(w * v for w, v in zip(weights, (a[0], a[0], b[0], b[0]), strict=True)),
            sum(w * v for w, v in zip(weights, (a[1], c1, c2, b[1]), strict=True)))


def _size_labels(edges: list[Edge], routes: list[tuple[Point, ...]],
                 colours: dict[str, str]) -> list[str]:
    """Each transfer's size on its last curve (the gap above its target), slid along the
    curve away from labels already placed. Placed labels are bucketed by position, so the
    check stays linear in their number."""
    taken: dict[tuple[int, int], list[Rect]] = {}
    labels = []
    for edge, route in zip(edges, routes, strict=True):
        if not edge.labelled:
            continue
        text = format_bytes(edge.nbytes)
        half_w, half_h = text_width(text, 10) / 2 + 2, 7.0
        for t in LABEL_PLACES:
            x, y = _point(route[-2], route[-1], t)
            rect = (x - half_w, y - half_h, x + half_w, y + half_h)
            if not _collides(rect, taken):
                break
        _claim(rect, taken)
        colour = shade(colours.get(edge.src_node, UNKNOWN))
        labels.append(f'<text x="{x:.1f}" y="{y + 3.5:.1f}" fill="{colour}">'
                      f"{xml_text(text)}</text>")
    return labels


def _buckets(rect: Rect) -> list[tuple[int, int]]:
    return [(i, j) for i in range(int(rect[0] // 100), int(rect[2] // 100) + 1)
            for j in range(int(rect[1] // 100), int(rect[3] // 100) + 1)]


def _collides(rect: Rect, taken: dict[tuple[int, int], list[Rect]]) -> bool:
    return any(rect[0] < o[2] and o[0] < rect[2] and rect[1] < o[3] and o[1] < rect[3]
               for bucket in _buckets(rect) for o in taken.get(bucket, ()))


def _claim(rect: Rect, taken: dict[tuple[int, int], list[Rect]]) -> None:
    for bucket in _buckets(rect):
        taken.setdefault(bucket, []).append(rect)


def _vertex(vertex: Vertex, box: Box, colours: dict[str, str]) -> str:
    colour = colours.get(vertex.node, UNKNOWN)
    what = {"task": f' data-task="{xml_attr(vertex.label)}"',
            "group": f' data-count="{len(vertex.members)}"', "object": ""}[vertex.kind]
    big, small = (10, 9) if vertex.kind == "object" else (11, 10)
    return (f'<g class="plait-vertex plait-{vertex.kind}" data-key="{xml_attr(vertex.key)}" '
            f'data-node="{xml_attr(vertex.node)}"{what}>'
            f"<title>{xml_text(vertex.details)}</title>{_shape(vertex.kind, box, colour)}"
            f'<text x="{box.cx:.1f}" y="{box.y + box.h / 2 - 3:.1f}" text-anchor="middle" '
            f'font-size="{big}" font-weight="bold">{xml_text(_fit(vertex.label, box, big))}</text>'
            f'<text x="{box.cx:.1f}" y="{box.y + box.h / 2 + 10:.1f}" text-anchor="middle" '
            f'font-size="{small}" fill="{MUTED}">{xml_text(_fit(vertex.sublabel, box, small))}'
            "</text></g>")


def _shape(kind: str, box: Box, colour: str) -> str:
    """Task: a rounded box; group: a stack of three; object: a pill."""
    def rect(dx: float, dy: float, fill: str, rx: float = 6.0) -> str:
        return (f'<rect x="{box.x + dx:.1f}" y="{box.y + dy:.1f}" width="{box.w:.1f}" '
                f'height="{box.h:.1f}" rx="{rx:.1f}" fill="{fill}" stroke="{colour}" '
                f'stroke-width="1.5"/>')

    if kind == "object":
        return rect(0, 0, tint(colour, 0.9), box.h / 2)
    if kind == "group":
        return rect(6, -6, tint(colour, 0.55)) + rect(3, -3, tint(colour, 0.65)) + \
            rect(0, 0, tint(colour, 0.72))
    return rect(0, 0, tint(colour, 0.8))


def _fit(text: str, box: Box, size: float) -> str:
    """``text`` cut with an ellipsis to fit ``box`` (the full text is in the hover details)."""
    room = max(3, int((box.w - 14) / (size * EM_WIDTH)))
    return text if len(text) <= room else text[:room - 1] + "…"
