"""A Picture as Graphviz DOT text: a ``subgraph cluster_<stage>`` per stage, colours per node.

For users who have Graphviz and want its layout (``dot -Tpdf plan.dot``); plait itself
never runs it. The picture is the same one the SVG shows, groups included, so a collapsed
plan of thousands of tasks stays a small file. All text goes through ``dot_string``.
"""

from __future__ import annotations

from plait.compiler.draw.picture import Edge, Lane, Picture, Vertex
from plait.compiler.draw.style import SAME_NODE, UNKNOWN, edge_width, node_colours, shade, tint
from plait.compiler.units import format_bytes

SHAPES = {"task": "box", "group": "box3d", "object": "cylinder"}


def dot_string(text: str) -> str:
    """``text`` as a quoted DOT string; newlines become DOT's ``\\n`` line breaks.

    >>> print(dot_string('a "b"\\\\c\\nd'))
    "a \\"b\\"\\\\c\\nd"
    """
    quoted = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + quoted.replace("\r", "") + '"'


def draw_dot(picture: Picture) -> str:
    """The whole graph; equal pictures give byte-equal text."""
    colours = node_colours(picture.nodes)
    lines = ["digraph plan {",
             f"  graph [label={dot_string('plait plan: ' + picture.summary)}, labelloc=t, "
             'fontname="Helvetica", rankdir=TB, newrank=true];',
             '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=9, arrowsize=0.7];']
    lines += [f"  // {node}: {colours[node]}" for node in picture.nodes]
    in_lane: dict[int, list[Vertex]] = {}
    for vertex in picture.vertices:
        if vertex.stage is not None:
            in_lane.setdefault(vertex.stage, []).append(vertex)
    for lane in picture.lanes:
        lines += _cluster(lane, in_lane.get(lane.index, []), colours)
    lines += ["  " + _vertex(v, colours) for v in picture.vertices if v.stage is None]
    lines += ["  " + _edge(e, colours) for e in picture.edges]
    return "\n".join(lines + ["}", ""])


def _cluster(lane: Lane, vertices: list[Vertex], colours: dict[str, str]) -> list[str]:
    colour = colours.get(lane.node, UNKNOWN)
    return ([f"  subgraph cluster_{lane.index} {{",
             f"    label={dot_string(lane.title)}; fontcolor=\"{shade(colour)}\"; "
             f'style="rounded,filled"; color="{colour}"; fillcolor="{tint(colour, 0.93)}";']
            + ["    " + _vertex(v, colours) for v in vertices] + ["  }"])


def _vertex(vertex: Vertex, colours: dict[str, str]) -> str:
    colour = colours.get(vertex.node, UNKNOWN)
    fill = tint(colour, 0.9 if vertex.kind == "object" else 0.75)
    style = '"filled"' if vertex.kind != "task" else '"rounded,filled"'
    label = dot_string(f"{vertex.label}\n{vertex.sublabel}")
    return (f"{dot_string(vertex.key)} [label={label}"
            f', shape={SHAPES[vertex.kind]}, style={style}, color="{colour}", '
            f'fillcolor="{fill}", tooltip={dot_string(vertex.details)}];')


def _edge(edge: Edge, colours: dict[str, str]) -> str:
    colour = colours.get(edge.src_node, UNKNOWN) if edge.crossing else SAME_NODE
    extra = ""
    if edge.crossing:
        extra = ", style=dashed"
    if edge.labelled:
        extra += f", label={dot_string(format_bytes(edge.nbytes))}, fontcolor=\"{shade(colour)}\""
    return (f"{dot_string(edge.src)} -> {dot_string(edge.dst)} [color=\"{colour}\", "
            f"penwidth={edge_width(edge):.1f}{extra}, tooltip={dot_string(edge.details)}];")
