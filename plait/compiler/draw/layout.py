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
   a cell wraps into rows, staggered like bricks, and its bends stand in a column beside them.
4. Order within each cell by barycenter (mean x of the neighbours already placed): a down
   sweep, an up sweep, a down sweep; ties break on rank, so the result is deterministic.
5. External objects: one row nudged toward their readers, or several rows when too many.
6. Routes: each arrow's points. An arrow leaving or entering a box in a stack of rows (a
   wrapped cell, the objects band) threads the gap nearest its path in each row it crosses;
   its ends are spread along the boxes' edges in the order of where the arrows come from,
   so arrows meeting one box do not pile onto one point.

Each sweep costs O(slots log slots); bends are capped at MAX_BENDS (past the cap a long arrow
is drawn straight), so a 10,000-task plan lays out in milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from plait.compiler.draw.picture import Edge, Lane, Picture, Vertex

TASK_W, TASK_H = 160.0, 40.0
OBJECT_W, OBJECT_H = 132.0, 32.0
BEND_W = 12.0           # the slot a long arrow takes in a layer it passes
GAP_X = 18.0            # between boxes side by side, and between lanes
ROW_GAP = 34.0          # between wrapped rows: room for arrows to pass between boxes
LAYER_GAP = 60.0        # between layers: room for arrows and their size labels
LANE_PAD = 14.0
LANE_TITLE_H = 24.0
LANE_TITLE_SIZE = 12.0  # px; the renderer draws lane titles at this size
MARGIN = 16.0
PER_ROW = 8
MAX_BENDS = 20_000
STACK = 6.0             # a group's box is a stack of cards reaching this far up and right
EM_WIDTH = 0.6          # mean glyph width of a sans-serif face, in ems (an estimate)

Point = tuple[float, float]
Cell = tuple[int, int]  # (stage, layer)
SLOT = TASK_W + GAP_X


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
    layer = _layers(tasks, picture.edges)
    cells = _cells(tasks, layer)
    bends = _bends(picture.edges, layer, {v.key: v.stage for v in tasks}, cells)
    lanes_x = _lane_columns(picture.lanes, cells)
    width = max((x + w for x, w in lanes_x.values()), default=MARGIN + OBJECT_W) + MARGIN
    band = _object_rows(len(objects), width) * (OBJECT_H + ROW_GAP) - ROW_GAP
    lanes_top = top + (band + LAYER_GAP if objects else 0.0)
    grid = _Grid(cells, lanes_x, _layer_rows(cells, lanes_top + LANE_TITLE_H + LANE_PAD),
                 {v.key: v.rank for v in tasks})
    succs = grid.arrange(_chained(picture.edges, bends))
    boxes = {v.key: grid.boxes[v.key] for v in tasks}
    object_boxes, object_rows = _object_boxes(objects, succs, grid.boxes, width, top)
    bottom = max((b.bottom for b in grid.boxes.values()), default=lanes_top + LANE_TITLE_H)
    bottom += LANE_PAD
    lanes = {s: Box(x, lanes_top, w, bottom - lanes_top) for s, (x, w) in lanes_x.items()}
    height = max([bottom, *(b.bottom for b in object_boxes.values())]) + MARGIN
    boxes.update(object_boxes)
    passes = _Passes([*grid.stacks.values(), object_rows], boxes)
    routes = _routes(picture.edges, boxes, {k: grid.boxes[k] for k in grid.bends}, bends,
                     passes, {v.key for v in tasks if v.kind == "group"})
    return Layout(width, height, boxes, lanes, routes)


def _layers(tasks: Sequence[Vertex], edges: Sequence[Edge]) -> dict[str, int]:
    """Longest path from a source; predecessors not yet visited (back arrows) do not count."""
    preds: dict[str, list[str]] = {}
    for edge in edges:
        preds.setdefault(edge.dst, []).append(edge.src)
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


def _gap_after(key: str) -> float:
    """Room kept after a slot: a box keeps GAP_X, a bend's width already includes its own."""
    return 0.0 if _is_bend(key) else GAP_X


