"""Node: one node's runtime, its store, its workers and the tasks the head assigned to it.

Data flow through a node::

    head --Assign(tasks)--> Node: subscribe to each task's inputs at the head
    head --Ready(values)--> Node: Inline / Stored here: ready;  Stored elsewhere: pull it
                                  (Transfers), then it is a replica here, ReplicaAdded
    Node --RunTasks--> workers --TasksDone--> Node: seal results, wake local dependants,
                                                    TasksDone to the head

A Node is a state machine: events in (``handle``: the head's and workers' messages, a
worker that exited or was started, the clock), instructions out (send, start or kill a
worker); its process's loop carries them out (wire/instructions.py). The head's own node
is driven by the same messages, handed over in process instead of through a socket. A
Node never decides where tasks run; it only runs what it was given, retries tasks whose
worker died (``max_retries``), and reports.
"""

from __future__ import annotations

import itertools
import logging
import pickle
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from plait.errors import (ObjectFreedError, ObjectLostError, ObjectStoreFullError,
                          ObjectTooLargeError, OutOfMemoryError, PlanError, TaskCancelledError,
                          TaskError, WorkerCrashedError)
from plait.executor.node.actors import Actors
from plait.executor.node.admission import GO, NOTHING, WAIT, Admission, Need
from plait.executor.node.invariants import node_problems
from plait.executor.node.resources import Ledger
from plait.executor.node.snapshot import node_snapshot
from plait.executor.node.tasks import TaskTable
from plait.executor.node.workers import Processes, WorkerHandle
from plait.executor.wire import protocol as p
from plait.executor.wire.config import OUTPUT_SUFFIX, WorkerConfig
from plait.executor.wire.dispatch import handlers
from plait.executor.wire.instructions import (Dispatch, Event, FromHead, FromWorker,
                                              Instruction, InterruptWorker, KillWorker,
                                              Outbox, StartWorker,
                                              Tick, ToHead, ToWorker, WorkerGone,
                                              WorkerStarted)
from plait.store.allocator import Allocator
from plait.store.arena import Arena
from plait.store.spill import Spiller
from plait.store.store import ObjectStore

if TYPE_CHECKING:
    from plait.executor.node.transfers import PullOwner, Transfers

log = logging.getLogger("plait.node")

MAX_BATCH = 64              # tasks per RunTasks message at most
SYSTEM_MEMORY_FLOOR = 0.05  # below this fraction of RAM available, the largest worker goes
WORKER_STOP_SECONDS = 5.0   # a busy worker stopped this long is taken for dead
WORKER_STOP_GRACE = 2.0
MAX_REFETCHES = 3          # a pull whose source lost its copy is asked for again this often
PARK_SECONDS = 5.0          # an idle stand-in is kept this long for the next blocked worker
ROOM_RERUNS_FOR_VIEWS = 3   # a result refused beside drivers' views: runs again this often
CPU_EPSILON = 1e-9          # CPUs summed from fractions: 3 x 1/3 is all of one
ADMIT_LOOKAHEAD = 64        # tasks held back for memory looked at per dispatch, oldest first
WATCH_SECONDS = 0.5         # how often workers' /proc state and memory are looked at

MakeTransfers = Callable[[ObjectStore, "PullOwner"], "Transfers"]   # (its store, the node)


