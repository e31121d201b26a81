"""Where each box and arrow of a Picture goes: a layered layout in pure Python, no Graphviz.

Tasks flow top to bottom; each stage is a vertical lane, lanes side by side in stage order,
so a stage's box never overlaps another's and an arrow that crosses lanes is (usually) a
transfer between nodes::

    top ->  objects band: external objects, each above the mean x of its readers
            +- stage 0 · node-0 --+ +- stage 1 · node-1 --+
    layer 0 |  [a]  [b]           | |  [c]                |
    layer 1 |  [d]   :            | |  [e]  [f]  [g]      |   ':' a bend point of a long
            +--------|------------+ +---------------------+   arrow; a cell wraps after
                                                               PER_ROW boxes
1. Layer: longest path from the sources, visiting vertices in rank (topological) order; an
   arrow pointing back (possible only between groups of a collapsed picture) is ignored.
2. Bends: an arrow spanning several layers gets a narrow slot in every layer it passes, in
   the target's lane (the Sugiyama "dummy vertex"), so it runs between boxes, not through them.
3. Cells: the boxes and bends of one (stage, layer), centred in the lane. Above PER_ROW boxes
   a cell wraps into rows and its bends stand in a column beside them.
4. Order within each cell by barycenter (mean x of the neighbours already placed): a down
   sweep, an up sweep, a down sweep; ties break on rank, so the result is deterministic.
5. External objects: one row nudged toward their readers, or wrapped rows when too many.
6. Routes: each arrow's points, its ends spread along the boxes' edges in the order of where
   the arrows come from, so arrows meeting one box do not pile onto one point.

Each sweep costs O(slots log slots); bends are capped at MAX_BENDS (past the cap a long arrow
is drawn straight), so a 10,000-task plan lays out in milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from plait.compiler.picture import Edge, Lane, Picture, Vertex

TASK_W, TASK_H = 160.0, 40.0
OBJECT_W, OBJECT_H = 132.0, 32.0
BEND_W = 16.0           # the slot a long arrow takes in a layer it passes
GAP_X = 18.0            # between boxes side by side, and between lanes
ROW_GAP = 16.0          # between wrapped rows of one cell
LAYER_GAP = 60.0        # between layers: room for arrows and their size labels
LANE_PAD = 14.0
LANE_TITLE_H = 24.0
LANE_TITLE_SIZE = 12.0  # px; the renderer draws lane titles at this size
MARGIN = 16.0
PER_ROW = 8
MAX_BENDS = 20_000
EM_WIDTH = 0.6          # mean glyph width of a sans-serif face, in ems (an estimate)

Point = tuple[float, float]
Cell = tuple[int, int]  # (stage, layer)


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned rectangle in SVG user units (y grows downward)."""

    x: float
    y: float
    w: float
    h: float

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def bottom(self) -> float:
        return self.y + self.h


@dataclass(frozen=True)
class Layout:
    """Boxes by vertex key, lanes by stage index, routes by (src, dst), the drawing's size.

    A route is the points an arrow passes: its start, then a (top, bottom) pair for each
    layer it runs through, then its end; the renderer curves from a point to the next top
    and runs straight from a top to its bottom.
    """

    width: float
    height: float
    boxes: dict[str, Box]
    lanes: dict[int, Box]
    routes: dict[tuple[str, str], tuple[Point, ...]]


def text_width(text: str, size: float) -> float:
    """Estimated width of ``text`` at font ``size`` px (no font metrics in pure Python).

    >>> text_width("stage 0", 10.0)
    42.0
    """
    return len(text) * size * EM_WIDTH


