"""The public functions: init/put/get/compute... = graph -> compile -> execute -> fetch.

One driver process has one engine session (plait.executor.engine.Engine: the native
``Session`` of plait.executor.driver.session, or a Ray or Dask engine of plait.engines when
``init(engine=...)`` chose one), started by ``init`` or on
first use, stopped by ``shutdown`` or at exit. Inside a task, the same functions go to the
worker's runtime, which serves get/put itself and opens a session of its own for tasks
that submit tasks.
"""

from __future__ import annotations

import atexit
import itertools
import numbers
import os
import subprocess
import threading
from dataclasses import dataclass
from html import escape
from collections.abc import Iterable, Sequence
from typing import Any

from plait import compiler
from plait.compiler.units import format_bytes, parse_bytes
from plait.errors import (ActorNotFoundError, ClusterError, InvalidArgumentError,
                          InvalidOptionError, NotInitializedError)
from plait.executor.driver.session import Session
from plait.executor.engine import Engine
from plait.executor.engine import check_refs as _check_refs
from plait.executor.wire.config import offered_resources
from plait.graph import context
from plait.graph.actor import registered_name
from plait.graph.options import env_vars_of
from plait.graph.refs import ObjectRef
from plait.graph.remote_function import ObjectRefGenerator

_lock = threading.RLock()
_session: Engine | None = None
_session_counter = itertools.count(1)
_dashboard: subprocess.Popen | None = None      # the dashboard's process, if init started one
dashboard_url: str | None = None


# -- the public functions ----------------------------------------------------------------

