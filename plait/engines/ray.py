"""The Ray engine: plait's plans run on a Ray cluster (``plait.init(engine="ray")``).

The compiler places the whole graph against Ray's live nodes (``ray.nodes()``) and the
locations of the graph's inputs (``ray.experimental.get_object_locations``); each task is
then a Ray task pinned to its node with ``NodeAffinitySchedulingStrategy(soft=False)``, its
top-level inputs passed as Ray ObjectRefs (Ray moves them, and only where the plan says a
transfer is needed). A task whose place cannot move a byte (it reads no object and no task
of its graph reads its results) is left to Ray's scheduler: a pin costs Ray throughput.
Ray has no task priorities, so the plan's critical-path priorities are not used; fused
chains run as separate tasks on the same node. Each task returns one more object than the
user's: its report (node, worker, times, input sizes) for ``plait.trace``.

Imported only when chosen: ``pip install -e ".[ray]"``.
"""

from __future__ import annotations

import os
import pickle
import time
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from plait.engines.base import ForeignEngine
from plait.engines.task import Spec, run_task
from plait.errors import (GetTimeoutError, ObjectFreedError, PlaitError, TaskCancelledError,
                          WorkerCrashedError)

NODES_FRESH_SECONDS = 0.5      # ray.nodes() is a round trip to the GCS: reused this long
# Task reports not read yet, past which the finished ones are read into the trace ring (one
# ray.wait and one ray.get for all): a driver that never reads its trace holds no more Ray
# objects than this plus its tasks still running. A few thousand: a read is rare and short.
PENDING_REPORTS = 4096


class RayEngine(ForeignEngine):
    name = "ray"

    def __init__(self, address: Any = None, num_cpus: int | None = None,
                 submit_after_idle: float | None = 0.01, in_task: bool = False) -> None:
        self.owns = False
        if not ray.is_initialized():
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")   # loopback
            # address None: a Ray of our own ("local"), never one already on this machine
            ray.init(address=address or "local", num_cpus=num_cpus if address is None else None,
                     include_dashboard=False, configure_logging=False)
            self.owns = True
        super().__init__(submit_after_idle, in_task)
        self.reports: list[Any] = []         # handles of task reports not read yet
        self.reports_limit = PENDING_REPORTS # ... read when there are more than this
        self.runners: dict[tuple, Any] = {}  # _run with a kind of task's options
        self.nodes_seen: tuple[float, list] = (0.0, [])
        self.here = ray.get_runtime_context().get_node_id()

    def engine_nodes(self) -> list[tuple[str, int, str]]:
        when, nodes = self.nodes_seen
        if time.monotonic() - when > NODES_FRESH_SECONDS:
            alive = [n for n in ray.nodes() if n["Alive"]]
            alive.sort(key=lambda n: ("node:__internal_head__" not in n["Resources"],
                                      n["NodeID"]))
            nodes = [(n["NodeID"], int(n["Resources"].get("CPU", 0)),
                      n["NodeManagerAddress"]) for n in alive]
            self.nodes_seen = (time.monotonic(), nodes)
        return nodes

    def engine_objects(self, handles: dict[str, Any]) -> dict[str, tuple[int, tuple[str, ...]]]:
        if not handles:
            return {}
        found = ray.experimental.get_object_locations(list(handles.values()))
        result = {}
        for oid, handle in handles.items():
            info = found.get(handle) or {}
            result[oid] = (info.get("object_size") or 0, tuple(info.get("node_ids") or ()))
        return result

    def engine_put(self, value: Any) -> tuple[Any, str]:
        return ray.put(value), self.here

    def launch(self, task: Any, node: Any, placement: Any, inputs: list[Any],
               nested: dict[str, Any], anchored: bool) -> list[Any]:
        """Pinned where the plan says, unless the pin cannot matter: on one node, or a task
        not ``anchored`` (it reads nothing and nothing here reads it), which Ray places as
        it would alone; a pin costs Ray about a third of its task rate (W3)."""
        function_id, pickled = task.function.pickled()
        spec = Spec(task.id, function_id, pickled, node.function_name, placement.node,
                    node.deps, node.outputs, task.payload)
        retry = task.options.retry_exceptions or False
        pinned = anchored and len(self.nodes_seen[1]) > 1
        key = (placement.node if pinned else None, len(node.outputs), node.num_cpus,
               node.max_retries, retry if isinstance(retry, bool) else tuple(retry),
               node.function_name)
        runner = self.runners.get(key)
        if runner is None:                   # Ray's .options() is slow: one per kind
            strategy: Any = "DEFAULT"
            if pinned:
                strategy = NodeAffinitySchedulingStrategy(self.node_ids[placement.node],
                                                          soft=False)
            runner = self.runners[key] = _run.options(
                num_returns=len(node.outputs) + 1, scheduling_strategy=strategy,
                num_cpus=node.num_cpus, max_retries=node.max_retries,
                retry_exceptions=retry, name=node.function_name)
        extra = (_Nested(nested),) if nested else ()
        handles = runner.remote(spec.to_bytes(), *inputs, *extra)
        self.reports.append(handles[-1])
        if len(self.reports) > self.reports_limit:
            self.read_reports()
        return list(handles[:-1])

    def engine_get(self, handles: list[Any], timeout: float | None) -> list[Any]:
        try:                          # (in a task, Ray lends a blocked task's CPU itself)
            return ray.get(handles, timeout=timeout)
        except Exception as error:
            raise _plait_error(error) from None

    def engine_ready(self, handles: list[Any], count: int, timeout: float | None) -> set[int]:
        if not handles or count <= 0:
            return set()
        ready, _ = ray.wait(handles, num_returns=min(count, len(handles)), timeout=timeout,
                            fetch_local=False)
        chosen = {id(h) for h in ready}
        return {i for i, h in enumerate(handles) if id(h) in chosen}

    def engine_free(self, handles: list[Any]) -> None:
        """Ray frees an object once no ObjectRef to it is left: plait's was the handle,
        dropped already (Ray 2.60 has no public early free)."""

    def engine_cancel(self, handles: list[Any], recursive: bool, force: bool) -> None:
        for handle in handles:     # always forced: the task's ref raises TaskCancelledError
            ray.cancel(handle, force=True, recursive=recursive)

    def engine_events(self) -> list[dict]:
        if not self.reports:
            return []
        ready, self.reports = ray.wait(self.reports, num_returns=len(self.reports),
                                       timeout=0, fetch_local=True)
        self.reports_limit = len(self.reports) + PENDING_REPORTS   # those still running wait
        try:
            return [pickle.loads(report) for report in ray.get(ready)]
        except Exception:                   # a task failed (it made no report): one by one
            return [report for report in map(_report, ready) if report is not None]

    def engine_close(self) -> None:
        self.reports = []
        if self.owns:
            ray.shutdown()


