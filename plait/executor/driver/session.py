"""Session: one client's connection to a running cluster (a driver's, or a worker's own).

It turns the lazy graph behind requested refs into a plan with the pure compiler, submits
the plan's tasks to the head, and reads results: small ones arrive inline, large ones are
mapped straight from a node's shared-memory arena on this host (zero-copy, read-only), or
fetched over the network from nodes on other hosts.

Lifetimes: every ObjectRef reports its birth and death here. Deaths are queued (``__del__``
may run on any thread) and turned into ``Free`` messages at the next call into the
session, once no zero-copy view of the object is alive in this process either.
"""

from __future__ import annotations

import itertools
import os
import pickle
import sys
import weakref
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from plait import compiler
from plait.errors import GetTimeoutError, ObjectFreedError
from plait.graph import context
from plait.graph.ids import IdGenerator
from plait.graph.refs import ObjectRef, collecting_refs, unsubmitted
from plait.graph.remote_function import ObjectRefGenerator
from plait.executor.engine import Engine, check_refs as _check_refs
from plait.executor.engine import serialized as _serialized
from plait.executor.driver.flusher import IdleFlusher
from plait.executor.driver.unhandled import log_unhandled
from plait.executor.driver.parking import Parked
from plait.executor.driver.futures import Futures, SessionLock
from plait.executor.driver.progress import Progress
from plait.executor.driver.reading import ObjectReading
from plait.store.allocator import Allocator
from plait.store.serialization import INLINE_THRESHOLD, dumps, serialize
from plait.store.spill import write_on_disk

# A put of up to this many bytes (and at most 1/SPARE_SHARE of the store), of the same
# block size as the put before it, asks once written for a block of its size for the next
# put: a program that puts many objects of one size then writes each into a block it
# already has, with no round trip to the head
# (~0.5 ms of a 1 MiB put's ~1.5 ms, and of a 16 MiB put's ~3 ms). Larger puts are the
# copy's (a 256 MiB put is ~20 ms), and a spare of their size would hold much room idle.
SPARE_MAX_BYTES = 32 * 2**20
SPARE_SHARE = 64
PROGRESS_SLICE = 0.25          # seconds between progress redraws while waiting
# The longest a get or wait whose time is up waits for the head to say what it knows of
# objects it asked about just now (a round trip; the head answers at once).
SUBSCRIBE_ANSWER_SECONDS = 5.0
IDLE_SUBMIT_SECONDS = 0.01     # calls made and not requested are submitted after this quiet




