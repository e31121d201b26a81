"""Engine: the seam between plait's API and whoever runs its plans.

``plait.api`` talks to one Engine per driver: the native Session (driver/session.py, plait's
own ZeroMQ cluster) or an engine of ``plait.engines`` that runs the same plans on a Ray or
Dask cluster someone else operates. What differs between them is small and listed here as
abstract methods: the cluster as the compiler sees it (``cluster_view``), handing a compiled
plan over (``submit``), and the object operations (``put``, ``get``, ``wait``, ``free``,
``cancel``), the node list and the trace events. What is the same is written once, here:
turning the lazy graph behind requested refs into a plan with the pure compiler, refusing
the tasks it cannot place, and keeping the last few plans for ``compile``/``visualize``.

An engine is also the graph layer's runtime (``plait.graph.context.Runtime``): ObjectRefs
report their births and deaths to it, and ``.remote()`` calls wait in ``unsubmitted``
until the next run.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from plait import compiler
from plait.errors import InvalidArgumentError, ObjectLostError, TaskCancelledError
from plait.graph import context
from plait.graph.graph import Graph, collect
from plait.graph.refs import ObjectRef


def serialized(method: Any) -> Any:
    """Run an engine method under the engine's lock (``self.lock``: the idle flusher's and
    the futures' threads call in too)."""
    @functools.wraps(method)
    def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return method(self, *args, **kwargs)

    return locked


