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
import os
import pickle
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
from plait.store.allocator import Allocator
from plait.store.arena import Arena

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
        self.allocator = Allocator(arena.capacity)
        self.blocks: dict[str, int] = {}          # allocated, not yet sealed: object -> offset
        self.directory = Directory(self.reclaim)
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
        handler(peer, message)

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
        self.directory.expect(message.object_id)
        self.object_done(message.object_id, p.Inline(message.data))

    def on_Alloc(self, peer: Peer, message: p.Alloc) -> None:
        try:
            offset = self.allocator.allocate(message.nbytes)
        except MemoryError as error:
            self.send(peer, p.AllocFailed(message.request, pickle.dumps(error)))
            return
        self.blocks[message.object_id] = offset
        self.send(peer, p.Allocated(message.request, message.object_id, self.config.node, offset))

    def on_Seal(self, peer: Peer, message: p.Seal) -> None:
        offset = self.blocks.pop(message.object_id)
        nbytes = self.allocator.size_of(offset)
        self.directory.expect(message.object_id)
        self.object_done(message.object_id, p.Located(self.config.node, offset, nbytes))

    def on_ViewRequest(self, peer: Peer, message: p.ViewRequest) -> None:
        objects, missing = {}, []
        for oid in message.object_ids:
            entry = self.directory.entries.get(oid)
            if entry is None:
                missing.append((oid, pickle.dumps(self.directory.missing_error(oid))))
            else:
                nbytes = _size_of(entry.value)
                objects[oid] = ObjectInfo(oid, nbytes, (self.config.node,))
        node = NodeView(self.config.node, len(self.workers),
                        self.allocator.capacity - self.allocator.used, len(self.table.tasks))
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
                for _, value in result.outputs:
                    self.reclaim(value)
                continue
            for oid, value in result.outputs:
                self.blocks.pop(oid, None)
                self.object_done(oid, value)
            self.drop_readers(state.spec)

    def worker_died(self, pidfd: int) -> None:
        worker = next(w for w in self.workers.values() if w.pidfd == pidfd)
        self.drain(self.worker_sock, WORKER)    # results it sent before dying still count
        self.poller.unregister(pidfd)
        del self.workers[worker.identity]
        how = worker.describe(self.config.node, reap(worker))
        inflight = list(worker.inflight.items())
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
                    self.drop_readers(state.spec)
                    work.extend((out, val) for out in state.spec.outputs)

    def fail_task(self, task_id: str, error: bytes) -> None:
        state = self.table.fail(task_id)
        if state is None:
            return
        self.drop_readers(state.spec)
        for oid in state.spec.outputs:
            self.object_done(oid, p.Failed(error))

    def drop_readers(self, spec: p.TaskSpec) -> None:
        for oid in dict.fromkeys(spec.deps + spec.nested):
            self.directory.drop_reader(oid)

    def reclaim(self, value: p.ObjectValue) -> None:
        if isinstance(value, p.Located):
            self.allocator.free(value.offset)

    def dispatch(self) -> None:
        """Hand ready tasks to the least-busy workers, many per message when there are many."""
        ready = self.table.ready
        while ready:
            workers = [w for w in self.workers.values() if w.ready]
            if not workers:
                return
            batch = max(1, min(MAX_BATCH, len(ready) // (2 * len(workers))))
            worker = min(workers, key=lambda w: (len(w.inflight), w.index))
            if len(worker.inflight) >= 2 * batch:
                return
            items = [item for item in (self.work_item(ready.popleft())
                                       for _ in range(min(batch, len(ready)))) if item]
            if items:
                self.send_items(worker, items)

    def work_item(self, task_id: str) -> p.WorkItem | None:
        state = self.table.tasks.get(task_id)
        if state is None:
            return None
        spec = state.spec
        values = {oid: self.directory.lookup(oid) for oid in dict.fromkeys(spec.deps + spec.nested)}
        lost = [values[oid] for oid in spec.deps if isinstance(values[oid], p.Failed)]
        if lost:                  # freed with plait.free after the task was submitted
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
        self.arena.unlink()
        for address in (self.config.client_address, self.config.worker_address):
            try:
                os.unlink(address.removeprefix("ipc://"))
            except FileNotFoundError:
                pass


def _size_of(value: p.ObjectValue | None) -> int:
    """Bytes of an object's layout (0 while its task has not finished)."""
    if isinstance(value, p.Located):
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
