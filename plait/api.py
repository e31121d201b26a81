"""The session: init/put/get/compute... = graph -> compile -> execute -> fetch.

One ``Session`` per driver process. It starts (or later, joins) the cluster, turns the lazy
graph behind requested refs into a plan with the pure compiler, submits the plan's tasks
to the head, and reads results: small ones arrive inline, large ones are mapped straight
from the node's shared-memory arena (zero-copy, read-only).

Lifetimes: every ObjectRef reports its birth and death here. Deaths are queued (``__del__``
may run on any thread) and turned into ``Free`` messages at the next call into the
session, once no zero-copy view of the object is alive in this process either.
"""

from __future__ import annotations

import atexit
import itertools
import os
import pickle
import sys
import threading
import weakref
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from typing import Any

from plait import compiler
from plait.errors import (ClusterError, GetTimeoutError, ObjectFreedError, ObjectLostError,
                          PlaitError, TaskCancelledError)
from plait.graph import context
from plait.graph.graph import collect
from plait.graph.ids import IdGenerator
from plait.graph.refs import ObjectRef, collecting_refs
from plait.progress import Progress
from plait.store.serialization import INLINE_THRESHOLD, deserialize, serialize

_lock = threading.RLock()
PROGRESS_SLICE = 0.25          # seconds between progress redraws while waiting
_session: Session | None = None
_session_counter = itertools.count(1)