class _Nested:
    """Ray ObjectRefs of a task's nested plait refs, kept from Ray's argument resolution
    (Ray resolves only top-level ObjectRef arguments; these travel as borrowed refs)."""

    __slots__ = ("handles",)

    def __init__(self, handles: dict[str, Any]) -> None:
        self.handles = handles

    def __reduce__(self):
        return (_Nested, (self.handles,))


@ray.remote
def _run(spec: bytes, *inputs: Any) -> tuple:
    """One plait task in a Ray worker: its results, then its report (pickled: Ray passes
    bytes as they are, where it runs its own serialiser over a dict, ~20x slower).

    ``inputs``: the task's top-level inputs, then a ``_Nested`` if it reads refs nested in
    its arguments (passed only then: an argument less costs Ray less)."""
    session = RayEngine.in_task_session()
    task = Spec.from_bytes(spec)
    nested = inputs[len(task.deps):]
    results, report = run_task(session, session.here, task, inputs[:len(task.deps)],
                               nested[0].handles if nested else {})
    return (*results, pickle.dumps(report, protocol=5))


def _report(handle: Any) -> dict | None:
    """A task's report, or None if the task failed."""
    try:
        return pickle.loads(ray.get(handle))
    except Exception:
        return None


def _plait_error(error: Exception) -> Exception:
    """Ray's exception as plait's: the task's own TaskError, or plait's name for Ray's."""
    from ray import exceptions as rx

    if isinstance(error, rx.RayTaskError):
        cause = error.cause
        return cause if isinstance(cause, Exception) else PlaitError(str(error))
    if isinstance(error, rx.TaskCancelledError):
        return TaskCancelledError(str(getattr(error, "task_id", "") or "a task"))
    if isinstance(error, rx.GetTimeoutError):
        return GetTimeoutError(f"get timed out on the ray engine: {error}")
    if isinstance(error, rx.ObjectFreedError):
        return ObjectFreedError("an object", "released early with plait.free")
    if isinstance(error, rx.WorkerCrashedError):
        return WorkerCrashedError("a task", "", [str(error)])
    return error
