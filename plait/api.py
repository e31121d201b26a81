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
import os
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from plait import compiler
from plait.errors import ClusterError
from plait.executor.driver.session import Session
from plait.executor.engine import Engine
from plait.executor.engine import check_refs as _check_refs
from plait.graph import context
from plait.graph.refs import ObjectRef
from plait.graph.remote_function import ObjectRefGenerator

_lock = threading.RLock()
_session: Engine | None = None
_session_counter = itertools.count(1)


# -- the public functions ----------------------------------------------------------------

def init(num_workers: int | None = None, *, num_nodes: int = 1,
         store_memory: int | None = None,
         spill_dir: str | None = None, spilling: bool = True,
         worker_memory_limit: int | None = None, num_cpus: int | None = None,
         ignore_reinit_error: bool = False, address: str | None = None,
         submit_after_idle: float | None = 0.01, engine: str = "plait",
         **ray_options: Any) -> None:
    """Start the embedded local cluster: one node process and ``num_workers`` workers.

    ``num_nodes`` nodes start on this machine (node-0 is the head), each with its own
    store and ``num_workers`` workers, one per CPU by default (``num_cpus`` is Ray's name);
    ``store_memory`` (bytes) bounds the node's shared-memory store; when it is full, the
    least recently used objects spill to ``spill_dir`` (default: a fresh directory under
    the system's temporary directory) unless ``spilling=False``. A busy worker whose resident
    memory passes ``worker_memory_limit`` bytes is killed and its task retried (then
    OutOfMemoryError); without a limit, only when the machine runs out of memory.

    ``.remote()`` calls are submitted together at the next get/wait (one plan for the
    whole graph) or once no call was made for ``submit_after_idle`` seconds, so calls
    made only for their side effects run as in Ray; None: only at get/wait/shutdown.

    ``engine="ray"`` or ``"dask"`` runs plait's plans on that engine's cluster instead
    (``address``: the engine's own, or a ``distributed.Client``; None starts a local one of
    ``num_cpus`` CPUs, with ``num_nodes`` Dask workers); see plait.engines.
    """
    global _session
    with _lock:
        if _session is not None:
            if ignore_reinit_error:
                return
            raise ClusterError("plait.init was called twice; call plait.shutdown() first or "
                               "pass ignore_reinit_error=True")
        _check_ray_options(ray_options)
        if engine != "plait":
            from plait.engines import start

            _session = start(engine, address, num_cpus=num_cpus or num_workers,
                             num_nodes=num_nodes, submit_after_idle=submit_after_idle)
            context.install(_session)
            return
        if address is not None:
            from plait.executor.driver.discovery import joined_cluster

            _session = Session(joined_cluster(address), 1, submit_after_idle=submit_after_idle)
            context.install(_session)
            return
        workers = num_workers if num_workers is not None else (num_cpus or os.cpu_count() or 1)
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"num_workers must be a positive int, got {workers!r}")
        memory = _check_store_memory(store_memory)
        spill = None
        if spilling:
            spill = spill_dir or ""      # "": the node picks a fresh directory of its own
        if not isinstance(num_nodes, int) or isinstance(num_nodes, bool) or num_nodes < 1:
            raise ValueError(f"num_nodes must be a positive int, got {num_nodes!r}")
        from plait.executor.driver.connection import LocalCluster

        session_id = f"{os.getpid():x}-{next(_session_counter)}"
        cluster = LocalCluster.start(session_id, num_nodes, workers, memory, spill,
                                     worker_memory_limit or 0)
        _session = Session(cluster, num_nodes, submit_after_idle=submit_after_idle)
        context.install(_session)


_IGNORED_RAY_OPTIONS = {"include_dashboard", "log_to_driver", "logging_level", "configure_logging",
                        "namespace", "runtime_env", "dashboard_host", "num_gpus"}


def _check_ray_options(options: dict[str, Any]) -> None:
    unknown = set(options) - _IGNORED_RAY_OPTIONS
    if unknown:
        raise TypeError(f"plait.init() got unknown option(s) {', '.join(sorted(unknown))}")


def _check_store_memory(requested: int | None) -> int:
    """The store size: the default, or the request if /dev/shm can hold it."""
    if requested is None:
        return default_store_memory()
    if not isinstance(requested, int) or isinstance(requested, bool) or requested < (1 << 20):
        raise ValueError(f"store_memory must be a number of bytes >= 1 MiB, got {requested!r}")
    shm = os.statvfs("/dev/shm")
    free = shm.f_bavail * shm.f_frsize
    if requested > free:
        raise ClusterError(f"store_memory={requested} bytes does not fit: /dev/shm has only "
                           f"{free} bytes free")
    return requested


def default_store_memory() -> int:
    from plait.store.arena import default_capacity

    return default_capacity()


