"""The node process: owns the node's arena, runs its workers, and (on the head) the directory.

One thread, one loop::

    clients (drivers) --ROUTER "client"--+
                                         +--> NodeServer.run(): handle messages, reap dead
    workers ----------ROUTER "worker"----+    workers (pidfds), dispatch ready tasks in
    worker pidfds ------------------------+    batches, flush Ready notifications

The driver compiles plans and submits their tasks; the node keeps each task until its
inputs exist, hands ready tasks to idle workers in batches (one message for many quick
tasks), and tells subscribers when objects are ready. It stops on ``Bye``, when its
parent process disappears, or on SIGTERM, and always unlinks its arena.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import signal
import sys
import time
from collections import defaultdict
from dataclasses import dataclass

import zmq

from plait.errors import WorkerCrashedError
from plait.executor import protocol as p
from plait.executor.directory import Directory, Peer
from plait.executor.scheduler import TaskTable
from plait.executor.worker import WorkerConfig
from plait.executor.workers import WorkerHandle, fork_worker, reap, spawn_worker, stop_all
from plait.compiler.view import ClusterView, NodeView, ObjectInfo
from plait.errors import ClusterError, ObjectLostError, ObjectTooLargeError
from plait.store.arena import Arena
from plait.store.spill import Spiller
from plait.store.store import ObjectStore

log = logging.getLogger("plait.node")

POLL_MS = 200
MAX_BATCH = 64              # tasks per RunTasks message at most
PARENT_CHECK_SECONDS = 0.5
WORKER_STOP_GRACE = 2.0

CLIENT, WORKER = "client", "worker"


@dataclass(frozen=True)
class NodeConfig:
    session: str
    node: str
    num_workers: int
    store_capacity: int
    run_dir: str
    parent_pid: int
    spill_dir: str | None = None        # None: spilling is off

    @property
    def client_address(self) -> str:
        return f"ipc://{self.run_dir}/{self.node}.sock"

    @property
    def worker_address(self) -> str:
        return f"ipc://{self.run_dir}/{self.node}-workers.sock"

    @property
    def arena_name(self) -> str:
        return f"plait-{self.session}-{self.node}"


class NodeServer:
    """State and handlers of one node process (this node is also the head in 0.1)."""

    def __init__(self, config: NodeConfig, arena: Arena, workers: list[WorkerHandle]) -> None:
        self.config = config
        self.arena = arena
        spiller = Spiller(config.spill_dir) if config.spill_dir else None
        self.store = ObjectStore(config.node, arena, spiller)
        self.directory = Directory(self.reclaim)
        self.task_pins: dict[str, list[str]] = {}     # running task -> objects pinned for it
        self.alloc_waiting: list[tuple[Peer, p.Alloc]] = []   # waiting for room
        self.task_puts: dict[str, list[str]] = {}     # running task -> objects it put
        self.table = TaskTable()
        self.functions: dict[str, bytes] = {}
        self.workers = {w.identity: w for w in workers}
        self.notes: dict[Peer, list[tuple[str, p.ObjectValue]]] = defaultdict(list)
        self.hellos: list[bytes] = []
        self.stopping = False
        self.ctx = zmq.Context()
        self.client = self._bind(zmq.ROUTER, config.client_address)
        self.worker_sock = self._bind(zmq.ROUTER, config.worker_address)
        self.poller = zmq.Poller()
        self.poller.register(self.client, zmq.POLLIN)
        self.poller.register(self.worker_sock, zmq.POLLIN)
        for worker in workers:
            self.poller.register(worker.pidfd, zmq.POLLIN)
        self.sockets = {CLIENT: self.client, WORKER: self.worker_sock}

    def _bind(self, kind: int, address: str) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(address)
        return sock

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        checked = time.monotonic()
        while not self.stopping:
            for source, _ in self.poller.poll(POLL_MS):
                if source is self.client:
                    self.drain(self.client, CLIENT)
                elif source is self.worker_sock:
                    self.drain(self.worker_sock, WORKER)
                else:
                    self.worker_died(source)
            if self.alloc_waiting:
                self.retry_allocs()
            self.dispatch()
            self.flush()
            if time.monotonic() - checked > PARENT_CHECK_SECONDS:
                checked = time.monotonic()
                if os.getppid() != self.config.parent_pid:
                    self.stopping = True

    def drain(self, sock: zmq.Socket, kind: str) -> None:
        for _ in range(1000):      # bounded, so one busy peer cannot starve the rest
            try:
                identity, frame = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self.handle((kind, identity.bytes), p.decode(frame.buffer))

    def send(self, peer: Peer, message: p.Message) -> None:
        kind, identity = peer
        self.sockets[kind].send_multipart([identity, p.encode(message)], copy=False)

    def handle(self, peer: Peer, message: p.Message) -> None:
        handler = getattr(self, f"on_{type(message).__name__}", None)
        assert handler is not None, f"no handler for {type(message).__name__}"
        try:
            handler(peer, message)
        except Exception:       # one bad message must not take the node down
            log.exception("%s failed handling %s from %s", self.config.node,
                          type(message).__name__, peer)
            if isinstance(message, p.Alloc | p.Pin | p.ViewRequest | p.MemoryRequest):
                error = ClusterError(f"{self.config.node} failed handling "
                                     f"{type(message).__name__}; see the node's log")
                self.send(peer, p.Refused(message.request, pickle.dumps(error)))

    # -- clients -------------------------------------------------------------------------

    def on_Hello(self, peer: Peer, message: p.Hello) -> None:
        self.hellos.append(peer)
        self.answer_hellos()

    def answer_hellos(self) -> None:
        if not all(w.ready for w in self.workers.values()):
            return
        info = p.NodeInfo(self.config.node, self.config.client_address, os.getpid(), True,
                          len(self.workers), self.arena.name, self.arena.capacity)
        for peer in self.hellos:
            self.send(peer, p.Welcome(self.config.session, (info,)))
        self.hellos.clear()

    def on_PutInline(self, peer: Peer, message: p.PutInline) -> None:
        self.created(peer, message.object_id)
        self.object_done(message.object_id, message.value)

    def on_Alloc(self, peer: Peer, message: p.Alloc) -> None:
        if not self.try_alloc(peer, message, may_wait=True):
            self.alloc_waiting.append((peer, message))

    def try_alloc(self, peer: Peer, message: p.Alloc, may_wait: bool) -> bool:
        """Allocate, or fail the request; False (to wait) while running tasks may free room.

        A full store whose pins belong to running tasks fills up only for a moment: the
        request waits until a task ends. It fails at once when every running task is
        itself waiting for room, so waiting can never deadlock.
        """
        try:
            offset = self.store.allocate(message.object_id, message.nbytes, message.created_by)
        except ObjectTooLargeError as error:
            self.send(peer, p.Refused(message.request, pickle.dumps(error)))
        except MemoryError as error:
            if may_wait and self.room_may_come(peer):
                return False
            self.send(peer, p.Refused(message.request, pickle.dumps(error)))
        else:
            self.send(peer, p.Allocated(message.request, message.object_id, self.config.node,
                                        offset))
        return True

    def room_may_come(self, asking: Peer) -> bool:
        waiting = {peer for peer, _ in self.alloc_waiting} | {asking}
        return any(w.inflight and (WORKER, w.identity) not in waiting
                   for w in self.workers.values())

    def retry_allocs(self) -> None:
        waiting, self.alloc_waiting = self.alloc_waiting, []
        for peer, message in waiting:
            if not self.try_alloc(peer, message, may_wait=True):
                self.alloc_waiting.append((peer, message))

    def on_Seal(self, peer: Peer, message: p.Seal) -> None:
        task_id = self.created(peer, message.object_id)
        self.object_done(message.object_id, self.seal(message.object_id, message.contains))
        if task_id is not None:       # the task that put it may read it until it ends
            self.store.pin(message.object_id)
            self.task_pins.setdefault(task_id, []).append(message.object_id)

    def seal(self, object_id: str, contains: tuple[str, ...]) -> p.Stored:
        self.store.seal(object_id)
        return p.Stored(self.config.node, self.store.nbytes(object_id), contains)

    def created(self, peer: Peer, object_id: str) -> str | None:
        """A put: held by its client, or by the task that made it until that task ends."""
        self.directory.expect(object_id)
        worker = self.workers.get(peer[1]) if peer[0] == WORKER else None
        if worker is None or not worker.inflight:
            return None
        task_id = next(iter(worker.inflight))
        self.task_puts.setdefault(task_id, []).append(object_id)
        return task_id

    def on_Pin(self, peer: Peer, message: p.Pin) -> None:
        values = tuple((oid, self.pin_value(oid)) for oid in message.object_ids)
        self.send(peer, p.Pinned(message.request, values))

    def pin_value(self, object_id: str) -> p.ObjectValue | None:
        """The object's value, Stored ones pinned in memory and Located (None if pending)."""
        value = self.directory.lookup(object_id)
        if not isinstance(value, p.Stored):
            return value
        try:
            offset = self.store.pin(object_id)
        except (ObjectLostError, MemoryError) as error:
            return p.Failed(pickle.dumps(error))
        return p.Located(value.node, offset, value.nbytes, value.contains)

    def on_Unpin(self, peer: Peer, message: p.Unpin) -> None:
        for oid in message.object_ids:
            self.store.unpin(oid)

    def on_Hold(self, peer: Peer, message: p.Hold) -> None:
        for oid in message.object_ids:
            self.directory.hold(oid)

    def on_MemoryRequest(self, peer: Peer, message: p.MemoryRequest) -> None:
        self.send(peer, p.MemoryReport(message.request, (self.store.summary(),)))

    def on_ViewRequest(self, peer: Peer, message: p.ViewRequest) -> None:
        objects, missing = {}, []
        for oid in message.object_ids:
            entry = self.directory.entries.get(oid)
            if entry is None:
                missing.append((oid, pickle.dumps(self.directory.missing_error(oid))))
            else:
                nbytes = _size_of(entry.value)
                objects[oid] = ObjectInfo(oid, nbytes, (self.config.node,))
        allocator = self.store.allocator
        node = NodeView(self.config.node, len(self.workers),
                        allocator.capacity - allocator.used, len(self.table.tasks))
        self.send(peer, p.View(message.request, ClusterView((node,), objects), tuple(missing)))

    def on_Submit(self, peer: Peer, message: p.Submit) -> None:
        self.functions.update(message.functions)
        for spec in message.tasks:
            for oid in spec.outputs:
                self.directory.expect(oid)
        for spec in message.tasks:
            self.add_task(spec)

    def add_task(self, spec: p.TaskSpec) -> None:
        for oid in dict.fromkeys(spec.deps + spec.nested):
            if oid not in self.directory.entries:
                error = self.directory.missing_error(oid)
                self.table.add(spec, lambda _: True)
                self.fail_task(spec.id, pickle.dumps(error))
                return
        for oid in dict.fromkeys(spec.deps + spec.nested):
            self.directory.add_reader(oid)
        self.table.add(spec, lambda oid: self.directory.lookup(oid) is not None)

    def on_Subscribe(self, peer: Peer, message: p.Subscribe) -> None:
        for oid in message.object_ids:
            value = self.directory.subscribe(oid, peer)
            if value is not None:
                self.notes[peer].append((oid, value))

    def on_Free(self, peer: Peer, message: p.Free) -> None:
        for oid in message.object_ids:
            if message.forced:
                self.directory.force_free(oid)
            else:
                self.directory.release(oid)

    def on_Bye(self, peer: Peer, message: p.Bye) -> None:
        self.stopping = True

    # -- workers -------------------------------------------------------------------------

    def on_WorkerReady(self, peer: Peer, message: p.WorkerReady) -> None:
        worker = self.workers.get(peer[1])
        if worker is not None:
            worker.ready = True
            self.answer_hellos()

    def on_TasksDone(self, peer: Peer, message: p.TasksDone) -> None:
        worker = self.workers.get(peer[1])
        for result in message.results:
            if worker is not None:
                worker.inflight.pop(result.task_id, None)
            state = self.table.finish(result.task_id, result.attempt)
            if state is None:                       # a late duplicate: drop its blocks
                for oid, value in result.outputs:
                    self.reclaim(oid, value)
                continue
            for oid, value in result.outputs:
                if isinstance(value, p.Located):
                    value = self.seal(oid, value.contains)
                self.object_done(oid, value)
            self.task_ended(state.spec)

    def worker_died(self, pidfd: int) -> None:
        worker = next(w for w in self.workers.values() if w.pidfd == pidfd)
        self.drain(self.worker_sock, WORKER)    # results it sent before dying still count
        self.poller.unregister(pidfd)
        del self.workers[worker.identity]
        how = worker.describe(self.config.node, reap(worker))
        inflight = list(worker.inflight.items())
        for task_id, _ in inflight:
            self.release_task_objects(task_id)
        if inflight:
            (task_id, attempt), rest = inflight[0], inflight[1:]
            if not self.table.crashed(task_id, attempt, how):
                self.fail_crashed(task_id)
            for task_id, attempt in rest:
                self.table.requeue(task_id, attempt)
        if not self.stopping:
            self.start_worker(worker.index)

    def fail_crashed(self, task_id: str) -> None:
        state = self.table.tasks.get(task_id)
        if state is not None:
            error = WorkerCrashedError(state.spec.function_name, task_id, state.crashes)
            self.fail_task(task_id, pickle.dumps(error))

    def start_worker(self, index: int) -> None:
        config = WorkerConfig(index, self.config.node, self.config.worker_address,
                              self.arena.name, os.getpid())
        worker = spawn_worker(config)
        self.workers[worker.identity] = worker
        self.poller.register(worker.pidfd, zmq.POLLIN)

    # -- objects and tasks ---------------------------------------------------------------

    def object_done(self, object_id: str, value: p.ObjectValue) -> None:
        """An object exists (or failed for good): notify, wake dependants, cascade failures."""
        work = [(object_id, value)]
        while work:
            oid, val = work.pop()
            for peer in self.directory.set_value(oid, val):
                self.notes[peer].append((oid, val))
            for task_id in self.table.object_ready(oid, isinstance(val, p.Failed)):
                state = self.table.fail(task_id)
                if state is not None:
                    self.task_ended(state.spec)
                    work.extend((out, val) for out in state.spec.outputs)

    def fail_task(self, task_id: str, error: bytes) -> None:
        state = self.table.fail(task_id)
        if state is None:
            return
        self.task_ended(state.spec)
        for oid in state.spec.outputs:
            self.object_done(oid, p.Failed(error))

    def task_ended(self, spec: p.TaskSpec) -> None:
        """A task is over for good: its inputs lose a reader, its pins and puts end."""
        self.release_task_objects(spec.id)
        for oid in dict.fromkeys(spec.deps + spec.nested):
            self.directory.drop_reader(oid)

    def release_task_objects(self, task_id: str) -> None:
        for oid in self.task_pins.pop(task_id, ()):
            self.store.unpin(oid)
        for oid in self.task_puts.pop(task_id, ()):
            self.directory.release(oid)

    def reclaim(self, object_id: str, value: p.ObjectValue) -> None:
        if isinstance(value, (p.Stored, p.Located)):
            self.store.delete(object_id)

    def dispatch(self) -> None:
        """Hand ready tasks to the least-busy workers, many per message when there are many.

        A busy worker may get a second batch queued behind its first (hiding the round
        trip), except for a task that reads stored objects: those are pinned in memory
        from dispatch to the end of the task, so they only go to an idle worker.
        """
        ready = self.table.ready
        while ready:
            workers = [w for w in self.workers.values() if w.ready]
            if not workers:
                return
            batch = max(1, min(MAX_BATCH, len(ready) // (2 * len(workers))))
            worker = min(workers, key=lambda w: (len(w.inflight), w.index))
            if len(worker.inflight) >= 2 * batch:
                return
            if worker.inflight and self.reads_stored(ready[0]):
                return
            items = [item for item in (self.work_item(ready.popleft())
                                       for _ in range(min(batch, len(ready)))) if item]
            if items:
                self.send_items(worker, items)

    def reads_stored(self, task_id: str) -> bool:
        state = self.table.tasks.get(task_id)
        return state is not None and any(
            isinstance(self.directory.lookup(oid), p.Stored) for oid in state.spec.deps)

    def work_item(self, task_id: str) -> p.WorkItem | None:
        state = self.table.tasks.get(task_id)
        if state is None:
            return None
        spec = state.spec
        values = {oid: self.pin_value(oid) for oid in dict.fromkeys(spec.deps + spec.nested)}
        self.task_pins[task_id] = [oid for oid, v in values.items() if isinstance(v, p.Located)]
        lost = [values[oid] for oid in spec.deps if isinstance(values[oid], p.Failed)]
        if lost:                  # freed after submission, or its spill file is gone
            self.fail_task(task_id, lost[0].error)
            return None
        return p.WorkItem(task_id, state.attempt, spec.function_id, spec.function_name,
                          spec.payload, tuple(values[oid] for oid in spec.deps),
                          tuple((oid, values[oid]) for oid in spec.nested), spec.outputs)

    def send_items(self, worker: WorkerHandle, items: list[p.WorkItem]) -> None:
        new = {item.function_id for item in items} - worker.functions
        worker.functions |= new
        for item in items:
            worker.inflight[item.task_id] = item.attempt
        functions = tuple((fid, self.functions[fid]) for fid in sorted(new))
        self.send((WORKER, worker.identity), p.RunTasks(functions, tuple(items)))

    def flush(self) -> None:
        for peer, values in self.notes.items():
            self.send(peer, p.Ready(tuple(values)))
        self.notes.clear()

    # -- shutdown ------------------------------------------------------------------------

    def close(self) -> None:
        for worker in self.workers.values():
            try:
                self.send((WORKER, worker.identity), p.Bye())
            except Exception:
                pass
        stop_all(list(self.workers.values()), WORKER_STOP_GRACE)
        self.client.close(linger=0)
        self.worker_sock.close(linger=0)
        self.ctx.term()
        self.store.close()
        self.arena.unlink()
        shutil.rmtree(self.config.run_dir, ignore_errors=True)   # sockets; the driver may be gone


def _size_of(value: p.ObjectValue | None) -> int:
    """Bytes of an object's layout (0 while its task has not finished)."""
    if isinstance(value, (p.Stored, p.Located)):
        return value.nbytes
    if isinstance(value, p.Inline):
        return len(value.data)
    return 0


def serve(config: NodeConfig) -> None:
    """Create the arena, fork the workers, then run the loop until told to stop."""
    arena = Arena.create(config.arena_name, config.store_capacity)
    workers: list[WorkerHandle] = []
    server = None
    try:
        for index in range(config.num_workers):     # fork before any thread exists
            workers.append(fork_worker(WorkerConfig(index, config.node, config.worker_address,
                                                    arena.name, os.getpid())))
        server = NodeServer(config, arena, workers)
        signal.signal(signal.SIGTERM, lambda *_: setattr(server, "stopping", True))
        server.run()
    finally:
        if server is not None:
            server.close()
        else:
            stop_all(workers, 0)
            arena.unlink()


def main() -> None:
    """``python -m plait.executor.node CONFIG_JSON``: started by the driver's session."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C in the driver must not kill us
    import numpy  # noqa: F401  (imported once here so forked workers start with it)

    serve(NodeConfig(**json.loads(sys.argv[1])))


if __name__ == "__main__":
    main()
