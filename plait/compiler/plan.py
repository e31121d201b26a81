"""Plan: where and when every task runs, what moves between nodes, when objects are released.

A plan is frozen plain data, so equal inputs to the compiler give an equal (==) plan.

Its table and pictures (``explain``, ``visualize``, Jupyter's ``_repr_svg_``) live in
``plait.compiler.draw``, which reads plans; the methods here import it only when called, so
compiling never loads the drawing code. That lazy call back is the one import circle the
layering test allows (tests/test_layering.py, ``DECLARED``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one task runs and why."""

    task_id: str
    function_name: str
    node: str
    stage: int
    reason: str
    inputs: tuple[tuple[str, int, tuple[str, ...]], ...]   # (object, bytes, nodes holding it)
    bytes_moved: int
    outputs: tuple[str, ...] = ()
    follows: str = ""              # fused: runs right after this task, in the same worker
    priority: float = 0.0          # seconds of work from here to the end (critical path)


_PLACEMENT_SLOTS = tuple(getattr(Placement, name).__set__ for name in Placement.__slots__)


def placed(task_id: str, function_name: str, node: str, stage: int, reason: str,
           inputs: tuple[tuple[str, int, tuple[str, ...]], ...], bytes_moved: int,
           outputs: tuple[str, ...], follows: str, priority: float) -> Placement:
    """``Placement(...)`` as the compiler builds a million of them: the same frozen object,
    its slots filled directly.

    A frozen dataclass's ``__init__`` goes through ``object.__setattr__`` once per field:
    1.1 µs for these ten on this machine (CPU time, timeit), the largest cost of a compile
    after placement itself; setting the slots takes 0.6 µs.

    >>> placed("t", "f", "node-0", 0, "why", (), 0, ("t",), "", 1.0) == Placement(
    ...     "t", "f", "node-0", 0, "why", (), 0, ("t",), "", 1.0)
    True
    """
    placement = object.__new__(Placement)
    (set_task_id, set_function_name, set_node, set_stage, set_reason, set_inputs,
     set_bytes_moved, set_outputs, set_follows, set_priority) = _PLACEMENT_SLOTS
    set_task_id(placement, task_id)
    set_function_name(placement, function_name)
    set_node(placement, node)
    set_stage(placement, stage)
    set_reason(placement, reason)
    set_inputs(placement, inputs)
    set_bytes_moved(placement, bytes_moved)
    set_outputs(placement, outputs)
    set_follows(placement, follows)
    set_priority(placement, priority)
    return placement


@dataclass(frozen=True, slots=True)
class Stage:
    """Tasks sent to one node in one message, listed so each follows its dependencies."""

    index: int
    node: str
    task_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Transfer:
    """One copy of an object into another node's store (made once per plan)."""

    object_id: str
    src: str
    dst: str
    nbytes: int


@dataclass(frozen=True)
class Plan:
    """The compiler's output; ``explain()`` says why, ``validate`` has checked it."""

    targets: tuple[str, ...]
    placements: dict[str, Placement]
    stages: tuple[Stage, ...]
    transfers: tuple[Transfer, ...]
    # intermediate object -> the task after which it can go; the head frees it then, by
    # counting the readers still to run, so this is what to expect rather than an order
    releases: dict[str, str]

    @property
    def critical_path(self) -> float:
        """Estimated seconds of the longest chain of dependent tasks."""
        return max((p.priority for p in self.placements.values()), default=0.0)

    @property
    def bytes_moved(self) -> int:
        return sum(t.nbytes for t in self.transfers)

    def tasks_per_node(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for placement in self.placements.values():
            counts[placement.node] = counts.get(placement.node, 0) + 1
        return counts

    def explain(self) -> str:
        """A table: per task where it runs, its inputs and why; then totals."""
        from plait.compiler.draw.explain import explain

        return explain(self)

    def visualize(self, filename: str | None = None) -> str:
        """Draw the plan: SVG text, or a .svg/.html/.dot file (by extension) written and returned.

        Tasks are coloured by node and boxed by stage; arrows between nodes are transfers,
        as wide as the bytes they move. Pure Python: Graphviz is not needed.
        """
        from plait.compiler.draw.visualize import visualize

        return visualize(self, filename)

    def _repr_svg_(self) -> str:
        from plait.compiler.draw.visualize import render_svg

        return render_svg(self)

    def _repr_html_(self) -> str:
        """In Jupyter: the SVG with hover details (falls back to plain titles without JS)."""
        from plait.compiler.draw.visualize import render_html_fragment

        return render_html_fragment(self)

    def __repr__(self) -> str:
        return (f"Plan({len(self.placements)} tasks, {len(self.stages)} stages, "
                f"{len(self.transfers)} transfers, {self.bytes_moved} bytes moved)")