def init(num_workers: int | None = None, *, num_nodes: int = 1,
         store_memory: int | str | None = None,
         spill_dir: str | None = None, spilling: bool = True,
         worker_memory_limit: int | str | None = None, num_cpus: int | None = None,
         ignore_reinit_error: bool = False, address: str | None = None,
         submit_after_idle: float | None = 0.01, object_store_memory: int | str | None = None,
         num_gpus: float | None = None, resources: dict[str, float] | None = None,
         dashboard: bool | int = False, engine: str = "plait",
         **ray_options: Any) -> ClusterInfo:
    """Start the embedded local cluster: one node process and ``num_workers`` workers.

    ``num_nodes`` nodes start on this machine (node-0 is the head), each with its own
    store and ``num_workers`` workers, one per CPU by default (``num_cpus`` is Ray's name);
    ``store_memory`` (``object_store_memory`` is Ray's name) bounds each node's
    shared-memory store; when it is full, the least recently used objects spill to
    ``spill_dir`` (default: a fresh directory under the system's temporary directory)
    unless ``spilling=False``. A busy worker whose resident memory passes
    ``worker_memory_limit`` is killed and its task retried (then OutOfMemoryError); without
    a limit, only when the machine runs out of memory. Sizes are bytes, or strings with a
    unit as Dask's ``memory_limit``: "512MiB", "2GB".

    Each node offers ``num_gpus`` GPUs and the custom ``resources`` (name -> amount), as
    Ray's ``init`` does: tasks and actors asking for them (``num_gpus=1``,
    ``resources={"disk": 1}``) run where they are offered, while they are free. plait does
    not look for GPUs itself: it offers what it is told (none by default).

    ``.remote()`` calls are submitted together at the next get/wait (one plan for the
    whole graph) or once no call was made for ``submit_after_idle`` seconds, so calls
    made only for their side effects run as in Ray; None: only at get/wait/shutdown.

    What workers print is printed here, as Ray's ``log_to_driver``: ``(f pid=123) line``
    (``log_to_driver=False``: not shown).

    ``dashboard=True`` (or a port) starts the live dashboard (``pip install
    "plait[dashboard]"``) on loopback and prints its URL, token included.

    ``engine="ray"`` or ``"dask"`` runs plait's plans on that engine's cluster instead
    (``address``: the engine's own, or a ``distributed.Client``; None starts a local one of
    ``num_cpus`` CPUs, with ``num_nodes`` Dask workers); see plait.engines.

    Returns a ClusterInfo (Ray's RayContext): the cluster's shape and the dashboard's URL,
    shown as a table in a notebook; ``with plait.init(): ...`` shuts down at the end.
    """
    global _session
    with _lock:
        if _session is not None:
            if ignore_reinit_error:
                return _info(_session)
            raise ClusterError("plait.init was called twice; call plait.shutdown() first or "
                               "pass ignore_reinit_error=True")
        if context.active() is not None:        # in a task: its driver's cluster, as Ray
            if ignore_reinit_error:
                return _info(session())
            raise ClusterError("plait.init was called inside a task, which runs in its "
                               "driver's cluster already; pass ignore_reinit_error=True")
        if address == "local":          # Ray's word for "start a new one, here"
            address = None
        elif address is None and engine == "plait":
            from plait.executor.driver.discovery import cluster_here

            address = cluster_here()    # a plait.cluster_utils.Cluster running here, as Ray
        _check_ray_options(ray_options, joining=address is not None)
        log_to_driver = bool(ray_options.get("log_to_driver", True))
        offered = offered_resources(num_gpus, resources)
        env_vars = _env_vars(ray_options.get("runtime_env"))
        if engine != "plait":
            return _start_engine(engine, address, num_cpus or num_workers, num_nodes,
                                 submit_after_idle, offered, dashboard, env_vars)
        if address is not None and (offered or env_vars):
            raise ValueError("num_gpus, resources and runtime_env describe nodes plait.init "
                             "starts; a joined cluster's nodes offer what `plait start "
                             "--num-gpus --resources` gave them, in its environment")
        if address is not None:
            from plait.executor.driver.discovery import joined_cluster

            _session = Session(joined_cluster(address), 1, submit_after_idle=submit_after_idle,
                               log_to_driver=log_to_driver)
            context.install(_session)
            _open_dashboard(dashboard, address)
            return _info(_session)
        workers = num_workers if num_workers is not None else (num_cpus or os.cpu_count() or 1)
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"num_workers must be a positive int, got {workers!r}")
        memory = _check_store_memory(_one_of(store_memory, object_store_memory))
        spill = None
        if spilling:
            spill = spill_dir or ""      # "": the node picks a fresh directory of its own
        if not isinstance(num_nodes, int) or isinstance(num_nodes, bool) or num_nodes < 1:
            raise ValueError(f"num_nodes must be a positive int, got {num_nodes!r}")
        from plait.executor.driver.cluster import LocalCluster

        session_id = f"{os.getpid():x}-{next(_session_counter)}"
        cluster = LocalCluster.start(session_id, num_nodes, workers, memory, spill,
                                     parse_bytes(worker_memory_limit or 0), offered, env_vars)
        _session = Session(cluster, num_nodes, submit_after_idle=submit_after_idle,
                           log_to_driver=log_to_driver)
        context.install(_session)
        _open_dashboard(dashboard, cluster.client_address)
        return _info(_session)


@dataclass(frozen=True)
class ClusterInfo:
    """What ``plait.init()`` returns: the cluster's shape and where to watch it."""

    session: str
    address: str
    nodes: tuple[Any, ...]                   # NodeInfo, head first
    dashboard_url: str | None

    def __repr__(self) -> str:
        workers = sum(n.workers for n in self.nodes)
        store = sum(n.store_capacity for n in self.nodes)
        lines = [f"plait cluster {self.session}: {len(self.nodes)} node(s), {workers} "
                 f"worker(s), {format_bytes(store)} of store", f"  address:   {self.address}"]
        if self.dashboard_url:
            lines.append(f"  dashboard: {self.dashboard_url}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{escape(n.id)}{' (head)' if n.is_head else ''}</td>"
                       f"<td>{n.workers}</td><td>{format_bytes(n.store_capacity)}</td></tr>"
                       for n in self.nodes)
        link = (f'<p>Dashboard: <a href="{escape(self.dashboard_url)}" target="_blank">'
                f"{escape(self.dashboard_url.split('?', 1)[0])}</a></p>"
                if self.dashboard_url else "")
        return (f"<div><b>plait cluster</b> {escape(self.session)} at "
                f"<code>{escape(self.address)}</code>{link}<table><tr><th>node</th>"
                f"<th>workers</th><th>store</th></tr>{rows}</table></div>")

    def __enter__(self) -> ClusterInfo:
        return self

    def __exit__(self, *exc: object) -> None:
        shutdown()


