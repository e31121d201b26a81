"""The Ray engine: plait's plans run on a Ray cluster (``plait.init(engine="ray")``).

The compiler places the whole graph against Ray's live nodes (``ray.nodes()``) and the
locations of the graph's inputs (``ray.experimental.get_object_locations``); each task is
then a Ray task pinned to its node with ``NodeAffinitySchedulingStrategy``, its top-level
inputs passed as Ray ObjectRefs (Ray moves them, and only where the plan says a transfer
is needed). The pin is Ray's ``soft=True``: as long as the node lives, Ray runs the task
there and nowhere else, busy or not (the same as ``soft=False``); once it is gone, Ray runs
the task elsewhere, where ``soft=False`` fails it with TaskUnschedulableError. This matters
when Ray remakes a result lost with its node from the task's lineage, as Ray alone does.
A task whose place cannot move a byte (it reads no object and no task of its graph reads
its results) is left to Ray's scheduler: a pin costs Ray throughput.
Ray has no task priorities, so the plan's critical-path priorities are not used; fused
chains run as separate tasks on the same node. A task's shape is as near Ray's own as plait
can make it (Ray charges for each argument and return): the call of a Ray remote function
made once per plait function, its arguments the call's own (none for a call without any);
its id travels as Ray's name of the task. A task launched while a ``plait.trace()`` block
is open returns one more object than the user's, first: how it ran (node, worker, times,
input sizes), which the driver makes the trace's events. Others return the user's alone:
the extra return, and reading it, cost Ray ~5% of W3's rate (1,000 no-ops), about as much
as all of plait's planning, so only a trace pays for it (Ray's own
``enable_task_events=False`` is the same choice).

Imported only when chosen: ``pip install -e ".[ray]"``.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import threading
import time
from typing import Any

import ray
from ray.experimental import internal_kv
from ray.util.client import ray as ray_client
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from plait.engines import names
from plait.engines.base import ForeignEngine
from plait.engines.task import Function, run_call
from plait.errors import (GetTimeoutError, ObjectFreedError, ObjectLostError, PlaitError,
                          ReconstructionFailedError, TaskCancelledError, TaskError,
                          WorkerCrashedError)
from plait.graph.task import NO_ARGUMENTS

# ray.nodes() is a round trip to the GCS: ~1 ms when it is idle, but up to ~80 ms while it
# takes the task events of a burst of tasks (W3, load 10). A list this young is used as it
# is; an older one is still used for the plan at hand while a fresh one is read beside it
# (so no plan waits for the GCS), unless it is older than NODES_STALE_SECONDS.
NODES_FRESH_SECONDS = 0.5
NODES_STALE_SECONDS = 10.0
# Task reports not read yet, past which the finished ones are read into the trace ring (one
# ray.wait and one ray.get for all): a driver that never reads its trace holds no more Ray
# objects than this plus its tasks still running. A few thousand: a read is rare and short.
PENDING_REPORTS = 4096
# ... and past which a get reads them once it has its values. Held, a report keeps its task
# in Ray's lineage tables: W3 on Ray alone with num_returns=2 ran at 1,110 tasks/s when it
# kept the second refs across rounds (as plait kept its reports, up to PENDING_REPORTS),
# 1,584 when it dropped them, 1,458 with one return (benchmarks/ray_w3_apart.py, 3 runs of
# 3 rounds each, load 9-12). A read costs the driver ~15-20 us a report; under this many a
# loop of single gets does not pay it at every get.
REPORTS_AFTER_GET = 64
# Where the node names live (names.py): the cluster's own key-value store, in the GCS, kept
# as long as the cluster lives; every plait session on it, of any job, uses the same names.
NAMES_NAMESPACE = "plait"


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
        self.reports_limit = PENDING_REPORTS # ... read when there are more than this
        self.reports: list[tuple] = []       # (report handle, launch number, (task id,
        #                                      function, outputs, inputs)) not read yet
        self.functions: dict[tuple, Any] = {}   # a function's Ray remote function
        self.runners: dict[tuple, tuple] = {}   # ... with a kind of task's options
        # the last task's function and options (held, so never another's at the same
        # address), its bare and pin, and its runner: a run of calls of one kind finds it
        self.last_runner: tuple = (None, None, False, None, None)
        self.nodes_seen: tuple[float, list] = (0.0, [])
        self.nodes_reader: threading.Thread | None = None   # reading a fresh list, if any
        self.here = ray.get_runtime_context().get_node_id()
        # A Ray Client driver (address "ray://..."): a proxy of a driver inside the cluster,
        # without a core worker of its own here, so what only a core worker tells (where
        # objects are) is asked of a task in the cluster (``_locations``)
        self.client = ray_client.is_connected()

    def engine_nodes(self) -> list[tuple[str, int, str]]:
        when, nodes = self.nodes_seen
        age = time.monotonic() - when
        if not nodes or age > NODES_STALE_SECONDS:
            return self.read_nodes()
        if age > NODES_FRESH_SECONDS and self.nodes_reader is None:
            self.nodes_reader = threading.Thread(target=self.read_nodes_beside,
                                                 name="plait-ray-nodes", daemon=True)
            self.nodes_reader.start()
        return nodes

    def read_nodes(self) -> list[tuple[str, int, str]]:
        """Ray's live nodes now, the head first (and kept for the next plans)."""
        alive = [n for n in ray.nodes() if n["Alive"]]
        alive.sort(key=lambda n: ("node:__internal_head__" not in n["Resources"],
                                  n["NodeID"]))
        nodes = [(n["NodeID"], int(n["Resources"].get("CPU", 0)), n["NodeManagerAddress"])
                 for n in alive]
        self.nodes_seen = (time.monotonic(), nodes)
        return nodes

    def read_nodes_beside(self) -> None:
        """``read_nodes`` in its own thread; a failure leaves the list as it was (the next
        plan tries again, or reads it itself once it is stale)."""
        try:
            self.read_nodes()
        except Exception:
            pass
        finally:
            self.nodes_reader = None

    def refresh_nodes(self) -> tuple[Any, ...]:
        """``plait.nodes()`` asks Ray now."""
        self.read_nodes()
        return super().refresh_nodes()

    def engine_objects(self, handles: dict[str, Any]) -> dict[str, tuple[int, tuple[str, ...]]]:
        if not handles:
            return {}
        if self.client:
            return dict(zip(handles, ray.get(_locations.remote(list(handles.values()))),
                            strict=True))
        return dict(zip(handles, _where(list(handles.values())), strict=True))

    def engine_put(self, value: Any) -> tuple[Any, str]:
        return ray.put(value), self.here

    def engine_names(self) -> contextlib.AbstractContextManager[tuple[names.Read, names.Add]]:
        """Ray's internal key-value store (its put with ``overwrite=False`` is the atomic
        add): one round trip to the GCS per key, only for nodes a session meets first."""
        return contextlib.nullcontext((_read_name, _add_name))

    def engine_resources(self) -> tuple[dict[str, float], dict[str, float]]:
        """Ray's own, by Ray's names (its ``node:`` markers included, as Ray gives them)."""
        return ray.cluster_resources(), ray.available_resources()

    def engine_here(self) -> tuple[str, str, str | None]:
        context = ray.get_runtime_context()          # the task's name is plait's id of it
        return self.here, context.get_worker_id(), context.get_task_name()

    def launch(self, task: Any, node: Any, placement: Any, inputs: list[Any],
               nested: dict[str, Any], anchored: bool) -> list[Any]:
        """Pinned where the plan says, unless the pin cannot matter: on one node, or a task
        not ``anchored`` (it reads nothing and nothing here reads it), which Ray places as
        it would alone; a pin costs Ray about a third of its task rate (W3).

        The task is a call of its function's own Ray remote function (``_runner``), its
        Ray arguments the call's own: its pickled arguments and its inputs, none for a call
        without arguments. Its id travels as Ray's name of the task; the rest of what the
        trace says of it stays here, beside the handle of its report."""
        bare = not inputs and not nested and task.payload == NO_ARGUMENTS
        report = self.traces > 0
        runner, options = self.runner(task, node, placement, anchored, bare, report)
        args = () if bare else (task.payload, *inputs, *((_Nested(nested),) if nested else ()))
        # RemoteFunction._remote: what .options(...).remote() calls, with a name per call
        handles = runner._remote(args=args, kwargs=None, name=task.id, **options)
        if not report:
            return handles if len(node.outputs) > 1 else [handles]
        reports = self.reports
        reports.append((handles[0], self.launched,
                        (task.id, node.function_name, node.outputs, node.deps)))
        if len(reports) > self.reports_limit:
            self.read_reports()
        return handles[1:]

    def runner(self, task: Any, node: Any, placement: Any, anchored: bool, bare: bool,
               report: bool) -> tuple[Any, dict]:
        """The Ray remote function running ``task``'s function, and its options (Ray's
        .options() is slow and each new remote function is exported: one per kind)."""
        pinned = anchored and len(self.nodes_seen[1]) > 1
        pin = placement.node if pinned else None
        function, kind = task.function, task.options
        last = self.last_runner          # most often the task before's: no key to build
        if last[0] is function and last[1] is kind and last[2] == (bare, report) and \
                last[3] == pin:
            return last[4]
        retry = task.options.retry_exceptions or False
        function_id, pickled = task.function.pickled()
        count = len(node.outputs)
        key = (function_id, node.function_name, bare, report, pin,
               count, node.num_cpus, node.max_retries,
               retry if isinstance(retry, bool) else tuple(retry))
        found = self.runners.get(key)
        if found is None:
            strategy: Any = "DEFAULT"
            if pinned:
                strategy = NodeAffinitySchedulingStrategy(self.node_ids[placement.node],
                                                          soft=True)
            remote = self.functions.get(key[:4] + (count,))
            if remote is None:
                remote = self.functions[key[:4] + (count,)] = ray.remote(_runner(
                    Function(function_id, pickled, node.function_name), count, bare, report))
            chosen = dict(num_returns=count + report, scheduling_strategy=strategy,
                          num_cpus=node.num_cpus, max_retries=node.max_retries,
                          retry_exceptions=retry)
            remote.options(**chosen)                      # Ray checks them
            options = {**remote._default_options, **chosen}
            options.pop("max_calls", None)
            options["serialized_runtime_env_info"] = remote._serialized_base_runtime_env_info
            found = self.runners[key] = (remote, options)
        self.last_runner = (function, kind, (bare, report), pin, found)
        return found

    def results_read(self) -> None:
        """A get has its values: the reports of its tasks are in (each is its task's first
        return), so they are read now and Ray may let go of those tasks."""
        if len(self.reports) > REPORTS_AFTER_GET:
            self.read_reports()

    def engine_get(self, handles: list[Any], timeout: float | None) -> list[Any]:
        try:                          # (in a task, Ray lends a blocked task's CPU itself)
            return ray.get(handles, timeout=timeout)
        except Exception as error:
            raise self.named(_plait_error(error)) from None

    def named(self, error: Exception) -> Exception:
        """A task's failure names the node it ran on by Ray's id (the worker knows no
        other): here, by plait's name of that node, once this session has met it."""
        if isinstance(error, TaskError) and error.node in self.node_names:
            error.node = self.node_names[error.node]
        return error

    def engine_ready(self, handles: list[Any], count: int, timeout: float | None) -> set[int]:
        if not handles or count <= 0:
            return set()
        ready, _ = ray.wait(handles, num_returns=min(count, len(handles)), timeout=timeout,
                            fetch_local=False)
        chosen = set(ready)        # (equal refs, not the same objects through Ray Client)
        return {i for i, h in enumerate(handles) if h in chosen}

    def engine_free(self, handles: list[Any]) -> None:
        """Ray frees an object once no ObjectRef to it is left: plait's was the handle,
        dropped already (Ray 2.60 has no public early free)."""

    def engine_cancel(self, handles: list[Any], recursive: bool, force: bool) -> None:
        for handle in handles:     # always forced: the task's ref raises TaskCancelledError
            ray.cancel(handle, force=True, recursive=recursive)

    def engine_events(self) -> list[tuple[tuple, tuple]]:
        if not self.reports:
            return []
        unread = self.reports
        handles = [pending[0] for pending in unread]
        try:                  # most often (a get of all it ran just ended) every task is done
            ran = [pickle.loads(data) for data in ray.get(handles, timeout=0)]
            finished, self.reports = unread, []
        except Exception:     # some still run, or a task failed (it made no report)
            ready, _ = ray.wait(handles, num_returns=len(handles), timeout=0,
                                fetch_local=True)
            done = set(ready)
            finished = [pending for pending in unread if pending[0] in done]
            self.reports = [pending for pending in unread if pending[0] not in done]
            ran = _read(pending[0] for pending in finished)
        self.reports_limit = len(self.reports) + PENDING_REPORTS   # those still running wait
        return [(pending[2], one) for pending, one in zip(finished, ran, strict=True)
                if one is not None]

    def unread_from(self) -> int:
        """The reports not read yet are in launch order."""
        return self.reports[0][1] if self.reports else self.launched

    def engine_close(self) -> None:
        self.reports = []
        reader = self.nodes_reader
        if reader is not None:        # not inside ray.nodes() while Ray shuts down
            reader.join(timeout=NODES_STALE_SECONDS)
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