def layout(picture: Picture, top: float = MARGIN) -> Layout:
    """Place every vertex and arrow of ``picture`` below ``top`` (the legend sits above)."""
    tasks = [v for v in picture.vertices if v.stage is not None]
    objects = [v for v in picture.vertices if v.stage is None]
    stage = {v.key: v.stage for v in tasks}
    layer = _layers(tasks, _neighbours(picture.edges)[0])
    cells = _cells(tasks, layer)
    bends = _bends(picture.edges, layer, stage, cells)
    preds, succs = _chained(picture.edges, bends)
    lanes_x = _lane_columns(picture.lanes, cells)
    width = max((x + w for x, w in lanes_x.values()), default=MARGIN + OBJECT_W) + MARGIN
    band = _object_rows(len(objects), width) * (OBJECT_H + ROW_GAP) - ROW_GAP
    lanes_top = top + (band + LAYER_GAP if objects else 0.0)
    grid = _Grid(cells, lanes_x, _layer_rows(cells, lanes_top + LANE_TITLE_H + LANE_PAD),
                 {v.key: v.rank for v in tasks})
    for neighbours, downward in ((preds, True), (succs, False), (preds, True)):
        grid.sweep(neighbours, downward)
    boxes = {k: b for k, b in grid.boxes.items() if k in stage}
    boxes.update(_object_boxes(objects, succs, grid.boxes, width, top))
    bottom = max((b.bottom for b in grid.boxes.values()), default=lanes_top + LANE_TITLE_H)
    bottom += LANE_PAD
    lanes = {s: Box(x, lanes_top, w, bottom - lanes_top) for s, (x, w) in lanes_x.items()}
    height = max(bottom, max((b.bottom for b in boxes.values()), default=top)) + MARGIN
    routes = _routes(picture.edges, boxes, {k: grid.boxes[k] for k in grid.bends}, bends)
    return Layout(width, height, boxes, lanes, routes)