def _info(current: Any) -> ClusterInfo:
    if not isinstance(current, Session):                 # an engine's (plait.engines)
        return ClusterInfo(current.name, str(getattr(current, "address", None) or "local"),
                           tuple(current.refresh_nodes()), None)
    address = current.cluster.client_address.removeprefix("tcp://")
    return ClusterInfo(current.id, address, tuple(current.nodes), dashboard_url)


def _start_engine(engine: str, address: Any, num_cpus: int | None, num_nodes: int,
                  submit_after_idle: float | None, offered: dict[str, float],
                  dashboard: bool | int, env_vars: dict[str, str]) -> ClusterInfo:
    """plait.init(engine="ray" | "dask"): plans run on that engine's cluster. What only
    plait's own nodes have (a dashboard, resources and environment set by init) is refused
    by name."""
    global _session
    for asked, feature in ((offered, "num_gpus/resources at init"),
                           (env_vars, "runtime_env at init"),
                           (dashboard not in (False, None), "the dashboard")):
        if asked:
            raise NotImplementedError(f"the {engine} engine does not take {feature}: its "
                                      f"cluster's nodes are the engine's own")
    from plait.engines import start

    _session = start(engine, address, num_cpus=num_cpus, num_nodes=num_nodes,
                     submit_after_idle=submit_after_idle)
    context.install(_session)
    return _info(_session)


def _open_dashboard(dashboard: bool | int, address: str) -> None:
    """Start the dashboard's process for this session's cluster and print its URL."""
    global _dashboard, dashboard_url
    if dashboard is False or dashboard is None:
        return
    from plait.executor.driver.dashboard import start_dashboard

    port = 0 if dashboard is True else int(dashboard)
    try:
        _dashboard, dashboard_url = start_dashboard(address, port=port, watch_pid=os.getpid())
    except ClusterError:
        shutdown()
        raise
    print(f"plait dashboard: {dashboard_url}", flush=True)


# Ray options with nothing to do here: logging, the dashboard's, and ``_system_config``
# (Ray's internal tuning knobs, named after its C++ core; plait has no counterpart).
_IGNORED_RAY_OPTIONS = {"include_dashboard", "logging_level", "configure_logging",
                        "namespace", "dashboard_host", "_system_config", "dashboard_port",
                        "logging_format", "logging_config", "labels", "_node_ip_address",
                        "_memory", "_plasma_directory", "_metrics_export_port", "_temp_dir",
                        "_enable_object_reconstruction", "_redis_password",
                        "enable_resource_isolation", "_tracing_startup_hook", "job_config"}
# Options that configure the cluster being started: Ray refuses them when joining one.
_STARTING_ONLY_RAY_OPTIONS = {"_system_config"}