class Node(Outbox):
    """One node: answers the head (``up``), drives workers (``to_worker``), as instructions.

    It makes its store and its transfers, which report back to it: the store, replicas it
    evicted (``replica_dropped``); the transfers, pulls that ended and copies found lost.
    """

    def __init__(self, node_id: str, arena: Arena, spiller: Spiller | None,
                 workers: list[WorkerHandle], worker_address: str, transfers: MakeTransfers,
                 processes: Processes, clock: Callable[[], float] = time.monotonic) -> None:
        Outbox.__init__(self)
        self.id = node_id
        self.store = ObjectStore(node_id, arena, spiller, self.replica_dropped)
        self.workers = {w.identity: w for w in workers}
        self.worker_address = worker_address
        self.starting: set[int] = set()             # worker indexes asked for, not started
        self.table = TaskTable()
        self.actors = Actors(self)
        self.functions: dict[str, bytes] = {}
        self.values: dict[str, p.ObjectValue] = {}  # inputs known here: Inline/Failed/Stored here
        self.asked: set[str] = set()                # subscribed at the head, no answer yet
        self.refetches: Counter[str] = Counter()    # pulls failed because the source lost it
        self.task_pins: dict[str, list[str]] = {}   # running task -> objects pinned for it
        self.client_pins: Counter[str] = Counter()  # object -> pins drivers hold (via the head)
        self.view_pins: dict[str, set[bytes]] = {}   # object -> workers keeping views of it
        self.doomed: set[str] = set()       # deleted by the head, kept while views of it live
        self.held_slots: dict[str, float] = {}      # task or actor -> CPUs held beyond a worker
        self.ledger = Ledger(())                    # GPUs, memory, custom: who holds what
        self.resource_waiting: list[str] = []       # ready tasks whose resources are held
        self.alloc_waiting: list[tuple[bytes, p.Alloc]] = []
        self.pin_waiting: list[p.Pin] = []          # a driver's get waiting for room
        self.room_waiting: list[str] = []           # tasks whose inputs found no room yet
        self.room_refused: dict[str, int] = {}      # task -> attempt refused room beside others
        self.admission = Admission(self.store)
        self.admitted: tuple[str, Need] = ("", NOTHING)   # the last task admit() looked at
        self.transfers = transfers(self.store, self)
        self.processes = processes                  # reap, read /proc
        self.clock = clock                          # stand-ins parked, tasks waiting for views
        self.watched = clock()                      # when /proc was last looked at
        self.worker_settings: dict[str, str] = {}
        self.num_workers = len(workers)            # extras stand in for blocked ones
        self.worker_memory_limit = 0               # bytes; 0: only the system-wide floor
        self.started = False
        self.stopping = False

    # -- events in, instructions out --------------------------------------------------------

    def handle(self, event: Event) -> list[Instruction]:
        """Take one event; return the instructions it decided, in order."""
        match event:
            case FromHead(message):
                self.from_head(message)
            case FromWorker(identity, message):
                self.on_worker(identity, message)
            case Dispatch():
                self.dispatch()
            case Tick(now):
                self.tick(now)
            case WorkerGone(pidfd):
                self.worker_died(pidfd)
            case WorkerStarted(worker, extra, actor):
                self.worker_started(worker, extra, actor)
            case _:
                raise TypeError(f"a node takes no {type(event).__name__}")
        return self.take()

    def tick(self, now: float) -> None:
        """Once per turn of the loop: what waits for room, then (every WATCH_SECONDS) workers
        stopped, over their memory or parked too long."""
        if self.alloc_waiting or self.pin_waiting or self.room_waiting:
            self.retry_waiting()
        if now - self.watched >= WATCH_SECONDS:
            self.watched = now
            self.watch_memory()
            self.watch_stopped(now)
            self.retire_parked(now)
            self.actors.watch_leaving(now)

    def up(self, message: p.Message) -> None:
        self.emit(ToHead(message))

    def to_worker(self, identity: bytes, message: p.Message) -> None:
        self.emit(ToWorker(identity, message))

    @property
    def ready(self) -> bool:
        """All first workers have started (later ones, replacements or stand-ins, may lag)."""
        if not self.started:
            self.started = all(w.ready for w in self.workers.values())
        return self.started

    # -- from the head ---------------------------------------------------------------------

    def on_Assign(self, message: p.Assign) -> None:
        self.functions.update(message.functions)
        for spec in message.tasks:
            self.table.add(spec, self.has)
            if spec.method == "__init__":
                self.actors.create(spec)
            elif spec.actor and (error := self.actors.call_arrived(spec)):
                self.fail_task(spec.id, error)
        wanted = {oid for spec in message.tasks for oid in spec.deps + spec.nested
                  if not self.has(oid) and oid not in self.asked}
        if wanted:
            self.asked |= wanted
            self.up(p.Subscribe(tuple(sorted(wanted))))

    def has(self, object_id: str) -> bool:
        return object_id in self.values

    def on_Ready(self, message: p.Ready) -> None:
        for oid, value in message.values:
            self.asked.discard(oid)
            if isinstance(value, p.Stored) and value.node != self.id and oid not in self.values:
                if self.store.objects.get(oid) is not None:    # a replica we already hold
                    self.arrived(oid, p.Stored(self.id, value.nbytes, value.contains))
                elif self.table.wanted(oid) or self.actors.restart_reads(oid):
                    self.transfers.fetch(oid, value)      # (else its reader moved on)
            else:
                self.arrived(oid, value)

    def arrived(self, object_id: str, value: p.ObjectValue) -> None:
        """An input is usable here now (or failed for good): wake the tasks waiting for it."""
        if object_id in self.values:
            return
        self.values[object_id] = value
        self.actors.input_arrived()
        for task_id in self.table.object_ready(object_id, isinstance(value, p.Failed)):
            assert isinstance(value, p.Failed)
            self.fail_task(task_id, value.error)

    def pulled(self, object_id: str, value: p.ObjectValue,
               record: tuple[str, float, float] = ("", 0.0, 0.0)) -> None:
        """A transfer ended: a replica here (tell the head, with source and times), or not.

        A source that no longer has its copy (lost with its spill file) has told the head;
        the object is asked for again (it may be rebuilt, or copied from elsewhere), a few
        times at most.
        """
        if isinstance(value, p.Failed) and self.refetches[object_id] < MAX_REFETCHES \
                and _is_lost_copy(value.error):
            self.refetches[object_id] += 1
            self.asked.add(object_id)
            self.up(p.Subscribe((object_id,)))
            return
        self.refetches.pop(object_id, None)
        if isinstance(value, p.Stored):
            source, start, end = record
            self.up(p.ReplicaAdded(object_id, self.id, source, value.nbytes, start, end))
        self.arrived(object_id, value)

    def on_NodeTable(self, message: p.NodeTable) -> None:
        self.transfers.peers = {info.id: info for info in message.nodes}

    def on_NodeLost(self, message: p.NodeLost) -> None:
        """Pulls from a dead node restart: ask the head again where the objects are. The
        head naming this very node has declared it dead: it stops now."""
        if message.node == self.id:
            if not self.stopping:     # (one for each message it sent while stopped: say it once)
                log.warning("%s: %s; stopping", self.id, message.reason)
            self.stopping = True
            return
        again = self.transfers.lost(message.node)
        if again:
            self.up(p.Subscribe(tuple(again)))

    def on_Cancel(self, message: p.Cancel) -> None:
        """Drop cancelled tasks; a worker running one is killed (and replaced) with
        ``force``, else interrupted; either way the task is not retried."""
        for task_id in message.object_ids:
            state = self.table.tasks.get(task_id)
            running = [w for w in self.workers.values() if task_id in w.inflight]
            if state is not None and state.spec.actor and running:
                self.to_worker(running[0].identity, p.Cancel((task_id,)))   # it may stop
                continue             # a running actor call is not interrupted (as in Ray)
            if state is None:
                continue
            if not message.force:
                self.interrupt(task_id, running[0] if running else None, message.recursive)
                continue
            self.table.remove(task_id)
            self.actors.ended(state.spec)
            self.release(task_id)
            for worker in self.workers.values():
                if task_id in worker.inflight:
                    del worker.inflight[task_id]
                    worker.cancelled = True
                    worker.cancel_children = worker.cancel_children or message.recursive
                    self.emit(KillWorker(worker.identity))

    def interrupt(self, task_id: str, worker: WorkerHandle | None, recursive: bool) -> None:
        """plait.cancel without force (the head waits for the result): a task no worker
        has yet fails now; the worker running one is told, then signalled, and the task
        gets KeyboardInterrupt (its result, TaskCancelledError unless it returns a value,
        comes as any task's; were its worker to die, it is not retried)."""
        if worker is None:
            self.fail_task(task_id, pickle.dumps(TaskCancelledError(task_id)))
            return
        self.table.tasks[task_id].cancel_asked = True
        self.to_worker(worker.identity, p.Cancel((task_id,)))
        self.emit(InterruptWorker(worker.identity))
        if next(iter(worker.inflight)) != task_id:
            # Queued behind a task its worker runs (a fused chain's next link, waiting for
            # that task's result): it fails now, not once the task before it ends, and the
            # worker skips it (its late result is dropped). It has submitted nothing.
            self.fail_task(task_id, pickle.dumps(TaskCancelledError(task_id)))
        elif recursive:
            self.up(p.CancelSubmitted(worker.pid))

    def on_Revoke(self, message: p.Revoke) -> None:
        """Hand a task back unless a worker already has it (the head moves it elsewhere);
        an actor's creation, unless the actor has started."""
        state = self.table.tasks.get(message.task_id)
        if state is not None and state.spec.method == "__init__":
            self.up(p.Revoked(message.task_id, self.actors.give_back(state.spec.actor)))
            return
        busy = state is None or state.riding or any(
            message.task_id in w.inflight for w in self.workers.values())
        if not busy:
            self.table.remove(message.task_id)         # stale queue entries are skipped
        self.up(p.Revoked(message.task_id, not busy))

    def on_Heartbeat(self, message: p.Heartbeat) -> None:
        pass                                      # the head answering: it is alive

    def on_Delete(self, message: p.Delete) -> None:
        for oid in message.object_ids:
            self.values.pop(oid, None)
            self.client_pins.pop(oid, None)
            if oid in self.view_pins:       # a worker still reads it: its block goes after
                self.doomed.add(oid)
            else:
                self.store.delete(oid)

    def keep_views(self, worker: WorkerHandle, object_ids: tuple[str, ...]) -> None:
        """The worker keeps zero-copy views of these inputs past the task (an actor put
        them in its state): pinned here until it says they are gone, or it is. Without
        this, once no ref was left the block was reused under the actor's arrays."""
        for oid in object_ids:
            if oid not in self.store.objects:              # gone already: nothing to keep
                continue
            holders = self.view_pins.setdefault(oid, set())
            if worker.identity not in holders:
                holders.add(worker.identity)
                self.store.pin(oid)

    def views_gone(self, identity: bytes, object_ids: Iterable[str]) -> None:
        for oid in object_ids:
            holders = self.view_pins.get(oid)
            if holders is None or identity not in holders:
                continue
            holders.discard(identity)
            self.store.unpin(oid)
            if not holders:
                del self.view_pins[oid]
                if oid in self.doomed:
                    self.doomed.discard(oid)
                    self.store.delete(oid)

    def worker_ViewsGone(self, worker: WorkerHandle, message: p.ViewsGone) -> None:
        self.views_gone(worker.identity, message.object_ids)

    def on_Pin(self, message: p.Pin) -> None:
        if not self.try_pin(message, may_wait=True):
            self.pin_waiting.append(message)

    def try_pin(self, message: p.Pin, may_wait: bool) -> bool:
        """Pin a get's objects, all at once; False (to wait) while they do not fit beside
        what started tasks hold and running tasks may free room.

        With nothing left to wait for, each object is pinned if it can be; a spilled one
        the store has no room to bring back is read by the driver from its spill file
        (``OnDisk``), as Ray falls back to disk: so a get of more than the whole store
        pins what fits and reads the rest from disk, without waiting.
        """
        ids = list(message.object_ids)
        total = sum(self.store.nbytes(oid) for oid in dict.fromkeys(ids)
                    if oid in self.store.objects)
        fits = total <= self.store.allocator.capacity
        need = Need(self.store.hold_cost(ids), 0)
        if fits and may_wait and self.admission.verdict(need, self.may_free_room) == WAIT:
            return False
        self.keep_results_whole(ids)
        values = tuple((oid, self.pin_value(oid, high=True)) for oid in ids)
        full = any(map(_is_store_full, (v for _, v in values)))
        if full and fits and may_wait and self.room_may_come(views=False):
            for oid, value in values:       # restored beside what running tasks pin, a
                if isinstance(value, p.Located):   # spilled object found no block in
                    self.store.unpin(oid)          # one piece: wait for them, not fail
            return False
        if full:
            values = tuple((oid, self.on_disk(oid, value)) for oid, value in values)
        for oid, value in values:
            if isinstance(value, p.Located):
                self.client_pins[oid] += 1
        self.up(p.Pinned(message.request, values))
        return True

    def on_disk(self, object_id: str, value: p.ObjectValue) -> p.ObjectValue:
        """A pin refused for want of room, of an object spilled here: where its spill file
        is, for the reader to read it from there (else the refusal as it was)."""
        record = self.store.on_disk(object_id) if _is_store_full(value) else None
        if record is None:
            return value
        stored = self.values.get(object_id)
        contains = stored.contains if isinstance(stored, p.Stored) else ()
        return p.OnDisk(self.id, record.path, record.nbytes, record.crc, contains)

    def keep_results_whole(self, object_ids: list[str]) -> None:
        """A get's views pinned where they lie (a result just made, low in the store) could
        split the free bytes a running task's result is about to need: moved up first if
        so, as a task's inputs are (``ObjectStore.arrange``), to the largest promise."""
        largest = max(self.admission.promised.values(), default=0)
        if largest:
            self.store.arrange([oid for oid in object_ids if oid in self.store.objects],
                               largest)

    def pin_for_client(self, object_id: str) -> None:
        """A driver's pin taken by the head in this process (a put's, see Head.on_Seal):
        counted as a Pin's, undone by an Unpin."""
        self.store.pin(object_id)
        self.client_pins[object_id] += 1

    def on_Unpin(self, message: p.Unpin) -> None:
        for _, oid in message.pins:
            if self.client_pins[oid] > 0:
                self.client_pins[oid] -= 1
                if not self.client_pins[oid]:
                    del self.client_pins[oid]
                self.store.unpin(oid)

    def pin_holders(self, object_id: str) -> int:
        """Pins the object should have: its readers here, transfers serving it from memory
        (not from its file), drivers' views of it, and its writer while unsealed
        (validate_state compares)."""
        tasks = sum(oids.count(object_id) for oids in self.task_pins.values())
        serving = sum(s.object_id == object_id and s.pinned
                      for s in self.transfers.serving.values())
        stored = self.store.objects[object_id]
        views = len(self.view_pins.get(object_id, ()))
        return tasks + serving + self.client_pins[object_id] + views + (not stored.sealed)

    def on_MemoryRequest(self, message: p.MemoryRequest) -> None:
        self.up(p.MemoryReport(message.request, (self.store.summary(),)))

    def on_ResourcesRequest(self, message: p.ResourcesRequest) -> None:
        """CPUs are worker slots: those not running a task (a task blocked on its children
        lends its slot) nor held by a task's extra CPUs or an actor's; the rest is the
        ledger's, and the store's bytes."""
        busy = self.cpus_taken()
        capacity, used = self.store.allocator.capacity, self.store.allocator.used
        total = (("CPU", float(self.num_workers)), *self.ledger.amounts(self.ledger.total),
                 ("object_store_memory", float(capacity)))
        free = (("CPU", float(max(0, self.num_workers - busy))),
                *self.ledger.amounts(self.ledger.free),
                ("object_store_memory", float(capacity - used)))
        self.up(p.ResourcesReport(message.request, (p.NodeResources(self.id, total, free),)))
    def on_SnapshotRequest(self, message: p.SnapshotRequest) -> None:
        self.up(node_snapshot(self, message.request))

    def on_StateCheck(self, message: p.StateCheck) -> None:
        held = set(self.table.tasks) | {t for w in self.workers.values() for t in w.inflight}
        self.up(p.StateReport(message.request, tuple(node_problems(self)), tuple(sorted(held))))

    def on_KillActor(self, message: p.KillActor) -> None:
        self.actors.kill(message)

    def on_Bye(self, message: p.Bye) -> None:
        self.stopping = True

    def from_head(self, message: p.Message) -> None:
        handler = FROM_HEAD.get(type(message))
        if handler is None:
            raise p.MalformedMessage(f"a node takes no {type(message).__name__} from the head")
        handler(self, message)

    def pin_value(self, object_id: str, high: bool = False) -> p.ObjectValue:
        """Pin a stored object here and say where it is (Failed if it cannot be had);
        ``high`` for a driver's view (see ``ObjectStore.pin``)."""
        stored = self.store.objects.get(object_id)
        if stored is None:                  # deleted, evicted, or lost while arranged
            error = ObjectLostError(object_id, f"{self.id} holds no copy")
            if isinstance(self.values.get(object_id), p.Stored):   # readers here ask again
                self.copy_lost(object_id, error)
            return p.Failed(pickle.dumps(error))
        try:
            offset = self.store.pin(object_id, high)
        except (ObjectLostError, MemoryError) as error:
            if object_id not in self.store.objects:       # its spill file was lost
                self.copy_lost(object_id, error)
            return p.Failed(pickle.dumps(error))
        value = self.values.get(object_id)
        contains = value.contains if isinstance(value, p.Stored) else ()
        return p.Located(self.id, offset, stored.nbytes, contains)

    def replica_dropped(self, object_id: str) -> None:
        """The store evicted a replica to make room: tasks here that read it later ask the
        head again (another copy, or this one pulled back), and the head stops naming it."""
        value = self.values.get(object_id)
        if isinstance(value, p.Stored) and value.node == self.id:
            del self.values[object_id]
        self.up(p.ReplicaDropped(object_id, self.id))

    def copy_lost(self, object_id: str, error: Exception) -> None:
        """This node's copy is gone for good: forget it, and tell the head, which finds
        another copy or rebuilds the object from its lineage."""
        self.values.pop(object_id, None)
        self.up(p.CopyLost(object_id, pickle.dumps(error)))

    # -- from workers ----------------------------------------------------------------------

    def on_worker(self, identity: bytes, message: p.Message) -> None:
        worker = self.workers.get(identity.removesuffix(OUTPUT_SUFFIX))  # its output's too
        if worker is None:
            return                                   # a replaced worker's last words
        handler = FROM_WORKER.get(type(message))
        if handler is not None:                      # (any other message is ignored)
            handler(self, worker, message)

    def worker_Output(self, worker: WorkerHandle, message: p.Output) -> None:
        self.up(message)

    def worker_WorkerReady(self, worker: WorkerHandle, message: p.WorkerReady) -> None:
        worker.ready = True

    def worker_Alloc(self, worker: WorkerHandle, message: p.Alloc) -> None:
        if not self.try_alloc(worker, message, may_wait=True):
            self.alloc_waiting.append((worker.identity, message))

    def worker_TasksDone(self, worker: WorkerHandle, message: p.TasksDone) -> None:
        self.tasks_done(worker, message)
        self.retire_extras()

    def worker_Yielded(self, worker: WorkerHandle, message: p.Yielded) -> None:
        """A value a generator task yielded: sealed here, usable by tasks here at once, and
        announced to the head while the task runs on. One from a task no longer this
        worker's (cancelled, taken back) is not reported: its block goes."""
        oid = message.object_id
        state = self.table.tasks.get(message.task_id)
        if message.task_id not in worker.inflight or state is None:
            if isinstance(message.value, p.Located | p.OnDisk):
                self.store.delete(oid)
            return
        value = self.seal_output(oid, message.value)
        if isinstance(value, p.Stored):
            self.admission.learn(state.spec.function_name, value.nbytes)
        self.arrived(oid, value)
        self.up(p.Yielded(message.task_id, message.index, oid, value))

    def worker_Blocked(self, worker: WorkerHandle, message: p.Blocked) -> None:
        if worker.actor:
            self.to_worker(worker.identity, p.Skip(()))     # an actor's calls stay with it
            return
        worker.blocked = worker.blocks = True
        self.take_back(worker)
        self.lend_slot()

    def worker_HandBack(self, worker: WorkerHandle, message: p.HandBack) -> None:
        """The worker's running task runs long: every task sent after it (the worker
        starts none before this Skip) runs where a worker is free, as a new attempt. Those
        sent before it have ended (their results came first); if it is not listed (its own
        result came first, or a cancel took it), every task listed was sent after it."""
        sent = list(worker.inflight.items())
        after = len(sent) if worker.actor else next(
            (i + 1 for i, entry in enumerate(sent) if entry == message.running), 0)
        self.take_back(worker, after)

    def worker_Unblocked(self, worker: WorkerHandle, message: p.Unblocked) -> None:
        worker.blocked = False

    def worker_PutInline(self, worker: WorkerHandle, message: p.PutInline) -> None:
        self.put_by_task(worker, message.object_id, message.value, message.task_id)

    def worker_Seal(self, worker: WorkerHandle, message: p.Seal) -> None:
        self.store.seal(message.object_id, message.crc)
        value = p.Stored(self.id, self.store.nbytes(message.object_id), message.contains)
        task_id = self.put_by_task(worker, message.object_id, value, message.task_id)
        if task_id is not None and not message.crc:    # the task may read it until it ends
            self.store.pin(message.object_id)
            self.task_pins.setdefault(task_id, []).append(message.object_id)

    def take_back(self, worker: WorkerHandle, after: int = 1) -> None:
        """Tasks queued behind a task that now waits on its children may be those very
        children: run them elsewhere (a new attempt; the worker is told to skip them).
        Those sent after the first ``after`` of the worker's tasks are taken.

        Every Blocked gets exactly one Skip back, empty or not: the worker reads it before
        it goes on, so it never starts a task that was already given to another worker.
        """
        queued = list(worker.inflight.items())[after:]
        for task_id, attempt in queued:
            del worker.inflight[task_id]
            self.release(task_id)
            self.table.requeue(task_id, attempt)
        self.to_worker(worker.identity, p.Skip(tuple(queued)))

    def lend_slot(self) -> None:
        """Keep ``num_workers`` workers able to run tasks while some wait on their children."""
        if len(self.pool(_able)) < self.num_workers:
            self.add_worker()

    def add_worker(self) -> None:
        """One more worker able to run tasks: a parked stand-in woken, or one started."""
        parked = self.pool(lambda w: bool(w.parked_since) and not w.retiring)
        if parked:
            parked[0].parked_since = 0.0
            return
        self.start_worker(self.next_index(), extra=True)

    def retire_extras(self) -> None:
        """Park an idle stand-in once the blocked worker it replaced is back (recursive
        programs block again soon: a parked worker is woken faster than one is forked).
        None while tasks wait to start: one that asks for a share of a CPU may need it
        (dispatch starts no more tasks than the CPUs allow, stand-ins or not)."""
        if self.table.ready:
            return
        able = self.pool(_able)
        for worker in able:
            if len(able) <= self.num_workers:
                return
            if worker.extra and worker.ready and not worker.inflight:
                worker.parked_since = self.clock()
                able.remove(worker)

    def retire_parked(self, now: float) -> None:
        """Stop stand-ins parked for longer than PARK_SECONDS."""
        for worker in self.pool(lambda w: bool(w.parked_since) and not w.retiring):
            if now - worker.parked_since > PARK_SECONDS:
                worker.retiring = True
                self.to_worker(worker.identity, p.Bye())

    def cpus_taken(self) -> float:
        """The node's CPUs in use: each worker running tasks takes its ``cpus`` (a worker
        whose task waits on its children lends it), tasks with num_cpus > 1 their extra
        slots, actors that asked for CPUs theirs."""
        return sum(w.cpus for w in self.pool(_able) if w.inflight) + \
            sum(self.held_slots.values())

    def has_cpus(self, wanted: float) -> bool:
        """Whether ``wanted`` CPUs are free now."""
        return self.num_workers - self.cpus_taken() >= wanted - CPU_EPSILON

    def pool(self, keep: Callable[[WorkerHandle], bool]) -> list[WorkerHandle]:
        """The task workers (not actors' processes) for which ``keep`` holds."""
        return [w for w in self.workers.values() if not w.actor and keep(w)]

    def put_by_task(self, worker: WorkerHandle, object_id: str, value: p.ObjectValue,
                    task_id: str = "") -> str | None:
        """A task put an object here: it exists now, also for tasks already waiting for it
        (a child the task submitted through its own session may have arrived first). The
        worker names the task (an actor's process may run several calls at once); else it
        is the worker's running one."""
        self.arrived(object_id, value)
        task_id = task_id if task_id in worker.inflight else next(iter(worker.inflight), None)
        self.up(p.Created(object_id, value, task_id or ""))
        return task_id

    def try_alloc(self, worker: WorkerHandle, message: p.Alloc, may_wait: bool) -> bool:
        """Allocate; False (to wait) while running tasks may free room.

        A store full of blocks pinned by running tasks is full only for a moment: the
        request waits until a task ends. With nothing to wait for (every running task is
        itself waiting for room, so waiting cannot deadlock), or for an object larger than
        the store, the block is a file of the spill directory (``disk_block``); without
        spilling it is refused. The block is taken from what admission promised the
        worker's task.
        """
        identity = worker.identity
        held = self.store.objects.get(message.object_id)
        if held is not None and held.sealed:            # a re-run yielded it again
            self.to_worker(identity, p.Allocated(message.request, message.object_id, self.id,
                                                 -1, held=True))
            return True
        if held is not None:                            # left by an attempt that crashed
            self.store.delete(message.object_id)
        try:
            offset = self.store.allocate(message.object_id, message.nbytes, message.created_by)
        except MemoryError as error:
            too_large = isinstance(error, ObjectTooLargeError)
            if not too_large and may_wait and self.may_free_room(identity):
                return False
            reply = self.disk_block(message)
            if reply is None:
                if not too_large:
                    self.note_room_refused(worker, message.object_id)
                reply = p.Refused(message.request, pickle.dumps(error))
            self.to_worker(identity, reply)
        else:
            task_id = next(iter(worker.inflight), None)
            if task_id is not None:
                self.admission.allocated(task_id, message.nbytes)
            self.to_worker(identity, p.Allocated(message.request, message.object_id, self.id,
                                                 offset))
        return True

    def put_block(self, message: p.Alloc, may_wait: bool) -> p.Message | None:
        """A driver's put into this store: Allocated or Refused, or None to wait while it
        does not fit beside what started tasks hold and running tasks may free room (as
        a get waits); with nothing to wait for, a file of the spill directory (a spare,
        asked ahead, is refused instead), or refused without spilling."""
        need = Need(Allocator.block_size(message.nbytes), 0)
        too_large = self.store.too_large(message.nbytes)       # it goes to disk
        if may_wait and not too_large and \
                self.admission.verdict(need, self.may_free_room) == WAIT:
            return None
        try:
            offset = self.store.allocate(message.object_id, message.nbytes, message.created_by)
        except MemoryError as error:
            if not too_large and may_wait and self.may_free_room():
                return None
            on_disk = None if message.spare else self.disk_block(message)
            return on_disk or p.Refused(message.request, pickle.dumps(error))
        return p.Allocated(message.request, message.object_id, self.id, offset)

    def disk_block(self, message: p.Alloc) -> p.Allocated | None:
        """Ray's fallback allocation: a block the store cannot give (an object larger than
        it, or no room and nothing to wait for) is a file of the spill directory, which its
        writer fills and readers map (None: this store does not spill)."""
        try:
            path = self.store.allocate_on_disk(message.object_id, message.nbytes,
                                               message.created_by)
        except MemoryError:
            return None
        return p.Allocated(message.request, message.object_id, self.id, -1, path=path)

    def note_room_refused(self, worker: WorkerHandle, object_id: str) -> None:
        """A result refused room: the task that makes it (in a fused chain, the one whose
        output it is, not the chain's first) runs again once it can, rather than failing
        (see ``tasks_done``), when other tasks here hold room (each waiting for the
        other's); when it rode behind its producer (a rider skipped admission, and its
        producer's inputs were still pinned; alone, it is admitted and arranged); or, a
        few times, when drivers' views pin blocks too (a get's view is usually let go
        soon; one kept for good must not make the task run for ever). An actor's call is
        not run again (its actor has moved on; plain queues cannot take it back): the
        refusal is its ObjectStoreFullError.

        Tasks queued behind it on its own worker count as others: their inputs were pinned
        when the batch was sent, and they cannot run, so cannot let go, before it ends (the
        memory-pressure soak's lost DAGs: 58-82 MiB pinned with one task running, the rest
        by the task queued behind it)."""
        task_id = next((t for t in worker.inflight if t in self.table.tasks and
                        object_id in self.table.tasks[t].spec.outputs),
                       next(iter(worker.inflight), None))
        state = self.table.tasks.get(task_id) if task_id is not None else None
        if state is None or state.spec.actor:      # an actor's call is never run twice
            return
        others = any(w.inflight for w in self.workers.values() if w is not worker) or \
            any(self.task_pins.get(t) for t in worker.inflight if t != task_id)
        views = bool(self.client_pins) and state.room_reruns < ROOM_RERUNS_FOR_VIEWS
        if state.riding or others or views:
            self.room_refused[task_id] = worker.inflight[task_id]

    def may_free_room(self, asking: bytes = b"") -> bool:
        """Whether something here will unpin without waiting on us: a task running that
        neither waits for its children nor for room, or a transfer in progress."""
        waiting = {identity for identity, _ in self.alloc_waiting} | {asking}
        if any(w.inflight and not w.blocked and w.identity not in waiting
               for w in self.workers.values()):
            return True
        return bool(self.transfers.pulls or self.transfers.serving)

    def room_may_come(self, views: bool = True) -> bool:
        """Whether pins here will go by themselves: a task running (one waiting for room
        gets it, or is refused and lets go), a transfer, or (``views``) a driver's views."""
        return self.may_free_room() or bool(self.alloc_waiting) or \
            (views and bool(self.client_pins))

    def retry_waiting(self) -> None:
        """Allocations and gets that waited for room: try them again (a task ended)."""
        waiting, self.alloc_waiting = self.alloc_waiting, []
        for identity, message in waiting:
            worker = self.workers.get(identity)
            if worker is not None and not self.try_alloc(worker, message, True):
                self.alloc_waiting.append((identity, message))
        tasks, self.room_waiting = self.room_waiting, []
        for task_id in tasks:                       # first in line again
            if task_id in self.table.tasks:
                self.table.ready.push_front(task_id)
        pins, self.pin_waiting = self.pin_waiting, []
        for pin in pins:
            if not self.try_pin(pin, may_wait=True):
                self.pin_waiting.append(pin)

    def tasks_done(self, worker: WorkerHandle, message: p.TasksDone) -> None:
        finished = []
        worker.blocks = False                      # its blocking task ended (results in order)
        for result in message.results:
            worker.inflight.pop(result.task_id, None)
            if result.kept:                        # before its inputs' pins go
                self.keep_views(worker, result.kept)
            if worker.actor and self.actors.constructed(result) and \
                    result.task_id not in self.table.tasks:
                self.unpin_inputs(result.task_id)
                continue                           # a restart's constructor: nothing to report
            if not worker.actor and self.runs_again_for_lost_input(result):
                continue
            if result.retryable and self.table.retry(result.task_id, result.attempt):
                self.release(result.task_id)
                if worker.actor:
                    self.actors.call_retried(self.table.tasks[result.task_id].spec)
                continue                           # runs again; its error is not reported
            if self.runs_again_for_room(result):
                continue
            follower = self.table.followers.get(result.task_id)   # (finish forgets it)
            done = self.table.finish(result.task_id, result.attempt)
            if done is None:
                self.drop_given(result)                 # a late duplicate: first result won
                continue
            outputs = tuple((oid, self.seal_output(oid, value)) for oid, value in result.outputs)
            self.drop_unwritten(outputs)
            self.learn(done.spec.function_name, outputs)
            self.release(result.task_id)
            if worker.actor:
                self.actors.ended(done.spec)
                if result.exited:
                    self.actors.exited(worker.actor)
            elif worker.spent and not worker.inflight:
                worker.spent = False              # its last call ran: it leaves
                self.to_worker(worker.identity, p.Bye())
            finished.append(p.TaskResult(result.task_id, result.attempt, outputs, result.seconds,
                                         result.worker, result.start, result.end))
            for oid, value in outputs:
                self.arrived(oid, value)
            self.pin_for_rider(worker, follower, outputs)
        if finished:
            self.up(p.TasksDone(tuple(finished)))

    def pin_for_rider(self, worker: WorkerHandle, follower: str | None,
                      outputs: tuple[tuple[str, p.ObjectValue], ...]) -> None:
        """A fused follower this worker already has reads its producer's results straight
        from the arena (they were Pending when it was sent, so nothing pinned them): pin
        them for it until it ends. Sealed and unpinned, they could be spilled and their
        room reused under it (the memory-pressure soak's inputs with the wrong CRC)."""
        state = self.table.tasks.get(follower) if follower is not None else None
        if state is None or not state.riding or follower not in worker.inflight:
            return
        reads = set(state.spec.deps) | set(state.spec.nested)
        for oid, value in outputs:
            if isinstance(value, p.Stored) and oid in reads:
                self.store.pin(oid)
                self.task_pins.setdefault(follower, []).append(oid)

    def runs_again_for_room(self, result: p.TaskResult) -> bool:
        """A task refused room for its result beside other tasks' pins is put back to wait
        for admission instead of failing; so is a fused follower that failed only because
        its producer was put back (it still waits for that producer's output)."""
        state = self.table.tasks.get(result.task_id)
        refused = self.room_refused.pop(result.task_id, None) == result.attempt
        if state is None:
            return False
        orphaned = state.riding and bool(state.waiting)
        if not (refused or orphaned) or not any(
                isinstance(v, p.Failed) for _, v in result.outputs):
            return False
        self.drop_given(result)                    # blocks it got before the refusal
        state.room_reruns += refused
        self.release(result.task_id)               # admission holds it until it fits
        self.table.requeue(result.task_id, result.attempt)
        return True

    def runs_again_for_lost_input(self, result: p.TaskResult) -> bool:
        """A task whose worker found an input's spill file gone or altered when it mapped it
        (the store had no room to bring the input back) waits for that input again, as one
        does whose input's file is found so at restore: the file goes, and the head finds
        another copy or rebuilds the object from its lineage (else fails it, and the task
        with it). Not an actor's call: its calls run in order, and it fails as it is."""
        state = self.table.tasks.get(result.task_id)
        lost = None if state is None else _lost_from_disk(result, state.spec.deps, self.store)
        if lost is None:
            return False
        self.drop_given(result)                    # blocks it got before it failed
        self.store.delete(lost.object_id)
        self.copy_lost(lost.object_id, lost)
        self.release(result.task_id)
        self.wait_again(result.task_id, [lost.object_id])
        self.table.requeue(result.task_id, result.attempt)
        return True

    def drop_given(self, result: p.TaskResult) -> None:
        """The blocks (or files) a result got that will not be used: it runs again, or
        another attempt's result came first."""
        for oid, value in result.outputs:
            if isinstance(value, p.Located | p.OnDisk):
                self.store.delete(oid)

    def learn(self, function: str, outputs: tuple[tuple[str, p.ObjectValue], ...]) -> None:
        """The size of a successful task's largest stored result (0: all inline)."""
        largest = 0
        for _, value in outputs:
            if isinstance(value, p.Stored):
                largest = max(largest, value.nbytes)
            elif isinstance(value, p.Failed):
                return
        self.admission.learn(function, largest)

    def drop_unwritten(self, outputs: tuple[tuple[str, p.ObjectValue], ...]) -> None:
        """A finished task's outputs that failed after their block (or file) was given: the
        worker is done with them, so they go (a disk that filled mid-write, a value that
        failed to serialise after its first output was stored)."""
        for oid, value in outputs:
            stored = self.store.objects.get(oid)
            if isinstance(value, p.Failed) and stored is not None and not stored.sealed:
                self.store.delete(oid)

    def seal_output(self, object_id: str, value: p.ObjectValue) -> p.ObjectValue:
        if not isinstance(value, p.Located | p.OnDisk):
            return value
        self.store.seal(object_id, value.crc if isinstance(value, p.OnDisk) else ())
        return p.Stored(self.id, value.nbytes, value.contains)

    def worker_died(self, pidfd: int) -> None:
        worker = next(w for w in self.workers.values() if w.pidfd == pidfd)
        del self.workers[worker.identity]
        how = worker.describe(self.id, self.processes.reap(worker))
        self.up(p.WorkerExited(worker.pid, worker.cancel_children))   # its session ends
        inflight = list(worker.inflight.items())
        for task_id, _ in inflight:
            self.release(task_id)
        self.views_gone(worker.identity, [oid for oid, holders in self.view_pins.items()
                                          if worker.identity in holders])
        if worker.actor:
            self.actors.process_died(worker, how)
            return
        if worker.oom:
            how = f"{self.id} worker {worker.index} (pid {worker.pid}) {worker.oom}"
        elif worker.stopped_since:
            how = (f"{self.id} worker {worker.index} (pid {worker.pid}) was stopped for "
                   f"{WORKER_STOP_SECONDS:.0f} s and killed")
        for task_id, attempt in list(inflight):    # an interrupted task is not retried
            state = self.table.tasks.get(task_id)
            if state is not None and state.cancel_asked:
                inflight.remove((task_id, attempt))
                self.fail_task(task_id, pickle.dumps(TaskCancelledError(task_id)))
        if worker.cancelled:                  # killed by plait.cancel: nothing else is to blame
            for task_id, attempt in inflight:
                self.table.requeue(task_id, attempt)
        elif inflight:
            (task_id, attempt), rest = inflight[0], inflight[1:]
            if not self.table.crashed(task_id, attempt, how):
                self.fail_crashed(task_id, OutOfMemoryError if worker.oom else WorkerCrashedError)
            for task_id, attempt in rest:
                self.table.requeue(task_id, attempt)
        if not self.stopping and not worker.retiring and not worker.parked_since:
            self.start_worker(worker.index, extra=worker.extra)

    def fail_crashed(self, task_id: str, kind: type = WorkerCrashedError) -> None:
        state = self.table.tasks.get(task_id)
        if state is not None:
            error = kind(state.spec.function_name, task_id, state.crashes)
            self.fail_task(task_id, pickle.dumps(error))

    def watch_stopped(self, now: float) -> None:
        """A busy worker stopped (SIGSTOP, a debugger) for WORKER_STOP_SECONDS is killed and
        its task retried elsewhere; if it is ever continued it is already gone, not trusted."""
        for worker in self.workers.values():
            if not worker.inflight or self.processes.state(worker) != "T":
                worker.stopped_since = 0.0
                continue
            worker.stopped_since = worker.stopped_since or now
            if now - worker.stopped_since >= WORKER_STOP_SECONDS:
                self.emit(KillWorker(worker.identity))

    def watch_memory(self) -> None:
        """Kill a busy worker over its memory limit, or the largest one when the machine is
        nearly out of memory, before the kernel's OOM killer picks a victim of its own (it
        might pick this node, and everything it holds). The task is retried as after a
        crash, and fails with OutOfMemoryError when out of retries."""
        busy = [w for w in self.workers.values() if w.inflight and not w.oom]
        if not busy:
            return
        sizes = {w.identity: self.processes.rss(w) for w in busy}
        over = [w for w in busy if self.worker_memory_limit and
                sizes[w.identity] > self.worker_memory_limit]
        if not over and self.processes.available_fraction() < SYSTEM_MEMORY_FLOOR:
            over = [max(busy, key=lambda w: sizes[w.identity])]
        for worker in over:
            worker.oom = (f"was killed by plait using {sizes[worker.identity] >> 20} MiB "
                          f"(limit {self.worker_memory_limit >> 20} MiB, or the machine ran low)")
            self.emit(KillWorker(worker.identity))

    def start_worker(self, index: int, extra: bool = False, actor: str = "") -> None:
        """Ask for a worker; it joins the pool when the loop says it started (WorkerStarted)."""
        config = WorkerConfig(index, self.id, self.worker_address, self.store.arena.name,
                              self.processes.pid, **self.worker_settings)
        self.starting.add(index)
        self.emit(StartWorker(config, extra, actor))

    def worker_started(self, worker: WorkerHandle, extra: bool, actor: str) -> None:
        self.starting.discard(worker.index)
        self.workers[worker.identity] = worker
        worker.extra = extra
        if actor:
            self.actors.process_started(actor, worker)

    def next_index(self) -> int:
        """The index of a worker added to the pool (a stand-in, an actor's process)."""
        return max([w.index for w in self.workers.values()] + list(self.starting),
                   default=-1) + 1

    # -- tasks -----------------------------------------------------------------------------

    def fail_task(self, task_id: str, error: bytes) -> None:
        """A task fails for good: its outputs are Failed, here and at the head."""
        state = self.table.fail(task_id)
        if state is None:
            return
        self.actors.creation_failed(state.spec, error)
        self.actors.ended(state.spec)
        self.release(task_id)
        outputs = tuple((oid, p.Failed(error)) for oid in state.spec.outputs)
        self.up(p.TasksDone((p.TaskResult(task_id, state.attempt, outputs, 0.0),)))
        for oid, value in outputs:
            self.arrived(oid, value)

    def release(self, task_id: str) -> None:
        """The task no longer runs here: its inputs' pins, extra slots and resources go."""
        self.held_slots.pop(task_id, None)
        if self.ledger.give_back(task_id):
            self.resources_freed()
        self.admission.ended(task_id)
        self.unpin_inputs(task_id)

    def unpin_inputs(self, task_id: str) -> None:
        """The task's inputs may spill again."""
        for oid in self.task_pins.pop(task_id, ()):
            self.store.unpin(oid)

    def dispatch(self) -> None:
        """Hand ready tasks to the least-busy workers, many per message when there are many.

        A task starts only when the store can hold its inputs and result (``next_ready``;
        see admission.py). A busy worker may get a second batch queued behind its first
        (hiding the round trip), except for a task that reads stored objects: those are
        pinned in memory from dispatch to the end of the task, so they only go to an idle
        worker; and nothing is queued behind a task that has blocked on its children (it
        may block again, and each block hands its queue back: see take_back).
        """
        if self.table.actor_ready:
            handed, self.table.actor_ready = self.table.actor_ready, []
            self.actors.ready(handed)
        if self.actors.wanted:
            self.actors.dispatch()
        sent_now: set[int] = set()           # workers given tasks in this pass
        while self.table.ready or self.admission.held:
            workers = self.pool(lambda w: w.ready and _able(w) and not w.blocks)
            if not workers:
                return
            task_id = self.next_ready()
            if task_id is None:
                return
            spec = self.table.tasks[task_id].spec
            if spec.resources and not self.ledger.fits(spec.resources):
                self.set_aside(task_id)         # others run meanwhile (resources_freed)
                if not self.ledger.offers(spec.resources):
                    self.fail_task(task_id, pickle.dumps(self.unoffered(spec)))
                continue
            if spec.slots != 1 or spec.resources or spec.max_calls or self.held_slots \
                    or any(w.cpus != 1 for w in workers if w.inflight):
                if not self.send_alone(workers, spec, task_id):
                    return
                continue
            if any(w.gpu and not w.inflight for w in workers) and all(
                    w.inflight for w in workers if not w.gpu):
                self.recycle([w for w in workers if w.gpu])   # a CPU worker in its place
            workers = [w for w in workers if not w.gpu]
            # not behind a lone task sent before: it may run long (a parent working, then
            # polling its children, whose child would wait behind it), where a batch's
            # tasks are the short ones of a stream; Ray queues nothing behind a task
            workers = [w for w in workers if len(w.inflight) != 1 or w.index in sent_now]
            if not workers:
                return
            batch = max(1, min(MAX_BATCH, len(self.table.ready) // (2 * len(workers))))
            worker = min(workers, key=lambda w: (len(w.inflight), w.index))
            if len(worker.inflight) >= 2 * batch or not (worker.inflight or self.has_cpus(1)):
                return                   # (an idle stand-in beyond the CPUs waits)
            if worker.inflight and self.reads_stored(task_id):
                return
            items: list[p.WorkItem] = []
            for _ in range(batch):
                if task_id is None or (items and self.alone(task_id)):
                    break
                items += self.start(task_id)
                task_id = self.next_ready(batching=True)
            if items:
                worker.cpus = 1.0
                self.send_items(worker, items)
                sent_now.add(worker.index)

    def next_ready(self, batching: bool = False) -> str | None:
        """The next task to start: the oldest held back for memory that fits now (a few
        are looked at), else the head of the queue if it fits. One that does not fit is
        held back, so later tasks that fit pass it; one that never can fails. None:
        nothing can start now. The task stays queued until ``start`` takes it.
        ``batching``: tasks started for the batch being built will free room too."""
        held = self.admission.held
        for task_id in list(itertools.islice(held, ADMIT_LOOKAHEAD)):
            verdict = self.admit(task_id, batching)
            if verdict == GO:
                return task_id
            if verdict != WAIT:
                del held[task_id]
                self.admission.view_waits.pop(task_id, None)
        ready = self.table.ready
        while ready:
            task_id = ready[0]
            verdict = self.admit(task_id, batching)
            if verdict == GO:
                return task_id
            ready.popleft()
            if verdict == WAIT:
                held[task_id] = None
        return None

    def admit(self, task_id: str, batching: bool = False) -> str:
        """GO or WAIT; "" for a task gone or riding (skipped)."""
        state = self.table.tasks.get(task_id)
        if state is None or state.riding:
            return ""
        need = self.need(state.spec)
        self.admitted = (task_id, need)           # start() takes it, nothing changed between
        return self.admission.verdict(
            need, lambda: batching or self.may_free_room(),
            lambda: bool(self.client_pins) and self.admission.waits_for_views(task_id,
                                                                              self.clock()))

    def need(self, spec: p.TaskSpec) -> Need:
        return self.admission.need(spec.deps + spec.nested, spec.function_name,
                                   len(spec.outputs))

    def start(self, task_id: str) -> list[p.WorkItem]:
        """Take an admitted task off its queue, promise its result room, and pin its inputs
        where they leave that room in one piece."""
        if task_id in self.admission.held:
            del self.admission.held[task_id]
        else:
            taken = self.table.ready.popleft()
            assert taken == task_id, (taken, task_id)
        spec = self.table.tasks[task_id].spec
        admitted, need = self.admitted
        if admitted != task_id:
            need = self.need(spec)
        self.admission.started(task_id, need)
        if need.result and spec.deps + spec.nested:
            self.store.arrange([oid for oid in spec.deps + spec.nested
                                if isinstance(self.values.get(oid), p.Stored)], need.result)
        chain = self.with_chain(task_id)
        items = []
        for index, member in enumerate(chain):
            item = self.work_item(member)
            if item is None:               # it waits again, or failed (work_item saw to
                self.stop_riding(chain[index + 1:])   # it): those behind it wait for its
                break                                 # results on their own
            items.append(item)
        return items

    def stop_riding(self, tasks: list[str]) -> None:
        """Tasks of a fused chain not sent after all: a task still marked riding is never
        started (it is taken to be with its producer's worker). One whose producer already
        ended (it failed as it was about to be sent: its input failed) waits for nothing
        now: it fails with that input, as a task waiting for it would have, or is queued.
        (Not the task work_item itself set waiting: queued again, the dispatch that just
        took it would take it again, for ever, the memory-pressure soak's hung node.)"""
        for task_id in tasks:
            state = self.table.tasks.get(task_id)
            if state is None:
                continue
            state.riding = False
            if state.waiting:
                continue
            failed = next((value for oid in state.spec.deps
                           if isinstance(value := self.values.get(oid), p.Failed)), None)
            if failed is not None:
                self.fail_task(task_id, failed.error)
            else:
                self.table.push(task_id, state.spec, front=True)

    def send_alone(self, workers: list[WorkerHandle], spec: p.TaskSpec, task_id: str) -> bool:
        """Dispatch ``task_id`` to an idle worker while the CPUs it asks for are free
        (False: wait).

        A task with num_cpus > 1 holds that many CPUs: it runs in one idle worker and
        keeps ``slots - 1`` CPUs from others until it ends. One with num_cpus below one takes
        that share of a CPU, so that several run at once per CPU (none, for 0): with the
        CPUs free but no worker idle, one more worker is added, as Ray starts one. While
        any such task runs (or an actor holds slots), tasks go one at a time to idle
        workers only. The task at the head of the queue waits for its CPUs rather than
        being overtaken forever. A task holding resources (GPU, ...) takes them here, and
        one with ``max_calls`` is counted against its worker (see spend).
        """
        if not self.has_cpus(spec.slots):
            return False
        idle = [w for w in workers if not w.inflight]
        if not idle:
            if not self.starting:
                self.add_worker()
            return False
        gpu = any(name == "GPU" for name, _ in spec.resources)
        kind = [w for w in idle if w.gpu == gpu or not w.functions]
        if not kind:
            self.recycle(idle)
            return False
        worker = min(kind, key=lambda w: w.index)
        self.ledger.take(task_id, spec.resources)
        items = self.start(task_id)
        if not items:
            self.ledger.give_back(task_id)
            return True
        worker.gpu, worker.cpus = gpu, min(1.0, spec.slots)
        self.send_items(worker, items)
        if spec.slots > 1:
            self.held_slots[task_id] = spec.slots - 1
        self.spend(worker, spec)
        return True

    def alone(self, task_id: str) -> bool:
        """Whether the task is sent to a worker of its own (not batched with others)."""
        state = self.table.tasks.get(task_id)
        return state is not None and bool(state.spec.slots != 1 or state.spec.resources
                                          or state.spec.max_calls)

    def unoffered(self, spec: p.TaskSpec) -> PlanError:
        """A task moved here (its node died) that asks for what this node has not."""
        return PlanError(f"task {spec.id} ({spec.function_name}) asks for "
                         f"{dict(spec.resources)}, which {self.id} does not offer; it was "
                         f"moved here when the node it was placed on was lost", spec.id)

    def set_aside(self, task_id: str) -> None:
        """Take a ready task whose resources are held by others off its queue, until some
        are given back (resources_freed), so tasks behind it run meanwhile."""
        if task_id in self.admission.held:
            del self.admission.held[task_id]
        else:
            taken = self.table.ready.popleft()
            assert taken == task_id, (taken, task_id)
        self.resource_waiting.append(task_id)

    def resources_freed(self) -> None:
        """Resources were given back: the tasks set aside for them queue again, first,
        in their order, and actors waiting for theirs may start."""
        waiting, self.resource_waiting = self.resource_waiting, []
        for task_id in reversed(waiting):
            if task_id in self.table.tasks:
                self.table.ready.push_front(task_id)
        self.actors.resources_freed()

    def spend(self, worker: WorkerHandle, spec: p.TaskSpec) -> None:
        """Count a call of a ``max_calls`` function against its worker: at the limit the
        worker takes nothing more, leaves once its tasks are done (tasks_done), and a
        fresh worker takes its place now (Ray's way to let a process's leaks go)."""
        if not spec.max_calls:
            return
        worker.calls[spec.function_id] += 1
        if worker.calls[spec.function_id] >= spec.max_calls:
            worker.spent = worker.retiring = True
            self.start_worker(self.next_index(), extra=worker.extra)

    def recycle(self, workers: list[WorkerHandle]) -> None:
        """No idle worker may run the next task: GPU tasks and others never share a
        process (one that has set CUDA_VISIBLE_DEVICES, or loaded a GPU library, is not
        reused for the other kind, as in Ray). An idle one of ``workers`` (of the other
        kind) leaves and a fresh one is started, one at a time; the task waits for it."""
        spare = [w for w in workers if not w.inflight]
        if spare and not self.starting:
            worker = max(spare, key=lambda w: w.index)
            worker.retiring = True
            self.to_worker(worker.identity, p.Bye())
            self.start_worker(self.next_index(), extra=worker.extra)

    def with_chain(self, task_id: str) -> list[str]:
        state = self.table.tasks.get(task_id)
        if state is None or state.riding:
            return []
        return [task_id, *self.table.chain_after(task_id)]

    def reads_stored(self, task_id: str) -> bool:
        state = self.table.tasks.get(task_id)
        return state is not None and any(
            isinstance(self.values.get(oid), p.Stored) for oid in state.spec.deps)

    def work_item(self, task_id: str) -> p.WorkItem | None:
        state = self.table.tasks.get(task_id)
        if state is None:
            return None
        spec = state.spec
        held, gpu_ids = self.ledger.assigned(f"actor {spec.actor}" if spec.method == "__init__"
                                             else task_id)
        values = {oid: self.usable(oid, state.riding) for oid in dict.fromkeys(spec.deps)}
        nested = [oid for oid in dict.fromkeys(spec.nested) if oid in self.values]
        values.update((oid, self.usable(oid)) for oid in nested if oid not in values)
        self.task_pins[task_id] = [oid for oid, v in values.items() if isinstance(v, p.Located)]
        gone = [oid for oid in spec.deps if oid not in self.values and not state.riding]
        if gone:                  # a spill file was lost: wait for the head to rebuild it
            self.release(task_id)
            self.wait_again(task_id, gone)
            return None
        if any(map(_is_store_full, values.values())):
            if self.room_may_come(views=False):
                self.release(task_id)     # an input could not be restored in one piece
                self.room_waiting.append(task_id)   # beside what other tasks pin: it waits
                state.riding = False                # for room on its own, then tries again
                return None
            # else read from their spill files (admission waited for drivers' views already)
            values = {oid: self.on_disk(oid, value) for oid, value in values.items()}
        lost = [values[oid] for oid in spec.deps if isinstance(values[oid], p.Failed)]
        if lost:                  # deleted after it arrived
            self.fail_task(task_id, lost[0].error)
            return None
        return p.WorkItem(task_id, state.attempt, spec.function_id, spec.function_name,
                          spec.payload, tuple(values[oid] for oid in spec.deps),
                          tuple((oid, values[oid]) for oid in nested), spec.outputs,
                          spec.retry_exceptions, spec.method, spec.slots, spec.generator,
                          spec.concurrency, held, gpu_ids, spec.actor_name, spec.env_vars,
                          spec.deps, restarts=_restarts(spec))

    def restart_item(self, spec: p.TaskSpec, attempt: int) -> p.WorkItem | None:
        """An actor's constructor again, in its restarted process, on the inputs it was
        created with, pinned while it runs. None while some are not here: they are asked
        of the head (which holds them while the actor lives), and the actor looks again."""
        reads = list(dict.fromkeys(spec.deps + spec.nested))
        missing = [oid for oid in reads if oid not in self.values]
        if missing:
            wanted = [oid for oid in missing if oid not in self.asked]
            if wanted:
                self.asked.update(wanted)
                self.up(p.Subscribe(tuple(wanted)))
            return None
        values = {oid: self.on_disk(oid, self.usable(oid)) for oid in reads}
        self.task_pins[spec.id] = [oid for oid, v in values.items() if isinstance(v, p.Located)]
        held, gpu_ids = self.ledger.assigned(f"actor {spec.actor}")
        return p.WorkItem(spec.id, attempt, spec.function_id, spec.function_name, spec.payload,
                          tuple(values[oid] for oid in spec.deps),
                          tuple((oid, values[oid]) for oid in dict.fromkeys(spec.nested)),
                          spec.outputs, method="__init__", slots=spec.slots,
                          concurrency=spec.concurrency, resources=held, gpu_ids=gpu_ids,
                          actor_name=spec.actor_name, env_vars=spec.env_vars,
                          dep_ids=spec.deps, restarts=_restarts(spec))

    def wait_again(self, task_id: str, object_ids: list[str]) -> None:
        """Put a task back to waiting for inputs whose copy here was lost, and ask the head
        for them again (it answers once they are rebuilt, or failed for good)."""
        self.table.wait_for(task_id, object_ids)
        wanted = [oid for oid in object_ids if oid not in self.asked]
        self.asked.update(wanted)
        if wanted:
            self.up(p.Subscribe(tuple(wanted)))

    def usable(self, object_id: str, riding: bool = False) -> p.ObjectValue:
        value = self.values.get(object_id)
        if isinstance(value, p.Stored):
            return self.pin_value(object_id)
        if value is None and riding:
            return p.Pending(object_id)         # made earlier in the same message
        if value is None:
            error = ObjectLostError(object_id, f"{self.id} no longer holds it")
            return p.Failed(pickle.dumps(error))
        return value

    def send_items(self, worker: WorkerHandle, items: list[p.WorkItem]) -> None:
        new = {item.function_id for item in items if item.function_id} - worker.functions
        worker.functions |= new
        for item in items:
            worker.inflight[item.task_id] = item.attempt
        functions = tuple((fid, self.functions[fid]) for fid in sorted(new))
        self.to_worker(worker.identity, p.RunTasks(functions, tuple(items)))

    # -- shutdown --------------------------------------------------------------------------

    def stop_workers(self) -> None:
        """Say Bye to every worker (the loop then waits WORKER_STOP_GRACE for them to go)."""
        for worker in self.workers.values():
            self.to_worker(worker.identity, p.Bye())


FROM_HEAD = handlers(Node, "on_")        # Assign -> Node.on_Assign, ... (wire/dispatch.py)
FROM_WORKER = handlers(Node, "worker_")  # TasksDone -> Node.worker_TasksDone, ...


def _cause(error: bytes) -> BaseException | None:
    """The exception a Failed value carries (None if it does not unpickle)."""
    try:
        return pickle.loads(error)
    except Exception:
        return None


def _lost_from_disk(result: p.TaskResult, inputs: tuple[str, ...], store: ObjectStore
                    ) -> ObjectLostError | None:
    """The error of a task that failed because an input's spill file here was gone or
    altered when its worker mapped it (None if it failed otherwise)."""
    for _, value in result.outputs:
        if isinstance(value, p.Failed):
            cause = _cause(value.error)
            if isinstance(cause, ObjectLostError) and not isinstance(cause, TaskError) and \
                    cause.object_id in inputs and store.on_disk(cause.object_id) is not None:
                return cause
            return None
    return None


def _is_lost_copy(error: bytes) -> bool:
    """Whether a failed pull means the source's copy is gone (not that the object is)."""
    cause = _cause(error)
    return isinstance(cause, ObjectLostError) and not isinstance(cause, ObjectFreedError)


def _is_store_full(value: p.ObjectValue) -> bool:
    """Whether a pin failed for want of room (not because the object is gone)."""
    return isinstance(value, p.Failed) and isinstance(_cause(value.error), ObjectStoreFullError)


def _able(worker: WorkerHandle) -> bool:
    """A task worker that may be given tasks: not waiting on its children, parked or leaving."""
    return not worker.blocked and not worker.retiring and not worker.parked_since


def _restarts(spec: p.TaskSpec) -> bool:
    """An actor's constructor whose actor starts again after a crash (``max_restarts``)."""
    return spec.method == "__init__" and spec.max_retries != 0