def _cell_width(keys: Sequence[str]) -> float:
    """Width of a cell: its row of boxes (or staggered rows) plus its column of bends, each
    slot with the room kept after it (so a cell fits its lane in any order)."""
    bends = sum(1 for key in keys if _is_bend(key))
    boxes = len(keys) - bends
    return (PER_ROW * SLOT + SLOT / 2 if boxes > PER_ROW else boxes * SLOT) + bends * BEND_W


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
        self.stacks: dict[Cell, list[list[str]]] = {}   # wrapped cells: keys row by row
        self.by_layer: dict[int, list[Cell]] = {}
        for cell in sorted(cells):
            self.by_layer.setdefault(cell[1], []).append(cell)
            self._place(cell)

    def arrange(self, chained: tuple[dict[str, list[str]], dict[str, list[str]]]
                ) -> dict[str, list[str]]:
        """Order cells (down, up, down), then align slots (down, up, both ways); returns the
        successors, which place the objects above."""
        preds, succs = chained
        for neighbours, downward in ((preds, True), (succs, False), (preds, True)):
            self.sweep(neighbours, downward)
        both = {k: preds.get(k, []) + succs.get(k, []) for k in self.boxes}
        for neighbours, downward in ((preds, True), (succs, False), (both, True)):
            self.align(neighbours, downward)
        return succs

    def sweep(self, neighbours: dict[str, list[str]], downward: bool) -> None:
        """Sort every cell, layer by layer, by the mean x of each slot's placed neighbours."""
        for layer in sorted(self.by_layer, reverse=not downward):
            for cell in self.by_layer[layer]:
                keys = self.cells[cell]
                score = {key: self._barycenter(key, neighbours) for key in keys}
                keys.sort(key=lambda key: (score[key], self.rank.get(key, -1), key))
                self._place(cell)

    def align(self, neighbours: dict[str, list[str]], downward: bool) -> None:
        """Keep each cell's order but slide its slots toward their neighbours' mean x, as
        close as the order and the lane allow: long arrows straighten, boxes line up."""
        for layer in sorted(self.by_layer, reverse=not downward):
            for cell in self.by_layer[layer]:
                keys = self.cells[cell]
                if sum(1 for key in keys if not _is_bend(key)) > PER_ROW:
                    continue   # wrapped cells stay packed
                widths = [self.boxes[key].w for key in keys]
                wanted = [self._barycenter(key, neighbours) - w / 2
                          for key, w in zip(keys, widths, strict=True)]
                lane_x, lane_w = self.lanes_x[cell[0]]
                xs = _spread(wanted, [w + _gap_after(k) for k, w in zip(keys, widths,
                                                                       strict=True)],
                             lane_x + LANE_PAD, lane_x + lane_w - LANE_PAD - widths[-1])
                for key, x in zip(keys, xs, strict=True):
                    box = self.boxes[key]
                    self.boxes[key] = Box(x, box.y, box.w, box.h)

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
            self.stacks[cell] = self._place_rows([k for k in keys if not _is_bend(k)], x, top)
            x += PER_ROW * SLOT + SLOT / 2
        for key in keys:
            if _is_bend(key):
                self.boxes[key] = Box(x, top, BEND_W, height)
                x += BEND_W
            elif not wrapped:
                self.boxes[key] = Box(x, top, TASK_W, TASK_H)
                x += SLOT

    def _place_rows(self, keys: list[str], left: float, top: float) -> list[list[str]]:
        """Rows of PER_ROW boxes, every other row shifted half a slot, so a box below sits
        under a gap of the row above and arrows reach it between boxes."""
        rows = [keys[i:i + PER_ROW] for i in range(0, len(keys), PER_ROW)]
        for r, row in enumerate(rows):
            x = left + (r % 2) * SLOT / 2
            for column, key in enumerate(row):
                self.boxes[key] = Box(x + column * SLOT, top + r * (TASK_H + ROW_GAP),
                                      TASK_W, TASK_H)
        return rows