class Session(ObjectReading, Engine):
    """The driver's view of one running cluster."""

    def __init__(self, cluster: Any, nodes_expected: int, id_prefix: str | None = None,
                 submit_after_idle: float | None = IDLE_SUBMIT_SECONDS,
                 settles_holds: bool = False, ctx: Any = None,
                 log_to_driver: bool = False) -> None:
        """``log_to_driver``: print what workers print (a driver's session, as Ray's)."""
        from plait.executor.driver.connection import Connection
        from plait.executor.wire.hostid import host_id

        self.cluster = cluster
        try:
            self.conn = Connection(cluster, ctx)
            welcome = self.conn.handshake(nodes_expected)
        except BaseException:
            for process in getattr(cluster, "processes", ()):
                process.kill()
            cluster.stop()
            raise
        self.id = welcome.session
        self.nodes = welcome.nodes
        self.host = host_id()
        if log_to_driver:
            from plait.executor.wire import protocol as p

            self.conn.send(p.ShowOutput())
        self.owns_cluster = hasattr(cluster, "processes")
        if id_prefix is None:     # a driver's: ids unique among the drivers of a cluster
            id_prefix = "" if self.owns_cluster else f"d{welcome.client}:"
        self.arenas: dict[str, Any] = {}
        self.ids = IdGenerator(id_prefix)
        self.caller = id_prefix            # an actor orders each caller's calls (node/actors)
        self.refs: Counter[str] = Counter()           # live ObjectRefs per object
        self.held: set[str] = set()                   # objects the head counts us holding
        self.holds: dict[str, None] = {}              # Hold messages not sent yet (ordered)
        self.settles_holds = settles_holds            # a worker's: see settle_holds
        self.unsettled: set[str] = set()              # held, the head's taking it unconfirmed
        self.submitted_unconfirmed: set[str] = set()  # outputs submitted, not confirmed
        self.frees_after: Callable[[], tuple[str, ...]] | None = None   # a worker's: see Free
        self.pins: Counter[str] = Counter()           # loads with live zero-copy views
        self.dead: deque[str] = deque()               # refs died (any thread)
        self.unpinned: deque[tuple[str, Any]] = deque()   # (object, Located) views died
        self.reusing: set[str] = set()                # a get's objects (see reading.py)
        self.reusable: dict[str, list[Any]] = {}      # their pins kept, Located, no view
        self.values: dict[str, Any] = {}             # object -> protocol value, once known
        self.pending: set[str] = set()                # submitted, result not yet known
        self.asked: set[str] = set()                  # subscribed, answer not yet come
        self.functions_sent: set[str] = set()
        self.unsubmitted: deque[Any] = deque()        # tasks made, not yet submitted (Task)
        self.parked = Parked()                        # tasks no node can run yet
        self.lock = SessionLock()       # the flusher and futures threads use the socket too
        self.futures: Futures | None = None           # started by the first ref.future()
        self.flusher = IdleFlusher(self.unsubmitted, lambda: bool(self.dead or self.unpinned),
                                   lambda: self.run([]), self.flush_frees, self.lock,
                                   submit_after_idle, look=self.look_in)
        self.actor_nodes: dict[str, str] = {}         # actor -> node, as last learned
        self.recent_plans: deque[compiler.Plan] = deque(maxlen=4)   # as submitted
        self.requests = itertools.count(1)
        self.replies: dict[int, Any] = {}
        self.spare: tuple[int, str, int] | None = None   # (request, object, bytes) asked
        self.last_block = 0                           # the block size of the last put
        self.unawaited: set[int] = set()              # requests whose replies are dropped
        # generator task -> its live ObjectRefGenerator, which holds the refs of the values
        # announced and not yet taken; gone with it (its later values are freed as they come)
        self.streams: weakref.WeakValueDictionary[str, ObjectRefGenerator] = \
            weakref.WeakValueDictionary()

    # -- the Runtime protocol (called by ObjectRef and RemoteFunction) ------------------

    def incref(self, object_id: str, found: bool = True) -> None:
        """A ref was made; a found one (not an output of a task made here, which the head
        counts when it is submitted) is held for this session from the next message on."""
        self.refs[object_id] += 1
        if found and object_id not in self.held:
            self.held.add(object_id)
            self.holds[object_id] = None

    def decref(self, object_id: str) -> None:
        self.dead.append(object_id)
        if len(self.dead) == 1:
            self.flusher.wake()

    def new_id(self, stem: str) -> str:
        return self.ids.new(stem)

    def dumps(self, value: Any) -> bytes:
        """A call's arguments, pickled as objects are (their arrays come back read-only)."""
        return dumps(value)

    def created(self, task: Any) -> None:
        """Every ``.remote()`` call runs, requested or not (as in Ray): it waits here and
        is submitted with the next get/wait, so the compiler still sees the whole graph,
        or once the caller has made no call for ``submit_after_idle`` seconds."""
        self.unsubmitted.append(task)
        self.flusher.made()

    @_serialized
    def expect(self, object_ids: list[str]) -> None:
        """Objects this process put through its node (see protocol.Expect)."""
        from plait.executor.wire import protocol as p

        self.conn.send(p.Expect(tuple(object_ids)))

    def describe(self, object_id: str) -> str:
        from plait.executor.wire import protocol as p

        value = self.values.get(object_id)
        if value is None:
            return "pending" if object_id in self.pending else "lazy"
        return "failed" if isinstance(value, p.Failed) else "ready"

    # -- objects -------------------------------------------------------------------------

    @_serialized
    def put(self, value: Any) -> ObjectRef:
        """Store ``value`` on this node: inline when small, else one copy into the arena."""
        from plait.executor.wire import protocol as p

        if isinstance(value, ObjectRef):
            raise TypeError("plait.put of an ObjectRef: pass the ref itself instead")
        self.flush_frees()
        with collecting_refs() as found:
            serialized = serialize(value)
        lazy = unsubmitted(found)
        if lazy:
            self.run(lazy)
        contains = tuple(dict.fromkeys(ref.id for ref in found))
        nbytes = serialized.nbytes
        if nbytes <= INLINE_THRESHOLD or self.nodes[0].host != self.host:
            # small, or the head is on another host: the bytes travel in the message
            object_id = self.new_id("put")
            stored: Any = p.Inline(serialized.to_bytes(), contains)
            self.conn.send(p.PutInline(object_id, stored))
        else:
            call_site = _call_site()
            object_id, reply = self.put_block(nbytes, call_site)
            if reply.path:              # no room in the store: a file of its own
                try:
                    crc = write_on_disk(object_id, reply.path, nbytes, serialized.write_into)
                except BaseException:
                    self.conn.send(p.Abandon(object_id))
                    raise
                self.conn.send(p.Seal(object_id, contains, created_by=call_site, crc=crc))
                self.values[object_id] = p.Stored(reply.node, nbytes, contains)
                self.held.add(object_id)
                return ObjectRef(object_id)
            arena = self.arena(reply.node)
            arena.prefault(reply.offset, nbytes)
            serialized.write_into(arena.block(reply.offset, nbytes))
            self.conn.send(p.Seal(object_id, contains, nbytes=nbytes, created_by=call_site))
            stored = p.Stored(reply.node, nbytes, contains)
            self.pins[object_id] += 1      # the head gives us the writer's pin: a dead view's
            self.view_died((object_id, p.Located(reply.node, reply.offset, nbytes, contains)))
            self.ask_spare(nbytes, call_site)
        self.values[object_id] = stored
        self.held.add(object_id)
        return ObjectRef(object_id)

    def put_block(self, nbytes: int, call_site: str) -> tuple[str, Any]:
        """A block of the head's store for a put of ``nbytes``, and the object's id: the
        spare the last put asked for when it is of the same size (its reply is usually
        here already), else one asked for now."""
        from plait.executor.wire import protocol as p

        if self.spare is not None:
            request, object_id, asked = self.spare
            if Allocator.block_size(asked) != Allocator.block_size(nbytes):
                self.drop_spare()
            else:
                self.spare = None
                reply = self.reply_to(request)
                if isinstance(reply, p.Allocated):
                    return object_id, reply
        object_id = self.new_id("put")
        return object_id, self.request(p.Alloc(next(self.requests), object_id, nbytes,
                                               call_site))

    def ask_spare(self, nbytes: int, call_site: str) -> None:
        """Ask ahead for the next put's block when this one is the second of its size in
        a row (see SPARE_MAX_BYTES): a one-off put leaves no block idle, and puts of sizes
        that alternate give none back each time. The head refuses a spare rather than wait
        when its store has no room, and one unused is abandoned."""
        from plait.executor.wire import protocol as p

        block, self.last_block = self.last_block, Allocator.block_size(nbytes)
        if block != self.last_block or \
                nbytes > min(SPARE_MAX_BYTES, self.nodes[0].store_capacity // SPARE_SHARE):
            return
        request, object_id = next(self.requests), self.new_id("put")
        self.conn.send(p.Alloc(request, object_id, nbytes, call_site, spare=True))
        self.spare = (request, object_id, nbytes)

    def drop_spare(self) -> None:
        """Give back the spare block, if any: no put will use it; its reply, if still to
        come, is dropped when it does."""
        from plait.executor.wire import protocol as p

        if self.spare is not None:
            request, object_id, _ = self.spare
            self.spare = None
            self.conn.send(p.Abandon(object_id))
            if self.replies.pop(request, None) is None:
                self.unawaited.add(request)

    @_serialized
    def get(self, refs: Any, timeout: float | None = None) -> Any:
        many = isinstance(refs, (list, tuple))
        wanted = _check_refs(refs if many else [refs], "plait.get")
        ids = [ref.id for ref in wanted]
        self.reusing = set(ids)         # the pins of their dead views stay for this get
        pinned: dict[str, list[Any]] = {}
        try:
            self.run(wanted)
            parked = self.parked.error_for(ids)
            if parked is not None:      # it would wait for ever (Ray's get would hang)
                raise parked
            deadline = None if timeout is None else _now() + timeout
            self.fetch(ids, len(wanted), timeout, until_failure=True)
            failed = self.first_failure(ids)
            if failed is not None:
                self.load(failed)               # (raises its error)
            self.pin_stored(ids, pinned, deadline)
            values = [self.load(oid, pinned[oid].pop() if oid in pinned else None)
                      for oid in ids]
        finally:
            self.reusing = set()
            self.unpin_unused(pinned)
        self.conn.heap.trim_if_due()
        return values if many else values[0]

    def future(self, ref: ObjectRef) -> Any:
        """A ``concurrent.futures.Future`` of ``ref``'s value: ``await ref`` and
        ``ref.as_future()`` wrap it (driver/futures.py completes it)."""
        _check_refs([ref], "ObjectRef.future")
        futures = self.futures
        if futures is None:
            with self.lock:
                if self.futures is None:
                    self.futures = Futures(self)
                    self.lock.waiter = self.futures
                futures = self.futures
        return futures.future(ref)

    @_serialized
    def wait(self, refs: Sequence[ObjectRef], num_returns: int, timeout: float | None
             ) -> tuple[list[ObjectRef], list[ObjectRef]]:
        if any(isinstance(ref, ObjectRefGenerator) for ref in refs):
            return self.wait_streams(refs, num_returns, timeout)
        refs = _check_refs(refs, "plait.wait")
        if not 0 <= num_returns <= len(refs):
            raise ValueError(f"num_returns={num_returns} must be between 0 and {len(refs)}")
        self.run(refs)
        ids = [ref.id for ref in refs]
        if self.parked.count(ids):
            self.wait_beside_parked(ids, num_returns, timeout)
        else:
            self.fetch(ids, num_returns, timeout, raise_timeout=False)
        ready = [ref for ref in refs if ref.id in self.values][:num_returns]
        chosen = {id(ref) for ref in ready}
        self.conn.heap.trim_if_due()
        return ready, [ref for ref in refs if id(ref) not in chosen]

    def wait_beside_parked(self, ids: list[str], num_returns: int, timeout: float | None
                           ) -> None:
        """wait() over refs some of which parked tasks make: those are not ready, and a
        wait that could only end with them raises their PlanError rather than never end."""
        if timeout is None and len(ids) - self.parked.count(ids) < num_returns:
            error = self.parked.error_for(ids)
            assert error is not None
            raise error
        parked = self.parked.outputs()
        self.subscribe([oid for oid in ids if oid not in self.values and oid not in parked])
        self.pump_until(lambda: sum(oid in self.values for oid in ids) >= num_returns, timeout)

    def wait_streams(self, waitables: Sequence[Any], num_returns: int, timeout: float | None
                     ) -> tuple[list[Any], list[Any]]:
        """wait() over refs and ObjectRefGenerators (as Ray's): a generator is ready when
        ``next`` would not block (a ref has come, or the task has ended)."""
        completions = [w.completed() for w in waitables if isinstance(w, ObjectRefGenerator)]
        refs = _check_refs([w for w in waitables if not isinstance(w, ObjectRefGenerator)]
                           + completions, "plait.wait")
        if not 0 <= num_returns <= len(waitables):
            raise ValueError(f"num_returns={num_returns} must be between 0 and "
                             f"{len(waitables)}")
        self.run(refs)
        self.subscribe([ref.id for ref in refs])

        def ready(waitable: Any) -> bool:
            if isinstance(waitable, ObjectRefGenerator):
                return self.stream_waits_not(waitable)
            return waitable.id in self.values

        self.pump_until(lambda: sum(map(ready, waitables)) >= num_returns, timeout)
        chosen = [w for w in waitables if ready(w)][:num_returns]
        picked = {id(w) for w in chosen}
        return chosen, [w for w in waitables if id(w) not in picked]

    # -- generator tasks' streams ---------------------------------------------------------

    def stream_opened(self, generator: ObjectRefGenerator) -> None:
        """A generator task was called here: its values are announced to this session
        (``Yielded``) from its submission on."""
        self.streams[generator.task_id] = generator

    @_serialized
    def await_yielded(self, generator: ObjectRefGenerator, timeout: float | None) -> bool:
        """Wait (up to ``timeout`` seconds) until ``next(generator)`` would not block: a
        value has come, or the task has ended. Runs the task if it has not been yet."""
        completion = generator.completed()
        _check_refs([completion], "an ObjectRefGenerator")
        self.run([completion])
        self.subscribe([completion.id])
        return self.pump_until(lambda: self.stream_waits_not(generator), timeout)

    def stream_waits_not(self, generator: ObjectRefGenerator) -> bool:
        return bool(generator._arrived) or generator.completed().id in self.values

    def stream_failed(self, generator: ObjectRefGenerator) -> bool | None:
        """None while the task runs; then whether it failed (its error not yet raised)."""
        from plait.executor.wire import protocol as p

        end = self.values.get(generator.completed().id)
        return None if end is None else isinstance(end, p.Failed)

    def take_yielded(self, message: Any) -> None:
        """A value a generator task yielded: the head holds it for us. It goes to the
        task's ObjectRefGenerator, as a ref; with no generator left to take it (dropped)
        the ref dies at once, and the value is freed."""
        oid = message.object_id
        self.values[oid] = message.value
        self.held.add(oid)
        ref = ObjectRef(oid)
        generator = self.streams.get(message.task_id)
        if generator is not None and message.index == generator._received:
            generator._received += 1
            generator._arrived.append(ref)

    @_serialized
    def free(self, refs: Iterable[ObjectRef]) -> None:
        from plait.executor.wire import protocol as p

        ids = tuple(ref.id for ref in _check_refs(list(refs), "plait.free"))
        for oid in ids:
            error = ObjectFreedError(oid, "released early with plait.free")
            self.values[oid] = p.Failed(pickle.dumps(error))
        self.conn.send(p.Free(ids, forced=True))

    @_serialized
    def refresh_nodes(self) -> tuple[Any, ...]:
        """Ask the head for the current node list (a Hello answered by a Welcome); what
        else arrives meanwhile is applied as usual, and so is the Welcome."""
        self.flush_frees()
        self.apply(self.conn.hello(other=self.apply))
        return self.nodes

    @_serialized
    def cancel(self, refs: list[ObjectRef], recursive: bool = True, force: bool = False) -> None:
        """Stop the tasks making ``refs``; ``recursive``: and the tasks they submitted;
        ``force``: kill a running task's worker instead of interrupting the task."""
        from plait.executor.wire import protocol as p

        refs = [ref.completed() if isinstance(ref, ObjectRefGenerator) else ref for ref in refs]
        self.cancel_unsubmitted(_check_refs(refs, "plait.cancel"))
        self.conn.send(p.Cancel(tuple(ref.id for ref in refs), recursive, force))

    @_serialized
    def trace_since(self, position: int) -> tuple[tuple[Any, ...], int]:
        from plait.executor.wire import protocol as p

        report = self.request(p.TraceRequest(next(self.requests), position))
        return report.events, report.position

    @_serialized
    def list_objects(self) -> tuple[Any, ...]:
        """Every object the head holds now (protocol.ObjectRow), for plait.util.state."""
        from plait.executor.wire import protocol as p

        return self.request(p.ObjectsRequest(next(self.requests))).objects

    @_serialized
    def list_actors(self) -> tuple[Any, ...]:
        """Every actor the head knows now (protocol.ActorRow), for plait.util.state."""
        from plait.executor.wire import protocol as p

        return self.request(p.ActorsRequest(next(self.requests))).actors

    @_serialized
    def memory_summary(self) -> tuple[Any, ...]:
        from plait.executor.wire import protocol as p

        return self.request(p.MemoryRequest(next(self.requests))).nodes

    @_serialized
    def resources(self) -> tuple[Any, ...]:
        """Every node's resources, in all and free now (protocol.NodeResources)."""
        from plait.executor.wire import protocol as p

        return self.request(p.ResourcesRequest(next(self.requests))).nodes

    @_serialized
    def validate_state(self, timeout: float) -> tuple[str, ...]:
        """Every invariant the head and the nodes find broken (empty when all hold)."""
        from plait.executor.wire import protocol as p

        return self.request(p.StateCheck(next(self.requests)), timeout).problems

    # -- running graphs (Engine: run, plan, compile and refuse are written there) -------

    def runtime_context(self) -> context.RuntimeContext:
        return context.RuntimeContext(self.nodes[0].id, None, None, self.id)

    def run(self, refs: Sequence[ObjectRef]) -> None:
        """Engine.run, which no other thread enters half-way (a run steps aside for none
        while it waits for its cluster view): another run then would take the tasks this
        one has drained but not yet marked submitted, through the upstream of its own, and
        both would submit them (the head counted their readers twice)."""
        with self.lock.held_throughout():
            Engine.run(self, refs)

    def known(self, object_id: str) -> bool:
        return object_id in self.values

    def fail(self, object_id: str, error: Exception) -> None:
        """A result of a task never submitted (cancelled first, or refused) fails: the head
        holds the failure for us too, so that a task submitted later that reads it fails
        with it, as a reader of any failed object does (it knew nothing of the object, and
        such a task's batch failed with ObjectLostError, unrelated tasks included)."""
        from plait.executor.wire import protocol as p

        value = p.Failed(pickle.dumps(error))
        self.values[object_id] = value
        self.conn.send(p.PutInline(object_id, value))
        self.held.add(object_id)

    def before_run(self) -> tuple[str, ...]:
        return self.flush_frees(send=self.frees_after is not None)   # else in the Submit

    def nothing_to_run(self, frees: tuple[str, ...]) -> None:
        from plait.executor.wire import protocol as p

        if frees:
            self.conn.send(p.Free(frees))

    def cluster_view(self, graph: Any) -> compiler.ClusterView:
        """The head's view of the graph's inputs and actors; a graph of nothing but calls
        of actors whose nodes are known needs no view (no round trip)."""
        from plait.executor.wire import protocol as p

        actors = {t.actor for t in graph.tasks.values() if t.actor} - set(graph.tasks)
        live = {n.id for n in self.nodes}
        if actors and all(t.actor and t.actor != t.id for t in graph.tasks.values()) \
                and all(self.actor_nodes.get(a) in live for a in actors):
            return self.local_view(graph.inputs())
        reply = self.request(p.ViewRequest(next(self.requests), tuple(graph.inputs()),
                                           tuple(sorted(actors))))
        for _, error in reply.missing:
            raise pickle.loads(error)
        self.actor_nodes.update(reply.view.actors)
        return reply.view

    def placed(self, graph: Any, plan: compiler.Plan) -> None:
        for task in graph.tasks.values():
            if task.actor == task.id:
                self.actor_nodes[task.id] = plan.placements[task.id].node

    def local_view(self, inputs: list[str]) -> compiler.ClusterView:
        """The cluster as this session last saw it: enough to place calls on known actors."""
        from plait.compiler.view import NodeView, ObjectInfo
        from plait.executor.wire import protocol as p

        nodes = tuple(NodeView(n.id, n.workers, store_capacity=n.store_capacity,
                               resources=n.resources) for n in self.nodes)
        objects = {}
        for oid in inputs:
            value = self.values.get(oid)
            stored = isinstance(value, p.Stored)
            size = value.nbytes if stored else len(value.data) if isinstance(value, p.Inline) else 0
            objects[oid] = ObjectInfo(oid, size, (value.node,) if stored else ())
        return compiler.ClusterView(nodes, objects, actors=dict(self.actor_nodes))

    def unplaced(self) -> list[Any]:
        return self.parked.unpark()                   # another try: a node may have joined

    def cannot_place(self, graph: Any, tasks: dict[str, Any], error: Any) -> None:
        from plait.executor.wire import protocol as p

        task = tasks[error.task_id]
        died = self.values.get(task.actor) if task.is_actor_call else None
        if isinstance(died, p.Failed):                # a call of an actor killed unplaced
            self.refuse(graph, tasks, pickle.loads(died.error), error.task_id)
        elif error.infeasible:                        # a node may join that runs it
            self.parked.park(graph, tasks, error)
        else:
            self.refuse(graph, tasks, error)

    def submit(self, plan: compiler.Plan, graph: Any, tasks: dict[str, Any],
               refs: Sequence[ObjectRef], frees: tuple[str, ...]) -> None:
        """Send the plan's tasks to the head in one Submit (with the frees gathered)."""
        from plait.executor.wire import protocol as p

        functions, specs = [], []
        for task_id, node in graph.tasks.items():
            task = tasks[task_id]
            if not task.is_actor_call and node.function_id not in self.functions_sent:
                self.functions_sent.add(node.function_id)
                functions.append(task.function.pickled())
            placement = plan.placements[task_id]
            specs.append(p.TaskSpec(task_id, node.function_id, node.function_name, task.payload,
                                    node.deps, node.nested, node.outputs, node.max_retries,
                                    placement.node, placement.follows, placement.priority,
                                    node.node is not None,
                                    _retry_exceptions(task.options.retry_exceptions),
                                    actor=task.actor, method=task.method,
                                    detached=task.detached, slots=_slots(task, node.num_cpus),
                                    handle=task.named[1], actor_name=task.named[0],
                                    if_exists=task.if_exists,
                                    generator=_generator_kind(task.options.num_returns),
                                    concurrency=task.concurrency, resources=node.needs,
                                    max_calls=task.options.max_calls,
                                    caller=self.caller if task.method else "",
                                    env_vars=task.options.env_vars))
        watch = tuple(dict.fromkeys(ref.id for ref in refs if ref.id not in self.asked))
        self.asked.update(watch)          # fetch will not subscribe again
        self.conn.send(p.Submit(tuple(functions), tuple(specs), frees, watch, plan.bytes_moved))
        if self.settles_holds:
            self.submitted_unconfirmed.update(oid for task in tasks.values()
                                              for oid in task.output_ids)
        orphans = []
        for task in tasks.values():
            task.submitted = True
            task.forget_inputs()
            self.pending.update(task.output_ids)
            for oid in task.output_ids:
                if oid in self.refs:
                    self.held.add(oid)
                else:
                    orphans.append(oid)        # no ref left: run for its side effects only
        if orphans:
            self.conn.send(p.Free(tuple(orphans)))
        self.flush_frees()

    @_serialized
    def get_actor(self, name: str) -> Any:
        """The handle of the live actor created with ``name`` (by any session)."""
        from plait.executor.wire import protocol as p

        self.run([])                        # an actor created here must be known first
        found = self.request(p.ActorLookup(next(self.requests), name))
        return pickle.loads(found.handle)

    @_serialized
    def actor_names(self) -> tuple[str, ...]:
        """The registered names of the named actors alive (by any session)."""
        from plait.executor.wire import protocol as p

        self.run([])                        # an actor created here must be known first
        return self.request(p.ActorNamesRequest(next(self.requests))).names

    @_serialized
    def kill_actor(self, actor_id: str, no_restart: bool) -> None:
        """Stop an actor's process (submitting what was made first, its creation included).
        One that no node could host yet (parked) dies here, and its calls with it, as Ray
        fails the calls of an actor killed while it waits to be placed."""
        from plait.errors import ActorDiedError
        from plait.executor.wire import protocol as p

        self.run([])
        doomed = self.parked.drop_actor(actor_id)
        if not doomed:
            self.conn.send(p.KillActor(actor_id, no_restart))
            return
        error = ActorDiedError(actor_id, "it was killed (plait.kill) before any node could "
                                         "host it")
        for task in doomed:
            self.fail_unsent(task, error)

    def fetch(self, object_ids: list[str], count: int, timeout: float | None,
              raise_timeout: bool = True, until_failure: bool = False) -> None:
        """Wait until at least ``count`` of ``object_ids`` are known (ready or failed), or
        ``until_failure``, one of them is known to have failed: a get raises it then, as
        Ray's does, not once the slowest of the rest is done."""
        self.flush_frees()
        unique = list(dict.fromkeys(object_ids))
        asked = set(unique)                     # (the pump makes others known too)
        missing = {oid for oid in unique if oid not in self.values}
        # with a timeout, the head answers at once what it knows (timeout=0: what is
        # ready now, as Ray's owner knows it; else such a get never saw a finished task)
        answer = self.subscribe([oid for oid in unique if oid in missing],
                                answered=timeout is not None)
        need = min(count, len(unique))
        deadline = None if timeout is None else _now() + timeout
        progress = Progress()
        known: list[str] | None = None          # (at first: all those known already)
        try:
            while len(unique) - len(missing) < need:
                if until_failure and self.first_failure(
                        unique if known is None else [oid for oid in known if oid in asked]
                ) is not None:
                    return
                progress.update(len(unique) - len(missing), len(unique))
                left = PROGRESS_SLICE if deadline is None else deadline - _now()
                if left <= 0 and (answer is not None or self.arrived()):
                    self.await_answer(answer)   # what is known now: one last look
                    answer = None
                    missing = {oid for oid in missing if oid not in self.values}
                    continue
                if left <= 0:
                    if not raise_timeout:
                        return
                    first = next(oid for oid in unique if oid in missing)
                    raise GetTimeoutError(
                        f"get timed out after {timeout} s with {len(missing)} of "
                        f"{len(unique)} object(s) not ready (first: {first}); the tasks keep "
                        f"running, so a later get can still succeed")
                known = self.pump(min(left, PROGRESS_SLICE))
                if known is None:
                    missing = {oid for oid in missing if oid not in self.values}
                else:
                    missing.difference_update(known)
        finally:
            progress.close()
            if answer is not None and self.replies.pop(answer, None) is None:
                self.unawaited.add(answer)          # (its answer is dropped when it comes)

    def look_in(self) -> None:
        """Take in what the head sent while the program was away from plait (the errors of
        tasks whose refs it dropped, to log now rather than at its next call): the
        flusher's look when all is quiet. It never waits for the session's lock."""
        if not self.lock.acquire_if_free():
            return                   # a thread is in the session: it takes them in itself
        try:
            self.arrived()
        finally:
            self.lock.__exit__()

    def arrived(self) -> bool:
        """Take in the messages that have arrived already; whether there were any."""
        took = False
        while (message := self.conn.receive(0)) is not None:
            self.apply(message)
            took = True
        return took

    def await_answer(self, request: int | None) -> None:
        """Wait (a round trip to the head, bounded) for the answer to an answered Subscribe:
        the values known when the head took it in have come by then."""
        if request is None:
            return
        try:
            self.reply_to(request, SUBSCRIBE_ANSWER_SECONDS, "Subscribe")
        except GetTimeoutError:
            self.unawaited.add(request)        # a head this slow: what came is what is known

    def first_failure(self, object_ids: Iterable[str]) -> str | None:
        """The first of ``object_ids`` known to have failed, if any."""
        from plait.executor.wire import protocol as p

        values = self.values
        return next((oid for oid in object_ids if isinstance(values.get(oid), p.Failed)), None)

    def subscribe(self, object_ids: list[str], answered: bool = False) -> int | None:
        """Ask the head to tell us of these objects, once each, unless known or asked;
        ``answered``: and to answer at once, after what it knows of them (the request
        number to await, or None when nothing was asked)."""
        from plait.executor.wire import protocol as p

        unknown = [oid for oid in dict.fromkeys(object_ids)
                   if oid not in self.values and oid not in self.asked]
        if not unknown:
            return None
        self.asked.update(unknown)
        request = next(self.requests) if answered else 0
        self.conn.send(p.Subscribe(tuple(unknown), request))
        return request or None

    def pump_until(self, done: Any, timeout: float | None) -> bool:
        """Take in messages until ``done()`` holds (True) or ``timeout`` seconds pass
        (False; 0: only what has arrived already)."""
        self.flush_frees()
        deadline = None if timeout is None else _now() + timeout
        while not done():
            left = PROGRESS_SLICE if deadline is None else deadline - _now()
            if left <= 0:
                self.arrived()
                return done()
            self.pump(min(left, PROGRESS_SLICE))
        return True

    def pump(self, timeout: float | None) -> list[str] | None:
        """Receive and apply one message (if one comes within ``timeout``); the objects it
        made known. None: other threads had the session meanwhile (SessionLock.step_aside),
        and what they took in is in ``values`` and ``replies``: look there."""
        if self.lock.step_aside():
            return None
        message = self.conn.receive(timeout, self.lock.wakeup)
        return [] if message is None else self.apply(message)

    def show_output(self, output: Any) -> None:
        """Print a worker's lines as Ray does: ``(f pid=123) line``, with ``, ip=...`` for
        a worker on another host (wire/output.py)."""
        from plait.executor.wire.output import show
        from plait.executor.wire.protocol import host_of

        node = next((n for n in self.nodes if n.id == output.node), None)
        far = node is not None and node.host != self.host
        show(output, host_of(node.address) if far else None)

    def apply(self, message: Any) -> list[str]:
        """Take in one message from the head; the objects it made known. A Welcome answers
        refresh_nodes (late, if that was interrupted): the node list as it is now."""
        from plait.executor.wire import protocol as p

        if isinstance(message, p.Welcome):
            self.nodes = message.nodes
            return []
        if isinstance(message, p.Yielded):
            self.take_yielded(message)
            return []
        if isinstance(message, p.Unhandled):
            log_unhandled(message.errors)
            return []
        if isinstance(message, p.Output):
            self.show_output(message)
            return []
        if not isinstance(message, p.Ready):
            if message.request in self.unawaited:      # an abandoned spare's
                self.unawaited.discard(message.request)
            else:
                self.replies[message.request] = message
            return []
        known = []
        for oid, value in message.values:
            self.pending.discard(oid)
            if oid in self.asked or self.refs[oid] > 0:
                self.asked.discard(oid)
                self.values[oid] = value
                known.append(oid)
        if self.futures is not None:
            self.futures.arrived += known
        return known

    def request(self, message: Any, timeout: float | None = None) -> Any:
        """Send a request and wait for its reply (raising the error of a Refused one, or
        GetTimeoutError after ``timeout`` seconds)."""
        from plait.executor.wire import protocol as p

        self.flush_frees()
        self.conn.send(message)
        reply = self.reply_to(message.request, timeout, type(message).__name__)
        if isinstance(reply, p.Refused):
            raise pickle.loads(reply.error)
        return reply

    def reply_to(self, request: int, timeout: float | None = None, asked: str = "") -> Any:
        """The reply to a request sent (a Refused one too), once it comes."""
        deadline = None if timeout is None else _now() + timeout
        while request not in self.replies:
            left = None if deadline is None else deadline - _now()
            if left is not None and left <= 0:
                raise GetTimeoutError(f"no answer to {asked} in {timeout} s")
            self.pump(left)          # checks that the head is alive while it waits
        return self.replies.pop(request)

    # -- lifetimes -----------------------------------------------------------------------

    @_serialized
    def settle_holds(self, riding: Counter[str]) -> None:
        """A worker's task is about to end: the head lets go of what the task read as soon
        as it hears so, and must count a ref the task kept (a handle in an actor's state)
        before that, or the object goes. So the holds of refs found here go now (before
        any free, as always), and when one of those refs is still alive the head's taking
        them in is waited for (one round trip, only then). Refs alive only inside the
        task's results (``riding``, counts by object) need no wait: the results hold them
        once the head has them, and the refs live until the results are sent; but those
        results reach the head through the node, so when they hold refs of tasks this
        session submitted, the head must have had the Submit first (or it would not count
        the results' holds on objects it does not know yet): a round trip then too."""
        self.flush_frees()
        alive = any(self.refs[oid] > riding[oid] for oid in self.unsettled)
        submitted = any(oid in self.submitted_unconfirmed for oid in riding)
        self.unsettled.clear()
        self.submitted_unconfirmed.clear()
        if alive or submitted:
            self.apply(self.conn.hello(other=self.apply))

    @_serialized
    def run_confirmed(self, refs: list[ObjectRef]) -> None:
        """Submit the calls of ``refs`` and wait for the head to have them (one round trip):
        a worker's put that holds them reaches the head through its node, another way."""
        self.run(refs)
        self.apply(self.conn.hello(other=self.apply))

    def settled(self) -> bool:
        """No hold to send or confirm (read without the lock: a hint for settle_holds)."""
        return not (self.holds or self.unsettled or self.submitted_unconfirmed)

    def flush_frees(self, send: bool = True) -> tuple[str, ...]:
        """Turn dead refs and dead views into Free messages (objects nobody here can read);
        with ``send`` False the freed ids are returned for the caller to send instead.
        Holds go first: an object a found ref holds may be freed by the same message."""
        from plait.executor.wire import protocol as p

        released, unpins = self.take_dropped()
        self.send_holds()
        if unpins:
            self.conn.send(p.Unpin(tuple(unpins)))
        if released and send:
            after = self.frees_after() if self.frees_after is not None else ()
            self.conn.send(p.Free(tuple(released), after=after))
        return () if send else tuple(released)

    def take_dropped(self) -> tuple[list[str], list[tuple[str, str]]]:
        """Count down dead refs and dead views: the objects to free (held, no ref or view
        left here) and the views to unpin. A ref found and dropped again before its Hold
        was sent needs neither message."""
        released, unpins = [], []
        while self.dead:
            oid = self.dead.popleft()
            self.refs[oid] -= 1
            if self.refs[oid] <= 0:
                del self.refs[oid]
                if oid not in self.pins:
                    self.values.pop(oid, None)
                    if oid in self.held:
                        released.append(oid)
        while self.unpinned:
            oid, located = self.unpinned.popleft()
            if oid in self.reusing and oid in self.refs:
                self.reusable.setdefault(oid, []).append(located)
            else:
                unpins.append((located.node, oid))
            self.pins[oid] -= 1
            if self.pins[oid] <= 0:
                del self.pins[oid]
                if oid not in self.refs:
                    released.append(oid)
        for oid in released:
            self.values.pop(oid, None)
            self.held.discard(oid)
        unheld = {oid for oid in released if self.holds.pop(oid, 0) is None}
        return [oid for oid in released if oid not in unheld], unpins

    def send_holds(self) -> None:
        from plait.executor.wire import protocol as p

        if self.holds:
            self.conn.send(p.Hold(tuple(self.holds)))
            if self.settles_holds:
                self.unsettled.update(self.holds)
            self.holds.clear()

    @_serialized
    def shutdown(self) -> None:
        """Stop the cluster this driver started; from a joined one, only disconnect."""
        from plait.executor.wire import protocol as p

        try:
            if self.futures is not None:
                self.futures.stop()
                self.lock.waiter = None
            self.finish_unsubmitted()
            if self.owns_cluster:
                try:
                    self.conn.send(p.Bye())
                except Exception:
                    pass
            else:                   # leave the cluster as we found it: release our objects
                self.drop_spare()
                self.flush_frees()
                if self.held:
                    self.conn.send(p.Free(tuple(self.held)))
        finally:
            # closed even when the last Free fails (a head gone): a worker's session shares
            # the worker's context, whose term waits for every socket of it to close
            self.cluster.stop()
            self.conn.close()
            self.lock.close()
        for arena in self.arenas.values():
            try:
                arena.close()
            except BufferError:
                pass   # the user still holds zero-copy arrays; the mapping goes with them


    def finish_unsubmitted(self) -> None:
        """Calls made but never requested still run before a cluster this driver owns
        stops (as a Ray driver's tasks do while it lives); a joined cluster runs them on."""
        self.flusher.stop()
        made = [t for t in self.unsubmitted if not t.submitted]
        if not made:
            return
        try:
            self.run([])
            if self.owns_cluster:
                outputs = [oid for task in made for oid in task.output_ids]
                self.fetch(outputs, len(outputs), None)
        except Exception as error:           # shutting down: say so, do not raise
            print(f"plait: tasks submitted at shutdown did not finish: {error!r}",
                  file=sys.stderr)


def _slots(task: Any, num_cpus: float) -> float:
    """The CPUs the task holds while it runs, fractions too (below one, a share of one
    CPU: the node runs several such tasks at once). An actor holds none unless it asked
    for CPUs (it has a process of its own), then that many, rounded up, for its lifetime
    (as in Ray)."""
    import math

    if task.method == "__init__":
        return math.ceil(num_cpus)
    return num_cpus


def _generator_kind(num_returns: int | str | None) -> str:
    """How a task's values come back: "streaming" or "dynamic" (one by one, Yielded), or
    "" (as its results, at its end)."""
    return num_returns if isinstance(num_returns, str) else ""




def _retry_exceptions(option: bool | Sequence[type]) -> bytes:
    """The retry_exceptions option as the worker will read it (b"" for no retries)."""
    import cloudpickle

    if option is True:
        return pickle.dumps(True)
    return cloudpickle.dumps(tuple(option)) if option else b""


def _call_site() -> str:
    """``file:line`` of the user's code that called into plait (for memory reports)."""
    frame = sys._getframe(1)
    package = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))   # all of plait
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame = frame.f_back
    if frame is None:
        return "plait"
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"




def _now() -> float:
    import time

    return time.monotonic()