class Session:
    """The driver's view of one running cluster."""

    def __init__(self, cluster: Any, nodes_expected: int) -> None:
        from plait.executor.client import Connection
        from plait.executor.hostid import host_id

        self.cluster = cluster
        try:
            self.conn = Connection(cluster)
            welcome = self.conn.handshake(nodes_expected)
        except BaseException:
            for process in getattr(cluster, "processes", ()):
                process.kill()
            cluster.stop()
            raise
        self.id = welcome.session
        self.nodes = welcome.nodes
        self.host = host_id()
        self.owns_cluster = hasattr(cluster, "processes")
        self.arenas: dict[str, Any] = {}
        self.ids = IdGenerator()
        self.refs: Counter[str] = Counter()           # live ObjectRefs per object
        self.held: set[str] = set()                   # objects the head counts us holding
        self.holds: list[str] = []                    # Hold messages not sent yet
        self.pins: Counter[str] = Counter()           # loads with live zero-copy views
        self.dead: deque[str] = deque()               # refs died (any thread)
        self.unpinned: deque[tuple[str, str]] = deque()   # (node, object) views died
        self.values: dict[str, Any] = {}             # object -> protocol value, once known
        self.pending: set[str] = set()                # submitted, result not yet known
        self.asked: set[str] = set()                  # subscribed, answer not yet come
        self.functions_sent: set[str] = set()
        self.requests = itertools.count(1)
        self.replies: dict[int, Any] = {}

    # -- the Runtime protocol (called by ObjectRef and RemoteFunction) ------------------

    def incref(self, object_id: str) -> None:
        self.refs[object_id] += 1
        if object_id not in self.held:    # a ref found inside another object
            self.held.add(object_id)
            self.holds.append(object_id)

    def decref(self, object_id: str) -> None:
        self.dead.append(object_id)

    def new_id(self, stem: str) -> str:
        return self.ids.new(stem)

    def describe(self, object_id: str) -> str:
        from plait.executor import protocol as p

        value = self.values.get(object_id)
        if value is None:
            return "pending" if object_id in self.pending else "lazy"
        return "failed" if isinstance(value, p.Failed) else "ready"

    # -- objects -------------------------------------------------------------------------

    def put(self, value: Any) -> ObjectRef:
        """Store ``value`` on this node: inline when small, else one copy into the arena."""
        from plait.executor import protocol as p

        if isinstance(value, ObjectRef):
            raise TypeError("plait.put of an ObjectRef: pass the ref itself instead")
        self.flush_frees()
        with collecting_refs() as found:
            serialized = serialize(value)
        contains = tuple(dict.fromkeys(ref.id for ref in found))
        object_id = self.new_id("put")
        nbytes = serialized.nbytes
        if nbytes <= INLINE_THRESHOLD or self.nodes[0].host != self.host:
            # small, or the head is on another host: the bytes travel in the message
            stored: Any = p.Inline(serialized.to_bytes(), contains)
            self.conn.send(p.PutInline(object_id, stored))
        else:
            reply = self.request(p.Alloc(next(self.requests), object_id, nbytes, _call_site()))
            arena = self.arena(reply.node)
            arena.prefault(reply.offset, nbytes)
            serialized.write_into(arena.block(reply.offset, nbytes))
            self.conn.send(p.Seal(object_id, contains))
            stored = p.Stored(reply.node, nbytes, contains)
        self.values[object_id] = stored
        self.held.add(object_id)
        return ObjectRef(object_id)

    def get(self, refs: Any, timeout: float | None = None) -> Any:
        many = isinstance(refs, (list, tuple))
        wanted = _check_refs(refs if many else [refs], "plait.get")
        self.run(wanted)
        ids = [ref.id for ref in wanted]
        self.fetch(ids, len(wanted), timeout)
        pinned = self.pin_stored(ids)
        values = [self.load(oid, pinned.get(oid)) for oid in ids]
        return values if many else values[0]

    def wait(self, refs: Sequence[ObjectRef], num_returns: int, timeout: float | None
             ) -> tuple[list[ObjectRef], list[ObjectRef]]:
        refs = _check_refs(refs, "plait.wait")
        if not 0 <= num_returns <= len(refs):
            raise ValueError(f"num_returns={num_returns} must be between 0 and {len(refs)}")
        self.run(refs)
        self.fetch([ref.id for ref in refs], num_returns, timeout, raise_timeout=False)
        ready = [ref for ref in refs if ref.id in self.values][:num_returns]
        chosen = {id(ref) for ref in ready}
        return ready, [ref for ref in refs if id(ref) not in chosen]

    def free(self, refs: Iterable[ObjectRef]) -> None:
        from plait.executor import protocol as p

        ids = tuple(ref.id for ref in _check_refs(list(refs), "plait.free"))
        for oid in ids:
            error = ObjectFreedError(oid, "released early with plait.free")
            self.values[oid] = p.Failed(pickle.dumps(error))
        self.conn.send(p.Free(ids, forced=True))

    def pin_stored(self, object_ids: list[str]) -> dict[str, Any]:
        """Where to read the stored objects among ``object_ids``.

        Objects on this host are pinned (one round trip for all) and read in place; those
        held on other hosts are fetched over the network into private memory.
        """
        from plait.executor import protocol as p

        stored = [oid for oid in dict.fromkeys(object_ids)
                  if isinstance(self.values[oid], p.Stored)]
        far = [oid for oid in stored if self.node_info(self.values[oid].node).host != self.host]
        near = tuple(oid for oid in stored if oid not in far)
        found = dict(self.request(p.Pin(next(self.requests), near)).values) if near else {}
        for oid in far:
            found[oid] = self.fetch_far(oid)
        return found

    def fetch_far(self, object_id: str) -> Any:
        from plait.executor import protocol as p
        from plait.executor.client import pull_object

        info = self.node_info(self.values[object_id].node)
        return p.Inline(pull_object(self.conn.ctx, info.address, self.conn.key, object_id))

    def node_info(self, node: str) -> Any:
        return next(n for n in self.nodes if n.id == node)

    def cancel(self, refs: list[ObjectRef]) -> None:
        from plait.executor import protocol as p

        for ref in _check_refs(refs, "plait.cancel"):
            task = ref.task
            if task is not None and not task.submitted:     # lazy: it simply never runs
                task.submitted = True
                task.forget_inputs()
                for oid in task.output_ids:
                    self.values[oid] = p.Failed(pickle.dumps(TaskCancelledError(task.id)))
        self.conn.send(p.Cancel(tuple(ref.id for ref in refs)))

    def load(self, object_id: str, pinned: Any = None) -> Any:
        """Rebuild an object; arena-backed buffers come back zero-copy and read-only.

        A pinned object stays in memory while any view of it lives: all its buffers are
        slices of one ``holder`` array, whose finalizer ends the pin.
        """
        import numpy

        from plait.executor import protocol as p

        value = pinned if pinned is not None else self.values[object_id]
        if isinstance(value, p.Inline):
            return deserialize(value.data)
        if isinstance(value, p.Failed):
            raise pickle.loads(value.error)
        assert isinstance(value, p.Located), value
        holder = numpy.frombuffer(self.arena(value.node).block(value.offset, value.nbytes),
                                  dtype=numpy.uint8)
        self.pins[object_id] += 1
        weakref.finalize(holder, self.unpinned.append, (value.node, object_id))
        return deserialize(holder)

    def arena(self, node: str) -> Any:
        """The arena of a node on this host, mapped on first use."""
        from plait.store.arena import Arena

        if node not in self.arenas:
            self.arenas[node] = Arena.attach(self.node_info(node).arena)
        return self.arenas[node]

    def trace_since(self, position: int) -> tuple[tuple[Any, ...], int]:
        from plait.executor import protocol as p

        report = self.request(p.TraceRequest(next(self.requests), position))
        return report.events, report.position

    def memory_summary(self) -> tuple[Any, ...]:
        from plait.executor import protocol as p

        return self.request(p.MemoryRequest(next(self.requests))).nodes

    # -- running graphs ------------------------------------------------------------------

    def compile(self, refs: Sequence[ObjectRef]) -> compiler.Plan | None:
        """The plan that would run what ``refs`` need (None when nothing needs to run)."""
        graph, _ = collect(_check_refs(refs, "plait.compile"))
        return self.plan(graph) if graph.tasks else None

    def runtime_context(self) -> context.RuntimeContext:
        return context.RuntimeContext(self.nodes[0].id, None, None, self.id)

    def visualize(self, refs: list[ObjectRef], filename: str | None) -> str:
        plan = self.compile(refs) or compiler.Plan(tuple(r.id for r in refs), {}, (), (), {})
        return plan.visualize(filename)

    def plan(self, graph: Any) -> compiler.Plan:
        from plait.executor import protocol as p

        reply = self.request(p.ViewRequest(next(self.requests), tuple(graph.inputs())))
        for _, error in reply.missing:
            raise pickle.loads(error)
        return compiler.compile(graph, reply.view)

    def run(self, refs: Sequence[ObjectRef]) -> None:
        """Compile and submit every task ``refs`` need that has not been submitted yet."""
        from plait.executor import protocol as p

        self.flush_frees()
        graph, tasks = collect(refs)
        if not graph.tasks:
            return
        plan = self.plan(graph)
        functions, specs = [], []
        for task_id, node in graph.tasks.items():
            task = tasks[task_id]
            function_id, data = task.function.pickled()
            if function_id not in self.functions_sent:
                self.functions_sent.add(function_id)
                functions.append((function_id, data))
            placement = plan.placements[task_id]
            specs.append(p.TaskSpec(task_id, function_id, node.function_name, task.payload,
                                    node.deps, node.nested, node.outputs, node.max_retries,
                                    placement.node, placement.follows, placement.priority,
                                    node.node is not None,
                                    _retry_exceptions(task.options.retry_exceptions)))
        self.conn.send(p.Submit(tuple(functions), tuple(specs), tuple(plan.releases.items())))
        for task in tasks.values():
            task.submitted = True
            task.forget_inputs()
            self.pending.update(task.output_ids)
            self.held.update(task.output_ids)
        self.flush_frees()

    def fetch(self, object_ids: list[str], count: int, timeout: float | None,
              raise_timeout: bool = True) -> None:
        """Wait until at least ``count`` of ``object_ids`` are known (ready or failed)."""
        from plait.executor import protocol as p

        self.flush_frees()
        unique = list(dict.fromkeys(object_ids))
        missing = {oid for oid in unique if oid not in self.values}
        unknown = [oid for oid in unique if oid in missing and oid not in self.asked]
        if unknown:
            self.asked.update(unknown)
            self.conn.send(p.Subscribe(tuple(unknown)))
        need = min(count, len(unique))
        deadline = None if timeout is None else _now() + timeout
        progress = Progress()
        try:
            while len(unique) - len(missing) < need:
                progress.update(len(unique) - len(missing), len(unique))
                left = PROGRESS_SLICE if deadline is None else deadline - _now()
                if left <= 0:
                    if not raise_timeout:
                        return
                    first = next(oid for oid in unique if oid in missing)
                    raise GetTimeoutError(
                        f"get timed out after {timeout} s with {len(missing)} of "
                        f"{len(unique)} object(s) not ready (first: {first}); the tasks keep "
                        f"running, so a later get can still succeed")
                missing.difference_update(self.pump(min(left, PROGRESS_SLICE)))
        finally:
            progress.close()

    def pump(self, timeout: float | None) -> list[str]:
        """Receive and apply one message (if one comes within ``timeout``); the objects it
        made known."""
        from plait.executor import protocol as p

        message = self.conn.receive(timeout)
        if message is None:
            return []
        if not isinstance(message, p.Ready):
            self.replies[message.request] = message
            return []
        known = []
        for oid, value in message.values:
            self.pending.discard(oid)
            if oid in self.asked or self.refs[oid] > 0:
                self.asked.discard(oid)
                self.values[oid] = value
                known.append(oid)
        return known

    def request(self, message: Any) -> Any:
        """Send a request and wait for its reply (raising the error of a Refused one)."""
        from plait.executor import protocol as p

        self.flush_frees()
        self.conn.send(message)
        while message.request not in self.replies:
            self.pump(None)          # checks that the head is alive while it waits
        reply = self.replies.pop(message.request)
        if isinstance(reply, p.Refused):
            raise pickle.loads(reply.error)
        return reply

    # -- lifetimes -----------------------------------------------------------------------

    def flush_frees(self) -> None:
        """Turn dead refs and dead views into Free messages (objects nobody here can read)."""
        from plait.executor import protocol as p

        if self.holds:
            self.conn.send(p.Hold(tuple(self.holds)))
            self.holds.clear()
        released, unpins = [], []
        while self.dead:
            oid = self.dead.popleft()
            self.refs[oid] -= 1
            if self.refs[oid] <= 0:
                del self.refs[oid]
                if oid not in self.pins:
                    released.append(oid)
        while self.unpinned:
            node, oid = self.unpinned.popleft()
            unpins.append((node, oid))
            self.pins[oid] -= 1
            if self.pins[oid] <= 0:
                del self.pins[oid]
                if oid not in self.refs:
                    released.append(oid)
        if unpins:
            self.conn.send(p.Unpin(tuple(unpins)))
        for oid in released:
            self.values.pop(oid, None)
            self.held.discard(oid)
        if released:
            self.conn.send(p.Free(tuple(released)))

    def shutdown(self) -> None:
        """Stop the cluster this driver started; from a joined one, only disconnect."""
        from plait.executor import protocol as p

        if self.owns_cluster:
            try:
                self.conn.send(p.Bye())
            except Exception:
                pass
        else:                       # leave the cluster as we found it: release our objects
            self.flush_frees()
            if self.held:
                self.conn.send(p.Free(tuple(self.held)))
        self.cluster.stop()
        self.conn.close()
        for arena in self.arenas.values():
            try:
                arena.close()
            except BufferError:
                pass   # the user still holds zero-copy arrays; the mapping goes with them