def _runner(function: Function, count: int, bare: bool, report: bool) -> Any:
    """A Ray task's body for ``function``'s calls: its ``count`` results, after its report
    when it has one (``report``). ``bare``, for calls without arguments, takes none, so
    Ray passes none (as it does for a function of its own without parameters); else the
    pickled call, then the task's top-level inputs, then a ``_Nested`` if it reads refs
    nested in its arguments."""
    if bare:
        def run() -> Any:
            return _run(function, count, NO_ARGUMENTS, (), {}, report)
    else:
        def run(payload: bytes, *inputs: Any) -> Any:
            nested = inputs[-1].handles if inputs and isinstance(inputs[-1], _Nested) else {}
            return _run(function, count, payload, inputs[:-1] if nested else inputs, nested,
                        report)
    run.__name__ = run.__qualname__ = function.name     # as Ray's dashboard shows it
    return run


def _run(function: Function, count: int, payload: bytes, inputs: tuple,
         nested: dict[str, Any], report: bool) -> Any:
    """One plait task in a Ray worker: its report if asked (pickled: Ray passes bytes as
    they are, where it runs its own serialiser over a tuple), then its results (a single
    one as it is, as Ray takes one return). The report comes first: the driver stores a
    task's returns in their order, so a task whose result a ``get`` saw has its report in
    the driver too, for the trace read next."""
    session = RayEngine.in_task_session()
    try:
        results, ran = run_call(session, session.here, function, "", session.here, payload,
                                count, inputs, nested, measured=report)
    except TaskError as error:        # named now: Ray's name of the task is a call to read
        raise TaskError.wrap(error.function_name, ray.get_runtime_context().get_task_name(),
                             error.node, error.remote_traceback, error.cause) from None
    if report:
        return (pickle.dumps(ran, protocol=5), *results)
    return results[0] if count == 1 else tuple(results)