def _check_ray_options(options: dict[str, Any], joining: bool = False) -> None:
    """Ray's init options plait takes and ignores (``_system_config`` tunes Ray's own
    internals, none of which plait has); others are a TypeError, and, as in Ray, a
    ``_system_config`` passed when joining a running cluster is a ValueError and
    ``local_mode=True`` an InvalidOptionError."""
    if options.get("local_mode"):
        raise InvalidOptionError("local_mode (run every task in the driver, one at a time) is "
                                 "not supported, as Ray no longer supports it; leave it out")
    if options.get("job_config") is not None:
        raise InvalidOptionError("job_config (Ray's JobConfig) is not supported; leave it out "
                                 "(runtime_env and namespace are init's own options)")
    unknown = set(options) - _IGNORED_RAY_OPTIONS - {"local_mode", "runtime_env", "log_to_driver"}
    if unknown:
        raise TypeError(f"plait.init() got unknown option(s) {', '.join(sorted(unknown))}")
    starting = sorted(set(options) & _STARTING_ONLY_RAY_OPTIONS)
    if joining and starting:
        raise ValueError(f"{', '.join(starting)} configures a cluster plait.init starts; "
                         f"it cannot be given when connecting to a running one")


def _env_vars(runtime_env: Any) -> dict[str, str]:
    """Ray's ``init(runtime_env={"env_vars": {...}})``: variables every worker of the
    nodes plait.init starts has in its environment (the driver's stays as it is). A
    ``working_dir`` of the driver's own directory changes nothing here (the workers run in
    it already, and import what the driver can); the rest as a task's (options.py)."""
    if isinstance(runtime_env, dict) and runtime_env.get("working_dir") is not None and \
            os.path.realpath(str(runtime_env["working_dir"])) == os.path.realpath(os.getcwd()):
        runtime_env = {k: v for k, v in runtime_env.items() if k != "working_dir"}
    return env_vars_of(runtime_env)


def _one_of(store_memory: int | str | None, object_store_memory: int | str | None
            ) -> int | str | None:
    """The store size asked for under plait's name or Ray's (not two different ones)."""
    if None not in (store_memory, object_store_memory) and \
            parse_bytes(store_memory) != parse_bytes(object_store_memory):
        raise ValueError(f"store_memory={store_memory} and object_store_memory="
                         f"{object_store_memory} disagree: they name the same size; pass one")
    return object_store_memory if store_memory is None else store_memory


def _check_store_memory(requested: int | str | None) -> int:
    """The store size: the default, or the request if /dev/shm can hold it."""
    from plait.store.arena import checked_capacity

    return default_store_memory() if requested is None else checked_capacity(
        parse_bytes(requested))


def default_store_memory() -> int:
    from plait.store.arena import default_capacity

    return default_capacity()


# Ray's switch for starting a cluster on first use (``ray._private.auto_init_hook``): "0"
# turns it off, so that a program that forgot init() fails instead of starting one.
AUTO_START_SETTING = "RAY_ENABLE_AUTO_CONNECT"


def _session_or_start() -> Engine:
    if _session is None:
        if os.environ.get(AUTO_START_SETTING) == "0":
            raise NotInitializedError(
                f"no plait session is running, and starting one on first use is turned off "
                f"({AUTO_START_SETTING}=0, Ray's setting): call plait.init() first")
        init()
    assert _session is not None
    return _session


def session() -> Engine:
    """The running session (inside a task: its worker's own, on Ray or Dask the worker's
    engine session), started on first use."""
    active = context.active()
    if isinstance(active, Engine):
        return active
    if active is not None:
        return active.nested()
    return _session_or_start()


def shutdown() -> None:
    """Stop the cluster: no process, socket or shared-memory segment is left behind."""
    global _session
    with _lock:
        if _session is None:
            return
        current, _session = _session, None
        context.install(None)
        _close_dashboard()
        current.shutdown()


def _close_dashboard() -> None:
    global _dashboard, dashboard_url
    if _dashboard is not None:
        from plait.executor.driver.dashboard import stop_dashboard

        stop_dashboard(_dashboard)
        _dashboard, dashboard_url = None, None


def is_initialized() -> bool:
    """Whether a session runs: after init in the driver, and always inside a task."""
    return _session is not None or context.active() is not None


def put(value: Any, *, _owner: Any = None) -> ObjectRef:
    """Store ``value`` immutably in this node's store; returns its ObjectRef.

    ``_owner`` (Ray's: an actor that owns the object, so it outlives the caller) is taken
    and not needed: a plait object lives while any ref to it does, wherever it is held."""
    return _runtime().put(value)