def _retry_exceptions(option: bool | Sequence[type]) -> bytes:
    """The retry_exceptions option as the worker will read it (b"" for no retries)."""
    import cloudpickle

    if option is True:
        return pickle.dumps(True)
    return cloudpickle.dumps(tuple(option)) if option else b""


def _call_site() -> str:
    """``file:line`` of the user's code that called into plait (for memory reports)."""
    frame = sys._getframe(1)
    package = os.path.dirname(__file__)
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame = frame.f_back
    if frame is None:
        return "plait"
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"


def _check_refs(refs: Iterable[Any], where: str) -> list[ObjectRef]:
    refs = list(refs)
    for ref in refs:
        if not isinstance(ref, ObjectRef):
            raise TypeError(f"{where} expects ObjectRefs, got {type(ref).__name__}: {ref!r:.60}")
        if ref.owner is not None and ref.owner is not context.active():
            raise ObjectLostError(ref.id, "it belongs to a plait session that was shut down")
    return refs


def _now() -> float:
    import time

    return time.monotonic()


# -- the public functions ----------------------------------------------------------------

def init(num_workers: int | None = None, *, num_nodes: int = 1,
         store_memory: int | None = None,
         spill_dir: str | None = None, spilling: bool = True, num_cpus: int | None = None,
         ignore_reinit_error: bool = False, address: str | None = None,
         **ray_options: Any) -> None:
    """Start the embedded local cluster: one node process and ``num_workers`` workers.

    ``num_nodes`` nodes start on this machine (node-0 is the head), each with its own
    store and ``num_workers`` workers, one per CPU by default (``num_cpus`` is Ray's name);
    ``store_memory`` (bytes) bounds the node's shared-memory store; when it is full, the
    least recently used objects spill to ``spill_dir`` (default: a fresh directory under
    the system's temporary directory) unless ``spilling=False``.
    """
    global _session
    with _lock:
        if _session is not None:
            if ignore_reinit_error:
                return
            raise ClusterError("plait.init was called twice; call plait.shutdown() first or "
                               "pass ignore_reinit_error=True")
        _check_ray_options(ray_options)
        if address is not None:
            from plait.executor.cli import joined_cluster

            _session = Session(joined_cluster(address), 1)
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
        from plait.executor.client import LocalCluster

        session_id = f"{os.getpid():x}-{next(_session_counter)}"
        cluster = LocalCluster.start(session_id, num_nodes, workers, memory, spill)
        _session = Session(cluster, num_nodes)
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