class Engine(ABC):
    """One driver's (or task's) way to run plans; subclasses set ``lock``, ``unsubmitted``
    and ``recent_plans`` (a bounded deque) in their ``__init__``."""

    name = "plait"               # what refusals call the engine ("ray", "dask")
    lock: Any
    unsubmitted: deque[Any]
    recent_plans: deque[compiler.Plan]

    # -- what each engine does its own way ----------------------------------------------

    @abstractmethod
    def cluster_view(self, graph: Graph) -> compiler.ClusterView:
        """The nodes, and where the graph's inputs (and actors) live, as of now."""

    @abstractmethod
    def submit(self, plan: compiler.Plan, graph: Graph, tasks: dict[str, Any],
               refs: Sequence[ObjectRef], frees: tuple[str, ...]) -> None:
        """Run ``plan``'s tasks (``tasks``: the live Task objects by id), each on the node
        the plan gives it; ``refs`` are the ones the caller waits for, ``frees`` objects
        released since the last message (an engine without messages ignores them)."""

    @abstractmethod
    def known(self, object_id: str) -> bool:
        """Whether the object's value (or its failure) is already known here."""

    @abstractmethod
    def fail(self, object_id: str, error: Exception) -> None:
        """Make ``get`` of the object raise ``error`` (its task is never submitted)."""

    @abstractmethod
    def put(self, value: Any) -> ObjectRef: ...

    @abstractmethod
    def get(self, refs: Any, timeout: float | None = None) -> Any: ...

    @abstractmethod
    def wait(self, refs: Sequence[ObjectRef], num_returns: int, timeout: float | None
             ) -> tuple[list[ObjectRef], list[ObjectRef]]: ...

    @abstractmethod
    def free(self, refs: Iterable[ObjectRef]) -> None: ...

    @abstractmethod
    def cancel(self, refs: list[ObjectRef], recursive: bool = True, force: bool = False
               ) -> None: ...

    @abstractmethod
    def refresh_nodes(self) -> tuple[Any, ...]:
        """The cluster's nodes as they are now (head first)."""

    @abstractmethod
    def trace_since(self, position: int) -> tuple[tuple[Any, ...], int]:
        """Task and transfer events recorded after ``position`` (-1: none), and the
        position now (see ``plait.trace``)."""

    @abstractmethod
    def shutdown(self) -> None: ...

    def tracing(self, opened: bool) -> None:
        """A ``plait.trace`` block opened (or closed): an engine that records how tasks ran
        only while one is open (Ray: it costs each task a return) starts (or stops)."""
        return None

    def before_run(self) -> tuple[str, ...]:
        """Called first by ``run``: objects released since the last message (native)."""
        return ()

    def nothing_to_run(self, frees: tuple[str, ...]) -> None:
        """``run`` found nothing to submit: send what ``before_run`` gathered."""
        return None

    def placed(self, graph: Graph, plan: compiler.Plan) -> None:
        """A plan was compiled (native: remembers where new actors go)."""
        return None

    def unplaced(self) -> list[Any]:
        """Tasks set aside at an earlier run, to be compiled again (native: see park)."""
        return []

    def cannot_place(self, graph: Graph, tasks: dict[str, Any], error: Any) -> None:
        """The compiler cannot place a task now: refuse it (native: one asking for what no
        node offers waits for a node that does, see driver/parking.py)."""
        self.refuse(graph, tasks, error)

    def memory_summary(self) -> tuple[Any, ...]:
        return ()

    def kill_actor(self, actor_id: str, no_restart: bool) -> None:
        raise NotImplementedError(f"the {self.name} engine does not run plait actors")

    def get_actor(self, name: str) -> Any:
        raise NotImplementedError(f"the {self.name} engine does not run plait actors")

    def actor_names(self) -> tuple[str, ...]:
        raise NotImplementedError(f"the {self.name} engine does not run plait actors")

    # -- written once ---------------------------------------------------------------------

    @serialized
    def run(self, refs: Sequence[ObjectRef]) -> None:
        """Compile and submit every task ``refs`` need that has not been submitted yet,
        together with every other task made since the last submission (see ``created``)."""
        frees = self.before_run()
        made = self.unplaced() + drain(self.unsubmitted)
        while True:
            refs = [ref for ref in refs if not self.known(ref.id)]   # known: nothing to run
            graph, tasks = collect(refs, made)
            if not graph.tasks:
                self.nothing_to_run(frees)
                return
            try:
                plan = self.plan(graph)
                break
            except compiler.PlanError as error:
                if error.task_id not in tasks:
                    raise
                self.cannot_place(graph, tasks, error)   # the rest of the graph still runs
        self.submit(plan, graph, tasks, refs, frees)
        self.recent_plans.append(plan)

    def plan(self, graph: Graph) -> compiler.Plan:
        plan = compiler.compile(graph, self.cluster_view(graph))
        self.placed(graph, plan)
        return plan

    def cancel_unsubmitted(self, refs: Sequence[ObjectRef]) -> list[ObjectRef]:
        """Cancel the tasks of ``refs`` not submitted yet (lazy: they simply never run,
        their refs raise TaskCancelledError); returns the refs of the others."""
        submitted = []
        for ref in refs:
            task = ref.task
            if task is None or task.submitted:
                submitted.append(ref)
                continue
            self.fail_unsent(task, TaskCancelledError(task.id))
        return submitted

    def fail_unsent(self, task: Any, error: BaseException) -> None:
        """A task that will never be submitted: its results fail with ``error``."""
        task.submitted = True
        task.forget_inputs()
        for oid in task.output_ids:
            self.fail(oid, error)

    def refuse(self, graph: Graph, tasks: dict[str, Any], error: Exception,
               task_id: str = "") -> None:
        """A task the compiler cannot place (``task_id``, else the one ``error`` names)
        fails with ``error``, and so does every task of the graph that reads its results;
        they are never submitted (Ray would leave an infeasible task pending for ever;
        plait says why, at the get of its refs)."""
        doomed = [task_id or error.task_id]
        consumers = graph.consumers()
        while doomed:
            task = tasks.get(doomed.pop())
            if task is None or task.submitted:
                continue
            self.fail_unsent(task, error)
            for oid in task.output_ids:
                doomed += consumers.get(oid, [])

    @serialized
    def compile(self, refs: Sequence[ObjectRef]) -> compiler.Plan | None:
        """The plan that would run what ``refs`` need (None when nothing needs to run)."""
        graph, _ = collect(check_refs(refs, "plait.compile"))
        if graph.tasks:
            return self.plan(graph)
        return self.submitted_plan(refs)

    def submitted_plan(self, refs: Sequence[ObjectRef]) -> compiler.Plan | None:
        """The plan that ran (or runs) ``refs``, if it was among the last few submitted."""
        wanted = {ref.task.id for ref in refs if ref.task is not None}
        for plan in reversed(self.recent_plans):
            if wanted and wanted <= set(plan.placements):
                return plan
        return None

    @serialized
    def visualize(self, refs: list[ObjectRef], filename: str | None) -> str:
        plan = self.compile(refs) or compiler.Plan(tuple(r.id for r in refs), {}, (), (), {})
        return plan.visualize(filename)


def drain(pending: deque[Any]) -> list[Any]:
    """Take every task from ``pending`` (another thread may append meanwhile: none is lost)."""
    taken = []
    while pending:
        taken.append(pending.popleft())
    return taken


def check_refs(refs: Iterable[Any], where: str) -> list[ObjectRef]:
    """``refs`` as a list, each an ObjectRef of the running session (else
    InvalidArgumentError, or ObjectLostError for one of a session that was shut down)."""
    refs = list(refs)
    active = context.active()
    for ref in refs:
        if not isinstance(ref, ObjectRef):
            raise InvalidArgumentError(f"{where} expects ObjectRefs, got "
                                       f"{type(ref).__name__}: {ref!r:.60}")
        if ref.owner is not None and ref.owner is not active:
            raise ObjectLostError(ref.id, "it belongs to a plait session that was shut down")
    return refs