def _read(handles: Any) -> list[tuple | None]:
    """How each of these finished tasks ran: all in one read, or one by one if a task
    failed (it made no report)."""
    handles = list(handles)
    try:
        return [pickle.loads(data) for data in ray.get(handles)]
    except Exception:
        return [_ran(handle) for handle in handles]


def _ran(handle: Any) -> tuple | None:
    """How a task ran (task.py ``run_call``), or None if the task failed."""
    try:
        return pickle.loads(ray.get(handle))
    except Exception:
        return None


def _where(handles: list[Any]) -> list[tuple[int, tuple[str, ...]]]:
    """(bytes, Ray's ids of the nodes holding it) of each object, asked of its owner."""
    found = ray.experimental.get_object_locations(handles)
    infos = [found.get(handle) or {} for handle in handles]
    return [(info.get("object_size") or 0, tuple(info.get("node_ids") or ())) for info in infos]


@ray.remote(num_cpus=0)
def _locations(handles: list[Any]) -> list[tuple[int, tuple[str, ...]]]:
    """``_where`` in a worker of the cluster, for a Ray Client driver, which has no core
    worker to ask (the handles travel in a list: Ray resolves no ObjectRef nested in an
    argument). It takes no CPU, so a busy cluster answers at once."""
    return _where(handles)