def _session_or_start() -> Session:
    if _session is None:
        init()
    assert _session is not None
    return _session


def session() -> Session:
    """The driver's running session, started with defaults on first use."""
    active = context.active()
    if active is not None and not isinstance(active, Session):
        raise PlaitError("inside a task only plait.get and plait.put are available in this "
                         "version; submit tasks and wait from the driver")
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
    if isinstance(refs, ObjectRef):
        raise TypeError("plait.wait expects a list of ObjectRefs")
    return session().wait(list(refs), num_returns, timeout)


def compute(*refs: ObjectRef, timeout: float | None = None) -> tuple[Any, ...]:
    """Run one plan for all ``refs`` and return their values as a tuple (as dask.compute)."""
    return tuple(session().get(list(refs), timeout=timeout))


def persist(*refs: ObjectRef) -> ObjectRef | tuple[ObjectRef, ...]:
    """Run what ``refs`` need and keep the results where they were made; returns the refs."""
    current = session()
    refs_list = _check_refs(refs, "plait.persist")
    current.run(refs_list)
    current.fetch([ref.id for ref in refs_list], len(refs_list), None)
    return refs_list[0] if len(refs_list) == 1 else tuple(refs_list)


def compile(*refs: ObjectRef) -> compiler.Plan:
    """The plan that ``get(refs)`` would run, without running it."""
    plan = session().compile(list(refs))
    if plan is None:
        return compiler.Plan(tuple(ref.id for ref in refs), {}, (), (), {})
    return plan