def get(refs: ObjectRef | Sequence[ObjectRef], *, timeout: float | None = None) -> Any:
    """Values of ``refs`` (running whatever they need); numpy arrays come back zero-copy.
    An ObjectRefGenerator comes back as it is (as Ray's get gives it): iterate it."""
    if isinstance(refs, ObjectRefGenerator):
        return refs
    return _runtime().get(refs, timeout=_get_timeout(timeout, "plait.get"))


def _check_timeout(timeout: Any, where: str) -> None:
    """A wait's timeout is None (no limit) or seconds >= 0 (Ray's ValueError if negative)."""
    _get_timeout(timeout, where)                   # (a number, or None)
    if timeout is not None and timeout < 0:
        raise ValueError(f"{where}'s timeout must be >= 0 (None: no limit), got {timeout}")


def _get_timeout(timeout: Any, where: str) -> float | None:
    """A get's timeout: seconds, or None for no limit, which a negative one means too (as
    Ray's ``get(timeout=-1)``); anything but a number is a TypeError."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError(f"{where}'s timeout must be a number of seconds or None, got "
                        f"{timeout!r}")
    return None if timeout < 0 else timeout


def wait(refs: Sequence[ObjectRef], *, num_returns: int = 1, timeout: float | None = None,
         fetch_local: bool = True) -> tuple[list[ObjectRef], list[ObjectRef]]:
    """Run what ``refs`` need; return (ready, not ready) once ``num_returns`` are ready.

    ``fetch_local`` is taken for Ray's scripts and changes nothing: an object is ready once
    it exists on any node (Ray's ``fetch_local=False``); a get reads it from there."""
    if isinstance(refs, (ObjectRef, ObjectRefGenerator)):
        raise InvalidArgumentError("plait.wait expects a list of ObjectRefs (or "
                                   "ObjectRefGenerators)")
    _check_timeout(timeout, "plait.wait")
    refs = list(refs)
    _check_refs([ref for ref in refs if not isinstance(ref, ObjectRefGenerator)], "plait.wait")
    if not refs:
        return [], []                # nothing to wait for (Ray allows it too)
    seen: set[str] = set()
    for ref in refs:
        name = ref.id if isinstance(ref, ObjectRef) else repr(ref)
        if name in seen:         # which of the two is "ready"? Ray refuses, and so do we
            raise ValueError(f"plait.wait was given {name} twice; wait needs a list of "
                             f"distinct refs")
        seen.add(name)
    if not (isinstance(num_returns, int) and 1 <= num_returns <= len(refs)):
        raise ValueError(f"num_returns={num_returns!r} must be between 1 and {len(refs)}, "
                         f"the number of refs given (as Ray asks)")
    return _runtime().wait(refs, num_returns, timeout)


def compute(*refs: ObjectRef, timeout: float | None = None) -> tuple[Any, ...]:
    """Run one plan for all ``refs`` and return their values as a tuple (as dask.compute)."""
    return tuple(_runtime().get(list(refs), timeout=_get_timeout(timeout, "plait.compute")))


def persist(*refs: ObjectRef) -> tuple[ObjectRef, ...]:
    """Run what ``refs`` need and keep the results where they were made; returns the refs
    as a tuple, even of one (as ``dask.persist`` and ``plait.compute``)."""
    refs_list = _check_refs(refs, "plait.persist")
    _runtime().wait(refs_list, len(refs_list), None)
    return tuple(refs_list)


def compile(*refs: ObjectRef) -> compiler.Plan:
    """The plan that ``get(refs)`` would run, without running it."""
    plan = session().compile(list(refs))
    if plan is None:
        return compiler.Plan(tuple(ref.id for ref in refs), {}, (), (), {})
    return plan


def cancel(refs: ObjectRef | Iterable[ObjectRef], *, force: bool = False,
           recursive: bool = True) -> None:
    """Stop the tasks producing ``refs``, as Ray's ``ray.cancel``: pending ones never run;
    a running one gets KeyboardInterrupt in its code (``force=True``: its worker is killed).

    Their refs (and those of tasks depending on them) raise TaskCancelledError, unless an
    interrupted task catches the KeyboardInterrupt and returns a value (then that is its
    result; ``get_runtime_context().is_canceled()`` is True in it); cancelled tasks are not
    retried. A task that ignores the interrupt runs on until ``plait.cancel(ref,
    force=True)``. A finished task is not affected. A running generator task is always
    killed. A running actor call is asked to stop, never killed (see
    RuntimeContext.is_canceled): ``force=True`` on one is a ValueError, as in Ray
    (``plait.kill`` stops the actor). With ``recursive`` (the default, as Ray's) the
    unfinished tasks a cancelled task submitted are cancelled with it, the same way, and
    theirs in turn (not actors' creations or calls; all those its worker process
    submitted); without, they run on, their results dropped unless held elsewhere.
    """
    single = isinstance(refs, (ObjectRef, ObjectRefGenerator)) or not isinstance(refs, Iterable)
    listed = [refs] if single else list(refs)
    for ref in listed:
        if not isinstance(ref, (ObjectRef, ObjectRefGenerator)):
            raise InvalidArgumentError(f"plait.cancel expects ObjectRefs (to stop an actor, "
                                       f"use plait.kill), got {type(ref).__name__}")
    listed = [ref.completed() if isinstance(ref, ObjectRefGenerator) else ref   # its task
              for ref in listed]
    if force:
        calls = [ref for ref in listed if getattr(getattr(ref, "task", None), "actor", "")]
        if calls:
            raise ValueError(f"plait.cancel(force=True) cannot stop actor call {calls[0].id}: "
                             f"a running call is only asked to stop; use plait.kill(actor) "
                             f"to stop the actor")
    session().cancel(listed, recursive, force)


def kill(actor: Any, *, no_restart: bool = True) -> None:
    """Stop an actor's process now. Its pending and later calls raise ActorDiedError; with
    ``no_restart=False`` it starts again if its ``max_restarts`` allows (as ``ray.kill``)."""
    from plait.graph.actor import ActorHandle

    if not isinstance(actor, ActorHandle):
        raise InvalidArgumentError(f"plait.kill expects an actor handle (for a task, use "
                                   f"plait.cancel), got {type(actor).__name__}")
    session().kill_actor(actor.actor_id, no_restart)


def get_actor(name: str, namespace: str | None = None) -> Any:
    """The handle of the live actor created with ``.options(name=name)`` (as ``ray.get_actor``;
    with ``namespace``, the one created with that ``namespace=``); ActorNotFoundError (a
    ValueError) if there is none."""
    if not isinstance(name, str) or not name:     # Ray: a ValueError; this is both
        raise InvalidArgumentError(f"plait.get_actor expects a non-empty name, got {name!r}")
    try:
        return _runtime().get_actor(registered_name(name, namespace))
    except ActorNotFoundError:        # (the head knows the name as registered: "ns/name")
        scope = f" in namespace {namespace!r}" if namespace else ""
        raise ActorNotFoundError(f"no actor named {name!r}{scope} is alive in this cluster"
                                 ) from None


def visualize(*refs: ObjectRef, filename: str | None = None) -> str:
    """Picture the plan for ``refs`` (see Plan.visualize); returns the text written."""
    return session().visualize(list(refs), filename)


def free(refs: ObjectRef | Iterable[ObjectRef]) -> None:
    """Release objects now; a later get of them raises ObjectFreedError."""
    _runtime().free([refs] if isinstance(refs, ObjectRef) else refs)


class trace:
    """``with plait.trace() as t:`` records every task and transfer of the block.

    ``t.tasks`` (task, function, node, worker, start, end), ``t.transfers`` (object, src,
    dst, nbytes, start, end), ``t.bytes_moved``, ``t.save("run.json")`` (Chrome/Perfetto).
    The head keeps the newest 50,000 events: ``t.dropped`` counts older ones of the block.
    """

    def __enter__(self) -> Any:
        from plait.executor.driver.trace import Trace

        self.session = session()
        self.position = self.session.trace_since(-1)[1]
        self.result = Trace()
        self.session.tracing(True)
        return self.result

    def __exit__(self, *exc: object) -> None:
        try:
            events, end = self.session.trace_since(self.position)
        finally:
            self.session.tracing(False)
        self.result.add(events)
        self.result.dropped = end - self.position - len(events)


def timeline(filename: str | None = None) -> list[dict]:
    """What the head recorded (its newest 50,000 tasks and transfers), as Chrome trace
    events (written to ``filename``)."""
    from plait.executor.driver.trace import Trace

    recorded = Trace()
    recorded.add(session().trace_since(0)[0])
    if filename is not None:
        recorded.save(filename)
    return recorded.to_chrome()["traceEvents"]


def memory_summary(stats_only: bool = False) -> str:
    """Per node: capacity, used, pinned and spilled bytes, and the largest objects."""
    from plait.store.report import format_memory

    return format_memory(session().memory_summary(), largest=not stats_only)


def get_runtime_context() -> context.RuntimeContext:
    """Node, worker and task of the caller (in the driver: the head node, no task)."""
    return _runtime().runtime_context()


def cluster_resources() -> dict[str, float]:
    """What the cluster's nodes offer in all, by Ray's names: ``CPU`` (worker slots),
    ``GPU``, ``memory``, ``object_store_memory`` (bytes) and custom resources."""
    return _summed(node.total for node in session().resources())


def available_resources() -> dict[str, float]:
    """What no running task or live actor holds now (names as ``cluster_resources``;
    those with nothing free are left out, as Ray leaves them out)."""
    return {name: amount for name, amount in
            _summed(node.free for node in session().resources()).items() if amount > 0}


def _summed(per_node: Iterable[tuple[tuple[str, float], ...]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for amounts in per_node:
        for name, amount in amounts:
            total[name] = total.get(name, 0.0) + amount
    return total


def get_gpu_ids() -> list[int]:
    """The GPUs the running task or actor holds (``CUDA_VISIBLE_DEVICES`` is set to
    them); in the driver, none."""
    return list(_runtime().runtime_context().gpu_ids)


def nodes() -> list[Node]:
    """The cluster's nodes (head first): id, address, pid, workers, store capacity."""
    return [Node(info) for info in session().refresh_nodes()]


class Node(dict):
    """A node as ``plait.nodes()`` lists it: the dict Ray's ``ray.nodes()`` gives
    (``node["NodeID"]``, ``"Alive" in node``, ``json.dumps``), whose attributes are plait's
    fields of it (``node.id``, ``node.is_head``, ``node.workers``: protocol.NodeInfo)."""

    def __init__(self, info: Any) -> None:
        super().__init__(info.as_ray())
        self.info = info

    def __getattr__(self, name: str) -> Any:
        info = self.__dict__.get("info")           # (absent while unpickling)
        if info is None:
            raise AttributeError(name)
        return getattr(info, name)


def _runtime() -> Any:
    """The session, or inside a task the worker's runtime (which lends its slot to others
    while the task waits for tasks it submitted)."""
    return context.runtime()


context.install_starter(session)
atexit.register(shutdown)

__all__ = ["available_resources", "cancel", "cluster_resources", "compile", "compute", "free",
           "get", "get_actor", "get_gpu_ids", "get_runtime_context", "init", "is_initialized",
           "kill", "memory_summary", "nodes", "persist", "put", "session", "shutdown",
           "timeline", "trace", "visualize", "wait"]
