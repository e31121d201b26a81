"""ForeignEngine: what the Ray and Dask engines share (ref counts, failures, traces).

An engine of this package keeps, for each plait object, the engine's own handle (a Ray
ObjectRef, a Dask Future): while plait's refs to the object live, the handle lives, and the
engine's own reference counting frees the object once the handle goes (a call whose refs
are all gone by its launch, made for its side effects, keeps none: the engine runs it
still, and ``shutdown`` waits for those not launched yet). Failures known
before anything ran (a task refused by the compiler, a cancelled lazy task, a freed object)
are kept as the exception ``get`` raises.

Traces are read from the engine: each task reports the node it really ran on, its times and
the sizes of its inputs (task.py); an input made on another node than its reader's was
copied there by the engine, once per node (both engines keep the copy), which is a transfer.
The events are kept in a ring of the newest MAX_EVENTS, as the native head keeps them, each
as a plain tuple of its fields until a trace reads it: CPython stops tracking a tuple of
strings and numbers at the first collection it lives through, where an event object stays
tracked for good, and every tracked object that lives long brings the driver's next full
collection nearer and makes it longer (W3 on Ray: the ring's 1,000 TaskEvents a round were
what every round left for good in the oldest generation; benchmarks/RESULTS.md, "W3 on Ray:
the driver's garbage collector").

A transfer is told by the engine's record of the nodes holding each object (``holders``:
where it was made, then each copy a report showed). The record must outlive the object's
last ref until the reports of the tasks launched before are read, since a task reading the
object may still run when its last ref goes (``g.remote(f.remote())`` drops f's result at
once). So a dead object's record waits in ``dying`` beside the number of tasks launched at
its death, and goes once no report of an earlier task is left to read (``unread_from``).
A driver that never reads its trace reads its reports once DYING_RECORDS records wait (Dask
reads none otherwise): the records are those of live objects, plus a bounded few.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from typing import Any

from plait import compiler
from plait.compiler.view import NodeView, ObjectInfo
from plait.engines import names
from plait.engines.task import Carrying
from plait.errors import (ObjectFreedError, ObjectLostError, TaskCancelledError,
                          WorkerCrashedError)
from plait.executor.engine import Engine, check_refs, serialized
from plait.executor.wire.events import EventRing
from plait.executor.wire.protocol import MAX_EVENTS, NodeInfo, NodeResources
from plait.graph import context
from plait.graph.graph import Graph
from plait.graph.ids import IdGenerator
from plait.graph.refs import ObjectRef
from plait.store.serialization import dumps

# Records of dead objects waiting for reports, past which the reports are read (a Dask read is
# one call to the scheduler: once per this many deaths; W3 on Ray: 1,000 a round).
DYING_RECORDS = 4096

_sessions = itertools.count(1)


class ForeignEngine(Engine):
    """The engine-independent half; subclasses say how to launch, read, wait, free and
    cancel with their engine's handles (the methods marked "engine" below)."""

    name = "foreign"
    nested_refs = True         # whether a task may read refs nested in its arguments

    _in_task: dict[type, ForeignEngine] = {}     # an engine worker's own session, by class

    @classmethod
    def in_task_session(cls) -> Any:
        """This engine worker's plait session (for tasks that read nested refs or submit
        tasks), made at the first such task and kept for the worker's life."""
        session = ForeignEngine._in_task.get(cls)
        if session is None:
            session = ForeignEngine._in_task[cls] = cls(in_task=True)
            context.install(session)
        return session

    def __init__(self, submit_after_idle: float | None, in_task: bool = False) -> None:
        from plait.executor.driver.flusher import IdleFlusher

        self.lock = threading.RLock()
        self.in_task = in_task               # a session inside an engine's worker
        self.id = f"{self.name}-{os.getpid():x}-{next(_sessions)}"
        self.ids = IdGenerator(f"{os.getpid():x}{next(_sessions)}." if in_task else "")
        self.refs: Counter[str] = Counter()
        self.dead: deque[str] = deque()
        self.handles: dict[str, Any] = {}          # object -> the engine's handle
        self.failed: dict[str, BaseException] = {}
        self.holders: dict[str, list[str]] = {}    # object -> where it was made, then copies
        self.launched = 0                          # tasks launched (a task's launch number)
        self.dying: deque[tuple[int, str]] = deque()   # (launched at its death, object)
        self.dying_limit = DYING_RECORDS           # ... read the reports past this many
        self.events = EventRing(MAX_EVENTS)        # for plait.trace, newest last
        self.unsubmitted: deque[Any] = deque()
        self.closing = False                       # shutting down (see ``shutdown``)
        self.traces = 0                            # plait.trace blocks open now
        self.recent_plans: deque[compiler.Plan] = deque(maxlen=4)
        self.node_names: dict[str, str] = {}       # engine's node id -> "node-i"
        self.node_ids: dict[str, str] = {}         # "node-i" -> engine's node id
        self.flusher = IdleFlusher(self.unsubmitted, lambda: bool(self.dead),
                                   lambda: self.run([]), self.collect_dead, self.lock,
                                   None if in_task else submit_after_idle)

    # -- what each engine does its own way ----------------------------------------------

    def engine_nodes(self) -> list[tuple[str, int, str]]:
        """(engine's node id, CPUs, address) of every live node, the head first."""
        raise NotImplementedError

    def engine_objects(self, handles: dict[str, Any]) -> dict[str, tuple[int, tuple[str, ...]]]:
        """Object -> (bytes, engine node ids holding it), for these handles."""
        raise NotImplementedError

    def engine_put(self, value: Any) -> tuple[Any, str]:
        """Store ``value``; its handle and the engine's id of the node holding it."""
        raise NotImplementedError

    def engine_names(self) -> contextlib.AbstractContextManager[tuple[names.Read, names.Add]]:
        """The table of node names shared by every session on this engine (names.py): its
        ``read`` and its atomic ``add``, for the time of the ``with``."""
        raise NotImplementedError

    def engine_resources(self) -> tuple[dict[str, float], dict[str, float]]:
        """The engine's resources over all its nodes: in all, and free now."""
        raise NotImplementedError

    def engine_here(self) -> tuple[str, str, str | None]:
        """In an engine's worker: the engine's ids of its node and of this worker, and the
        running task's id."""
        raise NotImplementedError

    def launch(self, task: Any, node: Any, placement: Any, inputs: list[Any],
               nested: dict[str, Any], anchored: bool) -> list[Any]:
        """Start one task pinned to its placement's node; the handles of its outputs.

        ``anchored`` False: where it runs cannot move a byte (it reads no object, no task
        of its graph reads its results, no node= option), so an engine whose pins cost
        throughput may leave it to its own scheduler (``plait.trace`` says where it ran)."""
        raise NotImplementedError

    def portable(self, handle: Any) -> Any:
        """A handle as it may travel to another process of the engine (Ray: itself)."""
        return handle

    def restore(self, token: Any) -> Any:
        """The handle ``portable`` made travel, in this process."""
        return token

    def engine_get(self, handles: list[Any], timeout: float | None) -> list[Any]: ...
    def engine_ready(self, handles: list[Any], count: int, timeout: float | None
                     ) -> set[int]: ...                          # positions ready
    def engine_free(self, handles: list[Any]) -> None: ...
    def engine_cancel(self, handles: list[Any], recursive: bool, force: bool) -> None: ...
    def engine_events(self) -> list[tuple[tuple, tuple]]: ...    # new reports: record's
    def results_read(self) -> None: ...          # a get has its values (Ray: read reports)
    def engine_close(self) -> None: ...

    def unread_from(self) -> int:
        """The launch number of the oldest task whose report may not be read yet
        (``launched``: none)."""
        return self.launched

    # -- the graph layer's runtime ---------------------------------------------------------

    def incref(self, object_id: str, found: bool = True) -> None:
        refs = self.refs                # (not ``+= 1``: a new key costs Counter a call)
        refs[object_id] = refs.get(object_id, 0) + 1

    def decref(self, object_id: str) -> None:
        self.dead.append(object_id)
        if len(self.dead) == 1:
            self.flusher.wake()

    def collect_dead(self) -> None:
        """Count down dead refs: an object with no ref left loses its handle (the engine
        frees it once nothing of its own needs it either) and, once its readers' reports
        are read, its record of where it is."""
        dead, refs, handles, failed = self.dead, self.refs, self.handles, self.failed
        while dead:                  # (once per ref: the names looked up once, above)
            oid = dead.popleft()
            left = refs[oid] - 1
            if left > 0:
                refs[oid] = left
                continue
            refs.pop(oid, None)
            handles.pop(oid, None)
            if failed:
                failed.pop(oid, None)
            self.let_go(oid)
        if len(self.dying) > self.dying_limit:
            self.read_reports()
            self.dying_limit = len(self.dying) + DYING_RECORDS  # their readers still run
        else:
            self.forget_dying()

    def let_go(self, object_id: str) -> None:
        """The object is gone: its record waits for the reports of tasks launched so far."""
        if object_id in self.holders:
            self.dying.append((self.launched, object_id))

    def forget_dying(self) -> None:
        """Drop the records of dead objects whose readers' reports are all read (``dying``
        is in order of death, so of launch numbers)."""
        unread = self.unread_from()
        while self.dying and self.dying[0][0] <= unread:
            self.holders.pop(self.dying.popleft()[1], None)

    def new_id(self, stem: str) -> str:
        return self.ids.new(stem)

    def dumps(self, value: Any) -> bytes:
        return dumps(value)

    def created(self, task: Any) -> None:
        """Refuse at the call what this engine cannot run; else wait for the next run."""
        if task.actor:
            raise NotImplementedError(f"the {self.name} engine does not run plait actors "
                                      f"(called {task.name}); use the native engine")
        if task.options.env_vars:
            raise NotImplementedError(f"the {self.name} engine does not take a task's "
                                      f"runtime_env (called {task.name}); use the native "
                                      f"engine")
        if isinstance(task.options.num_returns, str):
            raise NotImplementedError(f"the {self.name} engine does not run generator tasks "
                                      f"(num_returns={task.options.num_returns!r} of "
                                      f"{task.name}); use the native engine")
        if task.nested and not self.nested_refs:
            raise NotImplementedError(f"the {self.name} engine does not pass refs nested in "
                                      f"a task's arguments (called {task.name}); pass them "
                                      f"as top-level arguments, or use the native engine")
        self.unsubmitted.append(task)
        self.flusher.made()

    def describe(self, object_id: str) -> str:
        if object_id in self.failed:
            return "failed"
        handle = self.handles.get(object_id)
        if handle is None:
            return "lazy"
        return "ready" if self.engine_ready([handle], 1, 0) else "pending"

    def runtime_context(self) -> context.RuntimeContext:
        """In the driver: the head node, no worker, no task. In a task: the node it runs on
        (plait's name of the engine's node, the driver's name for it: names.py), the
        engine's id of its worker, and its task id, read from the engine when asked."""
        if not self.in_task:
            return context.RuntimeContext(next(iter(self.node_ids), "node-0"), None, None,
                                          self.id)
        where, worker, task = self.engine_here()
        return context.RuntimeContext(self.node_name(where), worker, task, self.id)

    def future(self, ref: ObjectRef) -> Any:
        from concurrent.futures import Future

        future: Future = Future()

        def resolve() -> None:
            try:
                future.set_result(self.get(ref))
            except BaseException as error:
                future.set_exception(error)

        threading.Thread(target=resolve, name="plait-future", daemon=True).start()
        return future

    def stream_opened(self, generator: Any) -> None:
        raise NotImplementedError(f"the {self.name} engine does not run generator tasks")

    def await_yielded(self, generator: Any, timeout: float | None) -> bool:
        raise NotImplementedError(f"the {self.name} engine does not run generator tasks")

    def stream_failed(self, generator: Any) -> bool | None:
        raise NotImplementedError(f"the {self.name} engine does not run generator tasks")

    # -- the Engine seam ---------------------------------------------------------------------

    def known(self, object_id: str) -> bool:
        return object_id in self.handles or object_id in self.failed

    def fail(self, object_id: str, error: BaseException) -> None:
        self.failed[object_id] = error
        self.handles.pop(object_id, None)

    def before_run(self) -> tuple[str, ...]:
        self.collect_dead()
        return ()

    def refresh_nodes(self) -> tuple[NodeInfo, ...]:
        return tuple(NodeInfo(name, address, 0, index == 0, cpus, "", 0)
                     for index, (name, cpus, address) in enumerate(self.live_nodes()))

    def resources(self) -> tuple[NodeResources, ...]:
        """The engine's own sums, as one row (what ``cluster_resources`` and
        ``available_resources`` add up): neither engine tells what is free on each node
        through a public call."""
        total, free = self.engine_resources()
        return (NodeResources(self.name, tuple(total.items()), tuple(free.items())),)

    def live_nodes(self) -> list[tuple[str, int, str]]:
        """(plait's name, CPUs, address) of the engine's live nodes, in the order of their
        names (node-0, the head, first): the same order in every session."""
        found = self.engine_nodes()
        self.name_nodes(engine_id for engine_id, _, _ in found)
        named = [(self.node_names[engine_id], cpus, address)
                 for engine_id, cpus, address in found]
        return sorted(named, key=lambda node: names.number(node[0]))

    def node_name(self, engine_id: str) -> str:
        """plait's name of an engine's node: node-0 (the head) and on, in the order the
        engine's sessions first met them (names.py)."""
        name = self.node_names.get(engine_id)
        if name is None:
            self.name_nodes([engine_id])
            name = self.node_names[engine_id]
        return name

    def name_nodes(self, engine_ids: Iterable[str]) -> None:
        """Learn the names of these nodes from the engine's table, claiming one for any node
        no session has met yet. Once per node a session meets: names never change."""
        unseen = [engine_id for engine_id in dict.fromkeys(engine_ids)
                  if engine_id not in self.node_names]
        if not unseen:
            return
        with self.engine_names() as (read, add):
            for engine_id in unseen:
                name = names.claim(engine_id, read, add, names.search_start(self.node_names))
                self.node_names[engine_id] = name
                self.node_ids[name] = engine_id

    def cluster_view(self, graph: Graph) -> compiler.ClusterView:
        nodes = tuple(NodeView(name, max(1, int(cpus))) for name, cpus, _ in self.live_nodes())
        wanted = graph.inputs()
        inputs = [oid for oid in wanted if oid in self.handles]
        for oid in wanted:
            if oid in self.failed:
                raise self.failed[oid]
            if oid not in self.handles:
                raise ObjectLostError(oid, f"the {self.name} engine holds no such object")
        found = self.engine_objects({oid: self.handles[oid] for oid in inputs})
        objects = {}
        for oid in inputs:
            nbytes, where = found.get(oid, (0, ()))
            holders = tuple(self.node_name(n) for n in where)
            if not holders and oid in self.holders:     # not made yet: where it will be
                holders = tuple(self.holders[oid][:1])
            objects[oid] = ObjectInfo(oid, nbytes, holders)
        return compiler.ClusterView(nodes, objects)

    def submit(self, plan: compiler.Plan, graph: Graph, tasks: dict[str, Any],
               refs: Sequence[ObjectRef], frees: tuple[str, ...]) -> None:
        """Launch each task in the graph's order. (Once per task: written for speed, the
        common task, reading nothing and read by none, taking the shortest way.)"""
        read = {oid for node in graph.tasks.values() if node.deps or node.nested
                for oid in node.reads}
        handles, counted, holders = self.handles, self.refs, self.holders
        placements, launch = plan.placements, self.launch
        for task_id, node in graph.tasks.items():
            task = tasks[task_id]
            placement = placements[task_id]
            if node.deps or node.nested:
                inputs = [handles[oid] for oid in node.deps]
                nested = {oid: self.portable(handles[oid]) for oid in node.nested
                          if oid in handles}
                anchored = True
            else:
                inputs, nested = [], {}
                anchored = node.node is not None or (bool(read)
                                                     and not read.isdisjoint(node.outputs))
            outputs = launch(task, node, placement, inputs, nested, anchored)
            self.launched += 1
            task.submitted = True
            task.forget_inputs()
            for oid, handle in zip(node.outputs, outputs, strict=True):
                if oid in counted or self.closing:      # else a call for its side effects
                    handles[oid] = handle               # alone: the engine runs it still
                    holders[oid] = [placement.node]

    # -- the API --------------------------------------------------------------------------

    @serialized
    def put(self, value: Any) -> ObjectRef:
        if isinstance(value, ObjectRef):
            raise TypeError("plait.put of an ObjectRef: pass the ref itself instead")
        self.collect_dead()
        handle, where = self.engine_put(value)
        ref = ObjectRef(self.new_id("put"))
        self.handles[ref.id] = handle
        self.holders[ref.id] = [self.node_name(where)]
        return ref

    @serialized
    def get(self, refs: Any, timeout: float | None = None) -> Any:
        many = isinstance(refs, (list, tuple))
        wanted = check_refs(refs if many else [refs], "plait.get")
        self.run(wanted)
        failed = self.failed
        if failed:
            for ref in wanted:
                if ref.id in failed:
                    raise failed[ref.id]
        handles = self.handles
        try:
            values = self.engine_get([handles[ref.id] for ref in wanted], timeout)
        except (WorkerCrashedError, ObjectLostError, TaskCancelledError) as error:
            raise self.named_failure(error, wanted) from None
        values = [self.unpack(value) for value in values]
        self.results_read()
        return values if many else values[0]

    def named_failure(self, error: WorkerCrashedError | ObjectLostError | TaskCancelledError,
                      wanted: list[ObjectRef]) -> Exception:
        """A failure the engine's error names nothing of plait's in (Ray names no task that
        crashed or was cancelled; both name a lost object by the engine's own id): the first
        ref asked for whose value fails so alone, named by plait's id (a crash: with one
        attempt per try its task was given)."""
        if isinstance(error, (WorkerCrashedError, TaskCancelledError)) and error.task_id:
            return error
        if isinstance(error, ObjectLostError) and (
                isinstance(error, ObjectFreedError)
                or error.object_id in {ref.id for ref in wanted}):
            return error
        failed = next((ref for ref in wanted if len(wanted) == 1 or self.fails(ref, error)),
                      None)
        if failed is None:
            return error
        if isinstance(error, ObjectLostError):
            return type(error)(failed.id, error.reason)
        task = failed.task
        if isinstance(error, TaskCancelledError):
            return TaskCancelledError(task.id if task is not None else failed.id)
        if task is None:
            return error
        retries = task.options.max_retries
        tries = retries + 1 if retries >= 0 else len(error.attempts)
        return WorkerCrashedError(task.name, task.id, [f"its {self.name} worker died"]
                                  * (tries - 1) + error.attempts[-1:])

    def fails(self, ref: ObjectRef, error: Exception) -> bool:
        """Whether reading ``ref`` alone, now, fails as ``error`` did."""
        try:
            self.engine_get([self.handles[ref.id]], 0)
        except type(error):
            return True
        except Exception:
            return False
        return False

    def unpack(self, value: Any) -> Any:
        """A result carrying refs made inside its task: learn their handles."""
        if isinstance(value, Carrying):
            self.learn(value.handles)
            return value.value
        return value

    def learn(self, tokens: dict[str, Any]) -> None:
        """Handles of refs made elsewhere (nested arguments, refs inside results)."""
        for oid, token in tokens.items():
            if oid not in self.handles:
                self.handles[oid] = self.restore(token)

    @serialized
    def wait(self, refs: Sequence[ObjectRef], num_returns: int, timeout: float | None
             ) -> tuple[list[ObjectRef], list[ObjectRef]]:
        refs = check_refs(refs, "plait.wait")
        if not 0 <= num_returns <= len(refs):
            raise ValueError(f"num_returns={num_returns} must be between 0 and {len(refs)}")
        self.run(refs)
        done = {i for i, ref in enumerate(refs) if ref.id in self.failed}
        running = [i for i, ref in enumerate(refs) if i not in done]
        if len(done) < num_returns:
            ready = self.engine_ready([self.handles[refs[i].id] for i in running],
                                      num_returns - len(done), timeout)
            done |= {running[j] for j in ready}
        chosen = sorted(done)[:num_returns]
        return [refs[i] for i in chosen], [refs[i] for i in range(len(refs))
                                          if i not in set(chosen)]

    @serialized
    def free(self, refs: Iterable[ObjectRef]) -> None:
        refs = check_refs(list(refs), "plait.free")
        handles = [self.handles.pop(ref.id) for ref in refs if ref.id in self.handles]
        for ref in refs:
            self.failed[ref.id] = ObjectFreedError(ref.id, "released early with plait.free")
            self.let_go(ref.id)
        self.engine_free(handles)

    @serialized
    def cancel(self, refs: list[ObjectRef], recursive: bool = True, force: bool = False
               ) -> None:
        """(``force``: the engine's own cancel decides how a running task stops.)"""
        submitted = self.cancel_unsubmitted(check_refs(refs, "plait.cancel"))
        self.engine_cancel([self.handles[ref.id] for ref in submitted if ref.id in self.handles],
                           recursive, force)

    @serialized
    def trace_since(self, position: int) -> tuple[tuple[Any, ...], int]:
        """As the head's: positions count every event ever recorded, so the caller learns
        how many of its events the ring let go (``plait.trace``'s ``dropped``)."""
        self.read_reports()
        return self.events.since(position), self.events.end

    def tracing(self, opened: bool) -> None:
        with self.lock:
            self.traces += 1 if opened else -1

    def read_reports(self) -> None:
        """Turn the engine's new task reports into trace events (the engine lets go of them),
        then forget the dead objects no report to come can name."""
        record = self.record
        for about, ran in self.engine_events():
            record(about, ran)
        self.forget_dying()

    def record(self, about: tuple, ran: tuple) -> None:
        """A task's report (``about``: its id, function name, outputs and top-level inputs;
        ``ran``: how it ran, task.py ``run_call``): where it ran (read from the engine in the
        task), and each input not on that node yet: copied there by the engine, once per
        node. Objects this session holds no record of are not its own (Dask's log has every
        session's tasks) or were made for their side effects alone."""
        task_id, function_name, outputs, deps = about
        where, pid, start, end, sizes = ran
        node = self.node_name(where)
        self.events.record((0, task_id, function_name, node, pid, start, end, True))
        holders = self.holders
        for oid in outputs:
            if oid in holders:
                holders[oid] = [node]
        if deps:
            for oid, nbytes in zip(deps, sizes, strict=True):
                made = holders.get(oid)
                if made is not None and node not in made:
                    made.append(node)
                    self.events.record((1, oid, made[0], node, nbytes, start, start))

    @serialized
    def shutdown(self) -> None:
        """Run the calls made and never requested, then let go of the engine."""
        self.flusher.stop()
        self.closing = True                  # calls for side effects alone are waited for
        made = [t for t in self.unsubmitted if not t.submitted]
        try:
            if made and not self.in_task:
                self.run([])
                outputs = [self.handles[o] for t in made for o in t.output_ids
                           if o in self.handles]
                self.engine_ready(outputs, len(outputs), None)
        finally:
            self.handles.clear()
            self.engine_close()