def cancel(refs: ObjectRef | Iterable[ObjectRef]) -> None:
    """Stop the tasks producing ``refs``: pending ones never run, running ones are killed.

    Their refs (and those of tasks depending on them) raise TaskCancelledError; cancelled
    tasks are not retried. A finished task is not affected.
    """
    session().cancel([refs] if isinstance(refs, ObjectRef) else list(refs))


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
    """

    def __enter__(self) -> Any:
        from plait.executor.trace import Trace

        self.session = session()
        self.position = self.session.trace_since(-1)[1]
        self.result = Trace()
        return self.result

    def __exit__(self, *exc: object) -> None:
        events, _ = self.session.trace_since(self.position)
        self.result.add(events)


def timeline(filename: str | None = None) -> list[dict]:
    """Everything the head recorded, as Chrome trace events (written to ``filename``)."""
    from plait.executor.trace import Trace

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
    return list(session().nodes)


def _runtime() -> Any:
    """The session, or inside a task the worker's runtime (which serves get and put)."""
    return context.runtime()


context.install_starter(session)
atexit.register(shutdown)

__all__ = ["cancel", "compile", "compute", "free", "get", "get_runtime_context", "init",
           "is_initialized", "memory_summary", "nodes", "persist", "put", "session", "shutdown",
           "timeline", "trace", "visualize", "wait"]