def _objects_per_row(width: float) -> int:
    return max(1, int((width - 2 * MARGIN + GAP_X) // (OBJECT_W + GAP_X)))


def _object_rows(count: int, width: float) -> int:
    return math.ceil(count / _objects_per_row(width)) if count else 0


def _object_boxes(objects: Sequence[Vertex], succs: dict[str, list[str]],
                  boxes: dict[str, Box], width: float,
                  top: float) -> tuple[dict[str, Box], list[list[str]]]:
    """External objects above the lanes, each as near its readers' mean x as room allows.

    Too many for one row: sorted by that x and dealt to the rows in turn, so every row
    stays in reader order and spreads over the whole width.
    """
    def wanted(vertex: Vertex) -> float:
        xs = [boxes[k].cx for k in succs.get(vertex.key, ()) if k in boxes]
        return sum(xs) / len(xs) if xs else width / 2

    ordered = sorted((wanted(v), v.rank, v.key) for v in objects)
    rows = _object_rows(len(ordered), width)
    placed: dict[str, Box] = {}
    stack = [[key for _, _, key in ordered[row::rows]] for row in range(rows)]
    for row in range(rows):
        dealt = ordered[row::rows]
        xs = _spread([x - OBJECT_W / 2 for x, _, _ in dealt], [OBJECT_W + GAP_X] * len(dealt),
                     MARGIN, width - MARGIN - OBJECT_W)
        y = top + row * (OBJECT_H + ROW_GAP)
        placed.update((key, Box(x, y, OBJECT_W, OBJECT_H))
                      for x, (_, _, key) in zip(xs, dealt, strict=True))
    return placed, stack


def _spread(wanted: list[float], advances: list[float], low: float,
            high: float) -> list[float]:
    """Positions in order, each at least its ``advance`` before the next, moved as little as
    needed from ``wanted`` to fit: the first at or after ``low``, the last at or before ``high``.

    >>> _spread([0.0, 5.0, 100.0], [10.0] * 3, 0.0, 100.0)
    [0.0, 10.0, 100.0]
    >>> _spread([95.0, 99.0], [10.0] * 2, 0.0, 100.0)
    [90.0, 100.0]
    """
    xs: list[float] = []
    for i, x in enumerate(wanted):
        xs.append(max(x, low, xs[-1] + advances[i - 1] if xs else low))
    for i in range(len(xs) - 1, -1, -1):
        xs[i] = min(xs[i], high if i == len(xs) - 1 else xs[i + 1] - advances[i])
    return xs


# -- routes --------------------------------------------------------------------------------

class _Passes:
    """Stacks of rows (wrapped cells, the objects band) and how arrows thread through them."""

    def __init__(self, stacks: Sequence[list[list[str]]], boxes: dict[str, Box]) -> None:
        self.rows: list[list[tuple[float, float, list[tuple[float, float]]]]] = []
        self.where: dict[str, tuple[int, int]] = {}
        for number, stack in enumerate(stacks):
            self.rows.append([_row_gaps([boxes[key] for key in row]) for row in stack])
            for r, row in enumerate(stack):
                self.where.update((key, (number, r)) for key in row)

    def leaving(self, key: str, x: float) -> list[Point]:
        """(top, bottom) points through every row below ``key``'s own in its stack."""
        if key not in self.where:
            return []
        number, r = self.where[key]
        return self._thread(self.rows[number][r + 1:], x)

    def entering(self, key: str, x: float) -> list[Point]:
        """(top, bottom) points through every row above ``key``'s own, top row first."""
        if key not in self.where:
            return []
        number, r = self.where[key]
        pairs = self._thread(self.rows[number][:r][::-1], x)
        return [point for i in range(len(pairs) - 2, -1, -2) for point in pairs[i:i + 2]]

    @staticmethod
    def _thread(rows: list[tuple[float, float, list[tuple[float, float]]]],
                x: float) -> list[Point]:
        points: list[Point] = []
        for top, bottom, free in rows:
            x = _nearest_free(free, x)
            points += [(x, top), (x, bottom)]
        return points


def _row_gaps(row: list[Box]) -> tuple[float, float, list[tuple[float, float]]]:
    """A row's top, bottom and where an arrow may cross it: the open space beyond either
    end, and the middle of each gap between two boxes."""
    ordered = sorted(row, key=lambda box: box.x)
    free = [(-math.inf, ordered[0].x - GAP_X / 2)]
    free += [((a.x + a.w + b.x) / 2,) * 2 for a, b in zip(ordered, ordered[1:], strict=False)]
    free.append((ordered[-1].x + ordered[-1].w + GAP_X / 2, math.inf))
    return min(b.y for b in row), max(b.bottom for b in row), free


def _nearest_free(free: list[tuple[float, float]], x: float) -> float:
    """``x`` if an arrow may cross there, else the nearest place it may.

    >>> _nearest_free([(-math.inf, 0.0), (50.0, 50.0), (100.0, math.inf)], 40.0)
    50.0
    """
    return min((min(max(x, low), high) for low, high in free),
               key=lambda at: (abs(at - x), at))


def _routes(edges: Sequence[Edge], boxes: dict[str, Box], bend_boxes: dict[str, Box],
            bends: dict[tuple[str, str], list[str]], passes: _Passes,
            raised: set[str]) -> dict[tuple[str, str], tuple[Point, ...]]:
    """Each arrow's points, its two ends on ports spread along the boxes' bottom and top
    (for a group, the top of its back card, so the stack does not hide the arrowhead)."""
    through: dict[tuple[str, str], list[Point]] = {}
    for edge in edges:
        through[(edge.src, edge.dst)] = [
            point for key in bends.get((edge.src, edge.dst), ())
            for point in ((bend_boxes[key].cx, bend_boxes[key].y),
                          (bend_boxes[key].cx, bend_boxes[key].bottom))]
    start = _ports(edges, boxes, through, outgoing=True)
    end = _ports(edges, boxes, through, outgoing=False)
    routes: dict[tuple[str, str], tuple[Point, ...]] = {}
    for (src, dst), points in through.items():
        x, y = end[(src, dst)]
        out = passes.leaving(src, points[0][0] if points else x)
        into = passes.entering(dst, x)
        routes[(src, dst)] = (start[(src, dst)], *out, *points, *into,
                              (x, y - STACK if dst in raised else y))
    return routes


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