def _neighbours(edges: Sequence[Edge]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    preds: dict[str, list[str]] = {}
    succs: dict[str, list[str]] = {}
    for edge in edges:
        preds.setdefault(edge.dst, []).append(edge.src)
        succs.setdefault(edge.src, []).append(edge.dst)
    return preds, succs


def _layers(tasks: Sequence[Vertex], preds: dict[str, list[str]]) -> dict[str, int]:
    """Longest path from a source; predecessors not yet visited (back arrows) do not count."""
    layer: dict[str, int] = {}
    for vertex in tasks:
        above = [layer[u] for u in preds.get(vertex.key, ()) if u in layer]
        layer[vertex.key] = max(above) + 1 if above else 0
    return layer


def _cells(tasks: Sequence[Vertex], layer: dict[str, int]) -> dict[Cell, list[str]]:
    """(stage, layer) -> vertex keys, first in rank order."""
    cells: dict[Cell, list[str]] = {}
    for vertex in tasks:
        assert vertex.stage is not None
        cells.setdefault((vertex.stage, layer[vertex.key]), []).append(vertex.key)
    return cells


def _bends(edges: Sequence[Edge], layer: dict[str, int], stage: dict[str, int | None],
           cells: dict[Cell, list[str]]) -> dict[tuple[str, str], list[str]]:
    """Bend slots for each arrow that skips layers, added to the target lane's cells.

    An object sits above layer 0, so its arrow to a task in layer L passes layers 0..L-1.
    """
    bends: dict[tuple[str, str], list[str]] = {}
    budget = MAX_BENDS
    for number, edge in enumerate(edges):
        target = stage.get(edge.dst)
        first = layer[edge.src] + 1 if edge.src in layer else 0
        passes = range(first, layer.get(edge.dst, 0))
        if target is None or not passes or len(passes) > budget:
            continue
        budget -= len(passes)
        keys = [f"~{number}:{at}" for at in passes]
        for key, at in zip(keys, passes, strict=True):
            cells.setdefault((target, at), []).append(key)
        bends[(edge.src, edge.dst)] = keys
    return bends


def _chained(edges: Sequence[Edge], bends: dict[tuple[str, str], list[str]]
             ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Neighbours for the sweeps: an arrow with bends is the chain src -> bend ... -> dst."""
    preds: dict[str, list[str]] = {}
    succs: dict[str, list[str]] = {}
    for edge in edges:
        chain = [edge.src, *bends.get((edge.src, edge.dst), ()), edge.dst]
        for a, b in zip(chain, chain[1:], strict=False):
            preds.setdefault(b, []).append(a)
            succs.setdefault(a, []).append(b)
    return preds, succs


def _is_bend(key: str) -> bool:
    return key.startswith("~")


def _cell_width(keys: Sequence[str]) -> float:
    """Width of a cell's widest row of boxes plus its column of bends."""
    bends = sum(1 for key in keys if _is_bend(key))
    boxes = min(len(keys) - bends, PER_ROW)
    return max(boxes * (TASK_W + GAP_X) - GAP_X, 0.0) + bends * BEND_W


def _lane_columns(lanes: Sequence[Lane],
                  cells: dict[Cell, list[str]]) -> dict[int, tuple[float, float]]:
    """Stage -> (x, width): wide enough for its widest cell and for its title."""
    inner = {lane.index: max(TASK_W, text_width(lane.title, LANE_TITLE_SIZE)) for lane in lanes}
    for (stage, _), keys in cells.items():
        inner[stage] = max(inner.get(stage, TASK_W), _cell_width(keys))
    placed: dict[int, tuple[float, float]] = {}
    x = MARGIN
    for stage in sorted(inner):
        placed[stage] = (x, inner[stage] + 2 * LANE_PAD)
        x += inner[stage] + 2 * LANE_PAD + GAP_X
    return placed


def _layer_rows(cells: dict[Cell, list[str]], start: float) -> dict[int, tuple[float, float]]:
    """Layer -> (y of its top, its height); a layer is as tall as its most wrapped cell."""
    rows: dict[int, int] = {}
    for (_, layer), keys in cells.items():
        boxes = sum(1 for key in keys if not _is_bend(key))
        rows[layer] = max(rows.get(layer, 1), math.ceil(boxes / PER_ROW))
    placed: dict[int, tuple[float, float]] = {}
    y = start
    for layer in sorted(rows):
        height = rows[layer] * (TASK_H + ROW_GAP) - ROW_GAP
        placed[layer] = (y, height)
        y += height + LAYER_GAP
    return placed


class _Grid:
    """Boxes and bends in their cells; ``sweep`` reorders each cell by barycenter."""

    def __init__(self, cells: dict[Cell, list[str]], lanes_x: dict[int, tuple[float, float]],
                 rows: dict[int, tuple[float, float]], rank: dict[str, int]) -> None:
        self.cells = cells
        self.lanes_x = lanes_x
        self.rows = rows
        self.rank = rank
        self.boxes: dict[str, Box] = {}
        self.bends: set[str] = {k for keys in cells.values() for k in keys if _is_bend(k)}
        self.by_layer: dict[int, list[Cell]] = {}
        for cell in sorted(cells):
            self.by_layer.setdefault(cell[1], []).append(cell)
            self._place(cell)

    def sweep(self, neighbours: dict[str, list[str]], downward: bool) -> None:
        """Sort every cell, layer by layer, by the mean x of each slot's placed neighbours."""
        for layer in sorted(self.by_layer, reverse=not downward):
            for cell in self.by_layer[layer]:
                keys = self.cells[cell]
                score = {key: self._barycenter(key, neighbours) for key in keys}
                keys.sort(key=lambda key: (score[key], self.rank.get(key, -1), key))
                self._place(cell)

    def _barycenter(self, key: str, neighbours: dict[str, list[str]]) -> float:
        xs = [self.boxes[n].cx for n in neighbours.get(key, ()) if n in self.boxes]
        return sum(xs) / len(xs) if xs else self.boxes[key].cx

    def _place(self, cell: Cell) -> None:
        """One cell in its current order: a row of boxes and bends, or wrapped rows of boxes
        with the bends in a column on their right; centred in the lane either way."""
        keys = self.cells[cell]
        lane_x, lane_w = self.lanes_x[cell[0]]
        top, height = self.rows[cell[1]]
        x = lane_x + (lane_w - _cell_width(keys)) / 2
        wrapped = sum(1 for key in keys if not _is_bend(key)) > PER_ROW
        if wrapped:
            self._place_rows([k for k in keys if not _is_bend(k)], x, top)
            x += PER_ROW * (TASK_W + GAP_X) - GAP_X
        for key in keys:
            if _is_bend(key):
                self.boxes[key] = Box(x, top, BEND_W, height)
                x += BEND_W
            elif not wrapped:
                self.boxes[key] = Box(x, top, TASK_W, TASK_H)
                x += TASK_W + GAP_X

    def _place_rows(self, keys: list[str], left: float, top: float) -> None:
        full = PER_ROW * (TASK_W + GAP_X) - GAP_X
        for i, key in enumerate(keys):
            row, column = divmod(i, PER_ROW)
            in_row = min(PER_ROW, len(keys) - row * PER_ROW)
            x = left + (full - (in_row * (TASK_W + GAP_X) - GAP_X)) / 2
            self.boxes[key] = Box(x + column * (TASK_W + GAP_X),
                                  top + row * (TASK_H + ROW_GAP), TASK_W, TASK_H)


def _objects_per_row(width: float) -> int:
    return max(1, int((width - 2 * MARGIN + GAP_X) // (OBJECT_W + GAP_X)))


def _object_rows(count: int, width: float) -> int:
    return math.ceil(count / _objects_per_row(width)) if count else 0


def _object_boxes(objects: Sequence[Vertex], succs: dict[str, list[str]],
                  boxes: dict[str, Box], width: float, top: float) -> dict[str, Box]:
    """External objects above the lanes, in order of their readers' mean x."""
    def wanted(vertex: Vertex) -> float:
        xs = [boxes[k].cx for k in succs.get(vertex.key, ()) if k in boxes]
        return sum(xs) / len(xs) if xs else width / 2

    ordered = sorted((wanted(v), v.rank, v.key) for v in objects)
    per_row = _objects_per_row(width)
    if len(ordered) > per_row:
        return {key: Box(MARGIN + (i % per_row) * (OBJECT_W + GAP_X),
                         top + (i // per_row) * (OBJECT_H + ROW_GAP), OBJECT_W, OBJECT_H)
                for i, (_, _, key) in enumerate(ordered)}
    xs = _spread([x - OBJECT_W / 2 for x, _, _ in ordered], OBJECT_W + GAP_X,
                 MARGIN, width - MARGIN - OBJECT_W)
    return {key: Box(x, top, OBJECT_W, OBJECT_H)
            for x, (_, _, key) in zip(xs, ordered, strict=True)}


def _spread(wanted: list[float], step: float, low: float, high: float) -> list[float]:
    """Sorted positions moved as little as needed to be ``step`` apart within [low, high].

    >>> _spread([0.0, 5.0, 100.0], 10.0, 0.0, 100.0)
    [0.0, 10.0, 100.0]
    >>> _spread([95.0, 99.0], 10.0, 0.0, 100.0)
    [90.0, 100.0]
    """
    xs: list[float] = []
    for x in wanted:
        xs.append(max(x, low, xs[-1] + step if xs else low))
    for i in range(len(xs) - 1, -1, -1):
        xs[i] = min(xs[i], high if i == len(xs) - 1 else xs[i + 1] - step)
    return xs


# -- routes --------------------------------------------------------------------------------

def _routes(edges: Sequence[Edge], boxes: dict[str, Box], bend_boxes: dict[str, Box],
            bends: dict[tuple[str, str], list[str]]) -> dict[tuple[str, str], tuple[Point, ...]]:
    """Each arrow's points, its two ends on ports spread along the boxes' bottom and top."""
    middle: dict[tuple[str, str], list[Point]] = {}
    for edge in edges:
        pair = (edge.src, edge.dst)
        middle[pair] = [point for key in bends.get(pair, ())
                        for point in ((bend_boxes[key].cx, bend_boxes[key].y),
                                      (bend_boxes[key].cx, bend_boxes[key].bottom))]
    start = _ports(edges, boxes, middle, outgoing=True)
    end = _ports(edges, boxes, middle, outgoing=False)
    return {pair: (start[pair], *points, end[pair]) for pair, points in middle.items()}


def _ports(edges: Sequence[Edge], boxes: dict[str, Box], middle: dict[tuple[str, str],
           list[Point]], outgoing: bool) -> dict[tuple[str, str], Point]:
    """Where each arrow leaves its source (outgoing) or meets its target, left to right in
    the order of the x each arrow heads to or comes from."""
    at: dict[str, list[tuple[float, str, tuple[str, str]]]] = {}
    for edge in edges:
        pair = (edge.src, edge.dst)
        own, other = (edge.src, edge.dst) if outgoing else (edge.dst, edge.src)
        points = middle[pair]
        toward = (points[0] if outgoing else points[-1])[0] if points else boxes[other].cx
        at.setdefault(own, []).append((toward, other, pair))
    ports: dict[tuple[str, str], Point] = {}
    for key, arrows in at.items():
        box = boxes[key]
        arrows.sort()
        y = box.bottom if outgoing else box.y
        for i, (_, _, pair) in enumerate(arrows):
            share = 0.5 if len(arrows) == 1 else 0.2 + 0.6 * i / (len(arrows) - 1)
            ports[pair] = (box.x + box.w * share, y)
    return ports
