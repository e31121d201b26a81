"""compile(graph, view, options) -> Plan: pure, deterministic, validated.

Speed: ``benchmarks/scale.py compile`` times this function on graphs of 10k to 1M tasks
(the graph is built beforehand and not timed; ``Graph.sources`` is computed inside). Every
object a task reads is looked up by id once, in ``Graph.sources``, which names the task
making it by its position in the graph's order; from there the passes refer to tasks by
position, and what one pass hands the next (choices, fused chains, priorities) is a list in
that order, walked beside the tasks instead of looked up by id: at a million tasks every
look-up in a dict of a million entries is a few cache misses. ``benchmarks/plan_digest.py``
checks that a change meant to be speed only leaves every plan as it was.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

from plait.compiler.passes import (critical_paths, cull, cut_stages, fuse_chains,
                                   plan_releases, plan_transfers)
from plait.compiler.placement import place
from plait.compiler.plan import Plan, placed
from plait.compiler.validate import validate
from plait.compiler.view import ClusterView, CompileOptions
from plait.errors import PlanError
from plait.graph.graph import Graph


def compile(graph: Graph, view: ClusterView, options: CompileOptions | None = None) -> Plan:
    """Place every task of ``graph`` on a node of ``view``; equal inputs give an equal plan."""
    with _cyclic_gc_paused():
        return _plan(cull(graph), view, options or CompileOptions())


def _plan(graph: Graph, view: ClusterView, options: CompileOptions) -> Plan:
    """The passes after cull, in order. A function of its own so that what only the passes
    share (choices, chains, priorities: an object or more per task) is freed when it returns,
    before the collector resumes and looks at every object made since it paused."""
    _check_inputs_known(graph, view)
    choices = place(graph, view, options)
    stages = cut_stages(graph, choices, view.node_ids())
    stage_of = {stage.node: stage.index for stage in stages}     # one stage per node
    follows = fuse_chains(graph, choices)
    priority = critical_paths(graph, view, options)
    placements = {     # all four by position: walked side by side, not looked up
        tid: placed(tid, task.function_name, choice.node, stage_of[choice.node],
                    choice.reason, choice.inputs, choice.bytes_moved, task.outputs,
                    followed, seconds)
        for (tid, task), choice, followed, seconds
        in zip(graph.tasks.items(), choices, follows, priority, strict=True)}
    plan = Plan(graph.targets, placements, stages, plan_transfers(choices, options),
                plan_releases(graph))
    return validate(plan, graph, view)


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a plan is built.

    A compile makes several objects per task (choices, placements, tuples of inputs), none
    of them in a reference cycle, so the collector has nothing to find; but it counts them,
    and every few thousand it scans the young ones and, now and then, every object in the
    process (the graph's million tasks included). That was a fifth of the compile's time at
    100k tasks (``benchmarks/scale.py compile``). Reference counting still frees everything
    as usual; the collector resumes on exit, and is left alone if it was already off (or
    switched off by another thread meanwhile: whoever paused it first turns it back on).
    """
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def _check_inputs_known(graph: Graph, view: ClusterView) -> None:
    """A graph reading an object the cluster does not hold is the caller's error (the first
    such object in ``graph.inputs()`` order is named: reads in task order, then targets)."""
    objects = view.objects
    for task, sources in zip(graph.tasks.values(), graph.sources, strict=True):
        for oid, at in zip(task.reads, sources, strict=True):
            if at < 0 and oid not in objects:
                _refuse_unknown(oid)
    for oid in graph.targets:
        if oid not in graph.made_at and oid not in objects:
            _refuse_unknown(oid)


def _refuse_unknown(oid: str) -> None:
    raise PlanError(f"object {oid} is read by the graph but is not in the cluster "
                    f"(was it freed, or created by another session?)")