def _read_name(key: str) -> str | None:
    value = internal_kv._internal_kv_get(key, namespace=NAMES_NAMESPACE)
    return None if value is None else value.decode()


def _add_name(key: str, value: str) -> bool:
    existed = internal_kv._internal_kv_put(key, value, overwrite=False,
                                           namespace=NAMES_NAMESPACE)
    return not existed


def _plait_error(error: Exception) -> Exception:
    """Ray's exception as plait's: the task's own TaskError, or plait's name for Ray's."""
    from ray import exceptions as rx

    if isinstance(error, rx.RayTaskError):
        cause = error.cause                 # (the task's own TaskError, or Ray's error of an
        if isinstance(cause, rx.RayError):  # input it could not read: a cancelled one, ...)
            return _plait_error(cause)
        return cause if isinstance(cause, Exception) else PlaitError(str(error))
    if isinstance(error, rx.TaskCancelledError):
        return TaskCancelledError("")        # (Ray's id of the task: base.py names it)
    if isinstance(error, rx.GetTimeoutError):
        return GetTimeoutError(f"get timed out on the ray engine: {error}")
    if isinstance(error, rx.ObjectFreedError):
        return ObjectFreedError("an object", "released early with plait.free")
    if isinstance(error, rx.ObjectReconstructionFailedError):
        return ReconstructionFailedError(error.object_ref_hex, f"the ray engine: {error}")
    if isinstance(error, rx.ObjectLostError):
        return ObjectLostError(error.object_ref_hex, f"the ray engine: {error}")
    if isinstance(error, rx.WorkerCrashedError):
        return WorkerCrashedError("a task", "", [str(error)])
    return error