def _session_or_start() -> Engine:
    if _session is None:
        init()
    assert _session is not None
    return _session


def session() -> Engine:
    """The running session (inside a task: its worker's own), started on first use."""
    active = context.active()
    if active is not None and not isinstance(active, Engine):
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
        current.shutdown()


def is_initialized() -> bool:
    return _session is not None


def put(value: Any) -> ObjectRef:
    """Store ``value`` immutably in this node's store; returns its ObjectRef."""
    return _runtime().put(value)


def get(refs: ObjectRef | Sequence[ObjectRef], *, timeout: float | None = None) -> Any:
    """Values of ``refs`` (running whatever they need); numpy arrays come back zero-copy."""
    return _runtime().get(refs, timeout=timeout)


def wait(refs: Sequence[ObjectRef], *, num_returns: int = 1, timeout: float | None = None
         ) -> tuple[list[ObjectRef], list[ObjectRef]]:
    """Run what ``refs`` need; return (ready, not ready) once ``num_returns`` are ready."""
    if isinstance(refs, (ObjectRef, ObjectRefGenerator)):
        raise TypeError("plait.wait expects a list of ObjectRefs (or ObjectRefGenerators)")
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
    return _runtime().wait(refs, num_returns, timeout)


def compute(*refs: ObjectRef, timeout: float | None = None) -> tuple[Any, ...]:
    """Run one plan for all ``refs`` and return their values as a tuple (as dask.compute)."""
    return tuple(_runtime().get(list(refs), timeout=timeout))


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
    """Stop the tasks producing ``refs``: pending ones never run, running ones are killed.

    Their refs (and those of tasks depending on them) raise TaskCancelledError; cancelled
    tasks are not retried. A finished task is not affected. A running actor call is asked to
    stop, never killed (see RuntimeContext.is_canceled): ``force=True`` on one is a
    ValueError, as in Ray (``plait.kill`` stops the actor). Ray's keywords are taken; a
    running task is always stopped by killing its worker, so ``force`` changes nothing for
    tasks. With ``recursive`` (the default, as Ray's) the unfinished tasks a killed task
    submitted are cancelled with it, and theirs in turn (not actors' creations or calls);
    without, they run on, their results dropped unless held elsewhere.
    """
    listed = [refs] if isinstance(refs, (ObjectRef, ObjectRefGenerator)) else list(refs)
    listed = [ref.completed() if isinstance(ref, ObjectRefGenerator) else ref   # its task
              for ref in listed]
    if force:
        calls = [ref for ref in listed if getattr(getattr(ref, "task", None), "actor", "")]
        if calls:
            raise ValueError(f"plait.cancel(force=True) cannot stop actor call {calls[0].id}: "
                             f"a running call is only asked to stop; use plait.kill(actor) "
                             f"to stop the actor")
    session().cancel(listed, recursive)


def kill(actor: Any, *, no_restart: bool = True) -> None:
    """Stop an actor's process now. Its pending and later calls raise ActorDiedError; with
    ``no_restart=False`` it starts again if its ``max_restarts`` allows (as ``ray.kill``)."""
    from plait.graph.actor import ActorHandle

    if not isinstance(actor, ActorHandle):
        raise TypeError(f"plait.kill expects an actor handle, got {type(actor).__name__}")
    session().kill_actor(actor.actor_id, no_restart)


def get_actor(name: str) -> Any:
    """The handle of the live actor created with ``.options(name=name)`` (as ``ray.get_actor``);
    ActorNotFoundError (a ValueError) if there is none."""
    if not isinstance(name, str):
        raise TypeError(f"plait.get_actor expects a name, got {type(name).__name__}")
    return _runtime().get_actor(name)


def visualize(*refs: ObjectRef, filename: str | None = None) -> str:
    """Picture the plan for ``refs`` (see Plan.visualize); returns the text written."""
    return session().visualize(list(refs), filename)


def free(refs: ObjectRef | Iterable[ObjectRef]) -> None:
    """Release objects now; a later get of them raises ObjectFreedError."""
    session().free([refs] if isinstance(refs, ObjectRef) else refs)


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
        return self.result

    def __exit__(self, *exc: object) -> None:
        events, end = self.session.trace_since(self.position)
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


def nodes() -> list[Any]:
    """The cluster's nodes (head first): id, address, pid, workers, store capacity."""
    return list(session().refresh_nodes())


def _runtime() -> Any:
    """The session, or inside a task the worker's runtime (which lends its slot to others
    while the task waits for tasks it submitted)."""
    return context.runtime()


context.install_starter(session)
atexit.register(shutdown)

__all__ = ["cancel", "compile", "compute", "free", "get", "get_actor", "get_runtime_context",
           "init", "is_initialized", "kill", "memory_summary", "nodes", "persist", "put",
           "session", "shutdown", "timeline", "trace", "visualize", "wait"]
