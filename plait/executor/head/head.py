"""Head: the cluster's directory and switchboard (it runs inside node-0's process).

It knows every node (joined with NodeHello, alive while heartbeats come), every object
(the Directory, plus which nodes hold a copy), and every task still running somewhere. It
runs no task (nodes do) and keeps the compiler's placement; it routes: a plan's stages to
their nodes, objects' values to whoever subscribed, pins to the node that holds a copy,
deletes to every holder when an object's last holder is gone. It places a task itself in
two cases only: its node is gone (``least_loaded`` of the live ones), or a result came out
much bigger than the compiler guessed and a reader waiting on it moves next to it
(``revisit``).

When a node dies, its unfinished tasks are retried on the other nodes (``max_retries``),
and objects whose only copy it held are rebuilt from lineage or marked lost.

It is a state machine: ``handle`` takes an event and returns the instructions it decided
(wire/instructions.py); node-0's loop carries them out.
"""

from __future__ import annotations

import itertools
import os
import pickle
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from plait.compiler.view import ClusterView, NodeView, ObjectInfo, offers
from plait.errors import (ClusterError, ObjectLostError, ReconstructionFailedError,
                          TaskCancelledError, WorkerCrashedError)
from plait.executor.head.actors import ActorRecord, ActorRouting
from plait.executor.head.assignments import Assignments, NodeLoads
from plait.executor.head.census import Census, build_snapshot
from plait.executor.head.directory import Directory
from plait.executor.head.invariants import head_problems
from plait.executor.head.lineage import Lineage, reads
from plait.executor.head.locations import Locations
from plait.executor.wire import protocol as p
from plait.executor.wire.config import NODE_TIMEOUT_SECONDS
from plait.executor.wire.dispatch import handlers
from plait.executor.wire.events import EventRing
from plait.executor.wire.instructions import (ClientGone, Event, Flush, FromClient, FromNode,
                                              Instruction, NodeGone, Outbox, Peer, Tick,
                                              ToClient, ToNode, Unlink)
from plait.store.spill import spill_directory
from plait.store.store import ObjectStore

REVISIT_BYTES = 1 << 20          # results this big make their waiting readers reconsider
CHECK_NODES_SECONDS = 0.25       # how often silent nodes are looked for (timeout: 4 s)
STALL_SECONDS = 1.0              # a loop turn longer than this (it polls every 0.1 s) is a stall

NODE = "node"


class LocalNode(Protocol):
    """The node in the head's own process (node-0): what the head reads and writes of it in
    process. A driver's put lands in node-0's store (``put_block``, ``store``, ``values``),
    which keeps its block pinned for the driver (``pin_for_client``);
    messages for node-0 go out as ToNode instructions like any node's."""

    id: str
    store: ObjectStore
    values: dict[str, p.ObjectValue]
    functions: dict[str, bytes]

    @property
    def ready(self) -> bool: ...

    def put_block(self, message: p.Alloc, may_wait: bool) -> p.Message | None: ...

    def pin_for_client(self, object_id: str) -> None: ...

    def on_Delete(self, message: p.Delete) -> None: ...


@dataclass
class NodeRecord:
    info: p.NodeInfo
    last_seen: float
    store_free: int
    functions: set[str] = field(default_factory=set)
    queued: int = 0


@dataclass
class Stream:
    """A generator task's values as the head has seen them while the task runs (retries
    included): who they are handed to (the caller of a "streaming" task; None for a
    "dynamic" one, whose values its list holds, or when the caller is gone) and how many
    came, so that a re-run's values, yielded again from the first, are not new ones."""

    kind: str                       # "streaming" or "dynamic"
    caller: Peer | None
    seen: int = 0


@dataclass
class Gather:
    """A client request answered once every node it was split over has answered."""

    kind: type                      # Pinned, MemoryReport or StateReport: the answer
    peer: Peer
    request: int
    waiting: set[str]
    parts: dict[str, tuple] = field(default_factory=dict)
    asked: dict[str, tuple[str, ...]] = field(default_factory=dict)   # node -> objects pinned
    # there, or (a StateCheck) the tasks assigned there when the check was sent
    origin: p.Pin | None = None      # the client's request, to ask again if a node dies
    since: int = 0                   # a SnapshotRequest's: notices from this position on


class Head(ActorRouting, Outbox):
    """Directory and routing for the whole cluster: a state machine, events in (``handle``),
    instructions out; its process's loop carries them out (wire/instructions.py)."""

    def __init__(self, session: str, local: LocalNode, local_info: p.NodeInfo,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        Outbox.__init__(self)
        self.session = session
        self.local = local
        self.clock = clock                        # when nodes were last heard (tests: fake)
        self.nodes: dict[str, NodeRecord] = {
            local_info.id: NodeRecord(local_info, clock(), local_info.store_capacity)}
        self.directory = Directory(self.reclaim, self.unhandled)
        self.locations = Locations()              # stored object -> nodes with a copy
        self.cached: dict[str, set[str]] = {}     # object -> nodes keeping its small value
        self.assigned = Assignments(self.count_changed)     # unfinished task -> its spec
        self.loads = NodeLoads(self.assigned.count)   # where a task goes when its node is gone
        self.rank: dict[str, int] = {}            # node -> its place in self.nodes
        self.by_process: dict[tuple[str, int], dict[str, None]] = defaultdict(dict)
        self.node_failures: dict[str, list[str]] = defaultdict(list)
        self.task_puts: dict[str, list[str]] = defaultdict(list)
        self.readers_of: dict[str, set[str]] = defaultdict(set)   # object -> assigned readers
        self.lineage = Lineage()                  # task result -> the task that made it
        self.waiting_pins: dict[str, list[tuple[Peer, p.Pin]]] = defaultdict(list)
        self.client_holds: dict[Peer, Counter[str]] = defaultdict(Counter)
        self.client_pins: dict[Peer, Counter[tuple[str, str]]] = defaultdict(Counter)
        self.moving: dict[str, str] = {}          # task being revoked -> where it will go
        self.put_waiting: list[tuple[Peer, p.Alloc]] = []   # drivers' puts waiting for room
        self.unsealed: defaultdict[Peer, set[str]] = defaultdict(set)  # put blocks not sealed
        self.expected_puts: dict[str, Peer] = {}  # a task's put announced -> its session
        self.sessions: dict[tuple[str, int], Peer] = {}   # (host, pid) -> its session
        self.submitted_by: dict[str, tuple[str, int]] = {}   # unfinished task -> its submitter
        self.interrupting: set[str] = set()    # tasks a cancel without force is interrupting
        self.frees_after: dict[str, list[tuple[Peer, p.Free]]] = defaultdict(list)  # see Free
        self.process_of: dict[Peer, tuple[str, int]] = {}  # and back
        self.output_peers: dict[Peer, None] = {}     # drivers showing workers' output
        self.hellos: list[tuple[Peer, int]] = []
        self.welcomed = itertools.count(1)   # Welcome.client: one number per Hello answered
        self.gathers: dict[int, Gather] = {}
        self.requests = itertools.count(1)
        self.notes: dict[Peer, list[tuple[str, p.ObjectValue]]] = defaultdict(list)
        self.unhandled_errors: dict[Peer, list[tuple[str, bytes]]] = defaultdict(list)
        self.deletes: dict[str, list[str]] = defaultdict(list)
        self.events = EventRing()                 # for plait.trace, newest last
        self.durations: dict[str, float] = {}     # function -> learned seconds per task
        self.result_sizes: dict[str, int] = {}    # function -> learned bytes per result
        self.actors: dict[str, ActorRecord] = {}
        self.may_wait: dict[str, None] = {}       # actors that may wait for CPUs (actors.py)
        self.named: dict[str, tuple[str, bytes]] = {}   # actor name -> (actor, handle)
        self.aliases: dict[str, str] = {}   # a get_if_exists creation that lost its name's race
        #                                    -> the live actor of that name, which serves it
        self.streams: dict[str, Stream] = {}      # unfinished generator task -> its values
        self.awaited: dict[str, set[str]] = defaultdict(set)   # generator task -> its values
        # lost with their only copy, waiting for it to yield them again (else they fail)
        self.census = Census(wall)                # what a dashboard is shown (census.py)
        self.checked = 0.0                        # when silent nodes were last looked for
        self.last_tick: float | None = None       # the loop's last turn (see forgive_stall)
        self.behind = False                       # the loop left messages unread this turn
        self.table_changed = False                # the node table is to be broadcast
        self.nodes_changed()

    def nodes_changed(self) -> None:
        """A node joined or left: the order of nodes and the pool of task runners change."""
        self.rank = {node: i for i, node in enumerate(self.nodes)}
        self.loads.reset({n: r.info.workers for n, r in self.nodes.items() if r.info.workers > 0})

    def count_changed(self, node: str) -> None:
        """A node's unfinished tasks changed (Assignments calls this): its queue count."""
        record = self.nodes.get(node)
        if record is not None:
            record.queued = self.assigned.count(node)
            self.loads.changed(node)

    # -- events in, instructions out --------------------------------------------------------

    def handle(self, event: Event) -> list[Instruction]:
        """Take one event; return the instructions it decided, in order."""
        match event:
            case FromClient(peer, message):
                self.on_client(peer, message)
            case FromNode(node, message):
                self.on_node(node, message)
            case ClientGone(peer):
                self.client_gone(peer)
            case NodeGone(node, reason):
                self.node_lost(node, reason)
            case Tick(now):
                self.tick(now)
            case Flush():
                self.flush()
            case _:
                raise TypeError(f"the head takes no {type(event).__name__}")
        return self.take()

    def tick(self, now: float) -> None:
        """Once per turn of the loop: what waited (hellos, puts), silent nodes, the notes."""
        self.forgive_stall(now)
        if self.put_waiting:
            self.retry_puts()
        if self.hellos:
            self.answer_hellos()
        self.check_nodes(now)
        self.flush()

    @property
    def has_notes(self) -> bool:
        return bool(self.notes or self.deletes or self.table_changed or self.unhandled_errors)

    # -- sending ---------------------------------------------------------------------------

    def to_client(self, peer: Peer, message: p.Message) -> None:
        self.emit(ToClient(peer, message))

    def to_node(self, node: str, message: p.Message) -> None:
        """To a live node (the head's own included); a node that died meanwhile is skipped."""
        if node in self.nodes:
            self.emit(ToNode(node, message))

    def notify(self, peer: Peer, object_id: str, value: p.ObjectValue) -> None:
        self.notes[peer].append((object_id, value))

    def unhandled(self, owner: Peer, object_id: str, value: p.Failed) -> None:
        """A failed object of ``owner``'s went unasked and unread (the directory's call):
        the owner hears of its error, in the next flush, to log it."""
        self.unhandled_errors[owner].append((object_id, value.error))

    def flush(self) -> None:
        self.send_table()
        notes, self.notes = self.notes, defaultdict(list)
        for peer, values in notes.items():
            if _is_node(peer):
                if peer[1] in self.nodes:            # not a node that died meanwhile
                    self.to_node(peer[1], p.Ready(tuple(self.for_node(peer[1], values))))
                    for oid, _ in values:
                        self.cached_on(peer[1], oid)
            else:
                self.to_client(peer, p.Ready(tuple(values)))
        unhandled, self.unhandled_errors = self.unhandled_errors, defaultdict(list)
        for peer, errors in unhandled.items():
            self.to_client(peer, p.Unhandled(tuple(errors)))
        deletes, self.deletes = self.deletes, defaultdict(list)
        for node, oids in deletes.items():
            self.to_node(node, p.Delete(tuple(oids)))

    def for_node(self, node: str, values: list[tuple[str, p.ObjectValue]]):
        """Stored values name the best copy for ``node``: its own, or one on its host."""
        host = self.nodes[node].info.host
        for oid, value in values:
            if isinstance(value, p.Stored):
                holders = self.locations.get(oid, set())
                best = sorted(holders, key=lambda n: (n != node, self.host_of(n) != host, n))
                if best:
                    value = replace(value, node=best[0])
            yield oid, value

    def cached_on(self, node: str, object_id: str) -> None:
        """``node`` keeps the object's value (inline, failed, or where to pull it) in its
        table of inputs: it is told to forget it when the object goes (``reclaim``), at
        once if the object is already gone. Stored copies are tracked in ``locations``."""
        if object_id in self.directory.entries:
            self.cached.setdefault(object_id, set()).add(node)
        else:
            self.deletes[node].append(object_id)

    def host_of(self, node: str) -> str:
        record = self.nodes.get(node)
        return record.info.host if record else ""

    # -- clients -----------------------------------------------------------------------------

    def on_client(self, peer: Peer, message: p.Message) -> None:
        handler = FROM_CLIENT.get(type(message))
        if handler is None:
            raise p.MalformedMessage(f"a client may not send {type(message).__name__}")
        handler(self, peer, message)

    def on_Hello(self, peer: Peer, message: p.Hello) -> None:
        refusal = p.wire_mismatch("this client", message)
        if refusal is not None:
            self.to_client(peer, p.Refused(p.HELLO_REFUSED,
                                           pickle.dumps(ClusterError(refusal))))
            return
        if message.host and peer not in self.process_of:
            self.sessions[(message.host, message.pid)] = peer
            self.process_of[peer] = (message.host, message.pid)
        self.hellos.append((peer, message.nodes_expected))
        self.answer_hellos()

    def answer_hellos(self) -> None:
        if not self.local.ready:
            return
        waiting = []
        for peer, expected in self.hellos:
            if len(self.nodes) >= expected:
                self.to_client(peer, p.Welcome(self.session, self.node_infos(),
                                               next(self.welcomed)))
            else:
                waiting.append((peer, expected))
        self.hellos = waiting

    def node_infos(self) -> tuple[p.NodeInfo, ...]:
        return tuple(record.info for record in self.nodes.values())

    def on_PutInline(self, peer: Peer, message: p.PutInline) -> None:
        self.directory.expect(message.object_id)
        self.client_holds[peer][message.object_id] += 1
        self.object_done(message.object_id, message.value)

    def on_Alloc(self, peer: Peer, message: p.Alloc) -> None:
        """A driver's put: a block of the head's own store (the driver shares its host);
        it waits while tasks running there hold the room it needs (see Node.put_block), but
        a spare block, asked for ahead of the put that will use it, is refused instead.
        The block is the driver's until its Seal or Abandon, or until the driver is gone."""
        self.delete_local_now()
        reply = self.local.put_block(message, may_wait=not message.spare)
        if reply is None:
            self.put_waiting.append((peer, message))
            return
        if isinstance(reply, p.Allocated):
            self.unsealed[peer].add(message.object_id)
        self.to_client(peer, reply)

    def delete_local_now(self) -> None:
        """node-0's Deletes decided this turn go before a put's block is sought: a driver
        that drops refs and puts at once sends its Free and its Alloc in one turn, and the
        room they free must be there for it (a Delete at the turn's flush came too late:
        with spilling off, ObjectStoreFullError beside three dropped objects)."""
        object_ids = self.deletes.pop(self.local.id, None)
        if object_ids:
            self.local.on_Delete(p.Delete(tuple(object_ids)))

    def on_Abandon(self, peer: Peer, message: p.Abandon) -> None:
        blocks = self.unsealed.get(peer, set())
        if message.object_id in blocks:
            blocks.discard(message.object_id)
            self.drop_unsealed(message.object_id)

    def drop_unsealed(self, object_id: str) -> None:
        """A put block its driver will not write (a spare not used, or the driver gone)."""
        self.local.store.delete(object_id)
        if self.put_waiting:
            self.retry_puts()

    def retry_puts(self) -> None:
        waiting, self.put_waiting = self.put_waiting, []
        for peer, message in waiting:
            self.on_Alloc(peer, message)

    def on_Seal(self, peer: Peer, message: p.Seal) -> None:
        """A driver's put is written. The pin its block had while unsealed is not undone
        but handed to the driver, as if it had asked for it (Pin): its first get of the
        object reads it on that pin, with no round trip (driver/reading.py)."""
        store = self.local.store
        blocks = self.unsealed.get(peer)
        if blocks is not None:
            blocks.discard(message.object_id)
        if message.crc:                 # no room in the store: written to a file
            store.seal(message.object_id, message.crc)
        else:
            if message.nbytes:          # written into a spare block: its own size
                store.resize(message.object_id, message.nbytes, message.created_by)
            self.local.pin_for_client(message.object_id)
            self.client_pins[peer][(self.local.id, message.object_id)] += 1
            store.seal(message.object_id)
        value = p.Stored(self.local.id, store.nbytes(message.object_id), message.contains)
        self.local.values[message.object_id] = value
        self.directory.expect(message.object_id)
        self.client_holds[peer][message.object_id] += 1
        self.object_done(message.object_id, value)

    def on_ViewRequest(self, peer: Peer, message: p.ViewRequest) -> None:
        objects, missing = {}, []
        for oid in message.object_ids:
            entry = self.directory.entries.get(oid)
            if entry is None:
                missing.append((oid, pickle.dumps(self.directory.missing_error(oid))))
                continue
            nodes = tuple(sorted(self.locations.get(oid, ()), key=self.node_order))
            objects[oid] = ObjectInfo(oid, _size_of(entry.value), nodes)
        actors = {a: self.actors[a].node for a in message.actors if a in self.actors}
        self.to_client(peer, p.View(message.request, self.view(objects, actors), tuple(missing)))

    def view(self, objects: dict[str, ObjectInfo], actors: dict[str, str]) -> ClusterView:
        """What the compiler places against, with the worker slots each node's live actors
        hold for their lifetime (those that asked for CPUs): no task runs in them. An actor
        killed for good holds none here already: a new actor placed now waits on that node
        only until the killed one's process ends (``kill`` then a new actor at once, as Ray
        programs replace one, went to another node, full, and waited there for ever)."""
        held: Counter[str] = Counter()
        for record in self.actors.values():
            if not record.dead and not record.killed:
                held[record.node] += record.spec.slots
        nodes = tuple(NodeView(r.info.id, r.info.workers, r.store_free, r.queued,
                               r.info.store_capacity, r.info.resources, held[r.info.id])
                      for r in self.nodes.values())
        return ClusterView(nodes, objects, dict(self.durations), dict(self.result_sizes), actors)

    def node_order(self, node: str) -> int:
        return self.rank.get(node, len(self.nodes))

    def on_Submit(self, peer: Peer, message: p.Submit) -> None:
        if message.frees:
            self.on_Free(peer, p.Free(message.frees))
        self.submit(peer, message)
        if message.subscribe:
            self.on_Subscribe(peer, p.Subscribe(message.subscribe))

    def submit(self, peer: Peer, message: p.Submit) -> None:
        functions = dict(message.functions)
        self.local.functions.update(functions)
        process = self.process_of.get(peer)       # (host, pid) of the submitting process
        for spec in message.tasks:
            for oid in spec.outputs:
                self.directory.expect(oid, peer)
                self.client_holds[peer][oid] += 1
        per_node: dict[str, list[p.TaskSpec]] = defaultdict(list)
        self.census.planned(message.tasks, message.predicted_bytes)
        for spec in message.tasks:
            if spec.actor:
                spec = self.actor_task(spec)
                if spec is None:
                    continue
            elif spec.node not in self.nodes:       # it died after the driver compiled
                spec = replace(spec, node=self.least_loaded(spec.resources))
            if self.accept(spec):
                if spec.method == "__init__":
                    self.hold_arguments(spec)
                if not (spec.actor and self.hold_call(spec)):
                    per_node[spec.node].append(spec)
                if spec.generator:
                    caller = peer if spec.generator == "streaming" else None
                    self.streams[spec.id] = Stream(spec.generator, caller)
                if process is not None:
                    self.submitted_by[spec.id] = process
                    self.by_process[process][spec.id] = None
        for node, specs in per_node.items():
            self.assign(node, specs, functions)

    def accept(self, spec: p.TaskSpec) -> bool:
        """Count the task as a reader of its inputs; fail it at once if one is gone."""
        inputs = reads(spec)
        missing = [oid for oid in inputs if oid not in self.directory.entries]
        if missing:
            error = self.directory.missing_error(missing[0])   # never counted as a reader
            failed = tuple((oid, p.Failed(pickle.dumps(error))) for oid in spec.outputs)
            self.census.accepted(spec)
            self.census.finished(spec, failed, spec.node)
            self.record_results(spec, failed)
            return False
        for oid in inputs:
            self.directory.add_reader(oid)
        for oid in spec.deps:
            self.readers_of[oid].add(spec.id)
        self.assigned[spec.id] = spec
        self.census.accepted(spec)
        return True

    def assign(self, node: str, specs: list[p.TaskSpec], functions: dict[str, bytes]) -> None:
        record = self.nodes[node]
        new = {spec.function_id for spec in specs if spec.function_id} - record.functions
        record.functions |= new
        known = {**self.local.functions, **functions}
        shipped = tuple((fid, known[fid]) for fid in sorted(new))
        self.to_node(node, p.Assign(shipped, tuple(specs)))

    def on_Subscribe(self, peer: Peer, message: p.Subscribe) -> None:
        reads = _is_node(peer)                # (a node's is for a task that reads it)
        for oid in message.object_ids:
            value = self.directory.subscribe(oid, peer, reads)
            if value is not None:
                self.notify(peer, oid, value)
        if message.request:           # what is known goes now, ahead of the answer
            known = self.notes.pop(peer, None)
            if known:
                self.to_client(peer, p.Ready(tuple(known)))
            self.to_client(peer, p.Subscribed(message.request))

    def on_ShowOutput(self, peer: Peer, message: p.ShowOutput) -> None:
        self.output_peers[peer] = None

    def on_Handled(self, peer: Peer, message: p.Handled) -> None:
        for oid in message.object_ids:
            self.directory.handled(oid)

    def on_Pin(self, peer: Peer, message: p.Pin) -> None:
        """Pin each stored object on a node holding it; answer when all nodes have."""
        by_node: dict[str, list[str]] = defaultdict(list)
        direct: dict[str, p.ObjectValue] = {}
        known = {oid: self.directory.lookup(oid) for oid in message.object_ids}
        pending = next((oid for oid, value in known.items() if value is None), None)
        if pending is not None:
            self.waiting_pins[pending].append((peer, message))   # rebuilt after a loss
            return
        for oid in message.object_ids:             # once per id asked, repeats included
            value = known[oid]
            holders = sorted(self.locations.get(oid, ()), key=self.node_order)
            if isinstance(value, p.Stored) and holders:
                by_node[holders[0]].append(oid)
            else:
                direct[oid] = value
        gather = Gather(p.Pinned, peer, message.request, set(by_node),
                        {"": tuple(direct.items())}, origin=message)
        request = next(self.requests)
        self.gathers[request] = gather
        for node, oids in by_node.items():
            gather.asked[node] = tuple(oids)
            self.to_node(node, p.Pin(request, tuple(oids)))
        self.try_answer(request)

    def on_Unpin(self, peer: Peer, message: p.Unpin) -> None:
        by_node: dict[str, list[tuple[str, str]]] = defaultdict(list)
        pins = self.client_pins[peer]
        for node, oid in message.pins:
            pins[(node, oid)] -= 1
            if not pins[(node, oid)]:
                del pins[(node, oid)]
            by_node[node].append((node, oid))
        for node, pins in by_node.items():
            self.to_node(node, p.Unpin(tuple(pins)))

    def on_Expect(self, peer: Peer, message: p.Expect) -> None:
        for oid in message.object_ids:
            self.directory.expect(oid)      # pending until its node's Created arrives
            self.expected_puts[oid] = peer

    def on_Hold(self, peer: Peer, message: p.Hold) -> None:
        for oid in message.object_ids:
            if oid in self.directory.entries:
                self.client_holds[peer][oid] += 1
            self.directory.hold(oid)

    def on_Free(self, peer: Peer, message: p.Free) -> None:
        waiting = next((task for task in message.after if task in self.assigned), None)
        if waiting is not None:                   # a result that may hold them comes first
            self.frees_after[waiting].append((peer, message))
            return
        holds = self.client_holds[peer]
        by = f"a Free from {self.client_name(peer)}"
        for oid in message.object_ids:
            if message.forced:
                self.directory.force_free(oid)
            elif holds[oid] > 0:
                holds[oid] -= 1
                if not holds[oid]:
                    del holds[oid]                  # a long-lived driver's table stays small
                self.directory.release(oid, by)

    def client_name(self, peer: Peer) -> str:
        """A client as errors name it: its process when it said which, else its socket."""
        process = self.process_of.get(peer)
        if process is not None:
            return f"the client pid {process[1]} on {process[0]}"
        return f"the client {peer[1].hex() if isinstance(peer[1], bytes) else peer[1]}"

    def client_gone(self, peer: Peer) -> None:
        """A driver (or a worker's session) disconnected: what it held or pinned is let go,
        so a killed driver leaks nothing into a cluster that outlives it."""
        gone = f"{self.client_name(peer)}, gone"
        self.output_peers.pop(peer, None)
        process = self.process_of.pop(peer, None)
        if process is not None and self.sessions.get(process) == peer:
            del self.sessions[process]
        self.put_waiting = [(who, put) for who, put in self.put_waiting if who != peer]
        for oid in self.unsealed.pop(peer, ()):
            self.drop_unsealed(oid)               # killed between its Alloc and its Seal
        for stream in self.streams.values():
            if stream.caller == peer:
                stream.caller = None               # its later values are dropped
        for oid, count in self.client_holds.pop(peer, Counter()).items():
            for _ in range(count):
                self.directory.release(oid, gone)
        for oid in [oid for oid, by in self.expected_puts.items() if by == peer]:
            del self.expected_puts[oid]           # its task died before the put arrived
            error = ObjectLostError(oid, "the task that put it died before it was stored")
            self.object_done(oid, p.Failed(pickle.dumps(error)))
        unpins: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for (node, oid), count in self.client_pins.pop(peer, Counter()).items():
            unpins[node] += [(node, oid)] * max(count, 0)
        for node, pins in unpins.items():
            self.to_node(node, p.Unpin(tuple(pins)))

    def on_MemoryRequest(self, peer: Peer, message: p.MemoryRequest) -> None:
        self.gather(peer, message.request, p.MemoryRequest, p.MemoryReport)

    def on_ResourcesRequest(self, peer: Peer, message: p.ResourcesRequest) -> None:
        self.gather(peer, message.request, p.ResourcesRequest, p.ResourcesReport)

    def gather(self, peer: Peer, asked: int, kind: type, answer: type) -> None:
        """Ask every node the same question; answer the client once all have answered."""
        request = next(self.requests)
        self.gathers[request] = Gather(answer, peer, asked, set(self.nodes))
        for node in list(self.nodes):
            self.to_node(node, kind(request))
        self.try_answer(request)

    def on_StateCheck(self, peer: Peer, message: p.StateCheck) -> None:
        """validate_state across the cluster: the head's own check, then every node's."""
        request = next(self.requests)
        gather = Gather(p.StateReport, peer, message.request, set(self.nodes))
        gather.parts[""] = tuple(head_problems(self))
        self.gathers[request] = gather
        for node in list(self.nodes):
            gather.asked[node] = tuple(self.assigned.on(node))
            self.to_node(node, p.StateCheck(request))
        self.try_answer(request)

    def node_StateReport(self, node: str, message: p.StateReport) -> None:
        """A node's own problems, and tasks assigned to it before the check that it no
        longer holds and whose results have not come (messages each way keep their order,
        so nothing in flight is mistaken for lost)."""
        gather = self.gathers.get(message.request)
        held = set(message.tasks)
        lost = [] if gather is None else [
            t for t in gather.asked.get(node, ()) if t not in held
            and t in self.assigned and self.assigned[t].node == node]
        problems = message.problems + ((f"head: tasks assigned to {node} that it does not "
                                        f"hold ({len(lost)}): {', '.join(lost[:5])}",)
                                       if lost else ())
        self.gather_part(message.request, node, problems)

    def on_Cancel(self, peer: Peer, message: p.Cancel) -> None:
        producer = self.assigned.producer
        self.cancel_tasks([producer[oid] for oid in message.object_ids if oid in producer],
                          message.recursive, message.force)

    def cancel_tasks(self, task_ids: list[str], recursive: bool, force: bool = True) -> None:
        """With ``force``, or for an actor's call or a generator, fail the producing tasks
        now (their dependants fail with them) and stop them; else ask their nodes to
        interrupt them (``interrupting``): each result comes as a task's, TaskCancelledError
        unless the task caught the interrupt and returned."""
        for task_id in dict.fromkeys(task_ids):
            spec = self.assigned[task_id]
            if not (force or spec.actor or spec.generator):
                if task_id not in self.interrupting:
                    self.interrupting.add(task_id)
                    self.to_node(spec.node, p.Cancel((task_id,), recursive, force=False))
                continue
            del self.assigned[task_id]
            self.to_node(spec.node, p.Cancel((task_id,), recursive, force=True))
            error = p.Failed(pickle.dumps(TaskCancelledError(task_id)))
            self.finish(spec, tuple((oid, error) for oid in spec.outputs))

    def on_SnapshotRequest(self, peer: Peer, message: p.SnapshotRequest) -> None:
        """A dashboard's question: every node's NodeSnapshot first, then the answer."""
        request = next(self.requests)
        self.gathers[request] = Gather(p.Snapshot, peer, message.request, set(self.nodes),
                                       since=message.since)
        for node in list(self.nodes):
            self.to_node(node, p.SnapshotRequest(request))
        self.try_answer(request)

    def node_NodeSnapshot(self, node: str, message: p.NodeSnapshot) -> None:
        self.gather_part(message.request, node, (message,))

    def on_PlanRequest(self, peer: Peer, message: p.PlanRequest) -> None:
        self.to_client(peer, self.census.plan_report(message.request))

    def on_Heartbeat(self, peer: Peer, message: p.Heartbeat) -> None:
        self.to_client(peer, p.Heartbeat(self.local.id, 0))

    def on_Bye(self, peer: Peer, message: p.Bye) -> None:
        for node in list(self.nodes):
            self.to_node(node, p.Bye())

    def try_answer(self, request: int) -> None:
        gather = self.gathers.get(request)
        if gather is None or gather.waiting:
            return
        del self.gathers[request]
        parts = [item for part in gather.parts.values() for item in part]
        if gather.kind is p.Snapshot:
            now = self.clock()
            ages = tuple(now - record.last_seen for record in self.nodes.values())
            self.to_client(gather.peer, build_snapshot(
                self.census, gather.request, gather.since, self.session, self.node_infos(),
                ages, parts, self.assigned, self.locations, self.client_holds,
                self.process_of, self.actors))
            return
        if gather.kind in (p.MemoryReport, p.ResourcesReport):
            order = {node: i for i, node in enumerate(self.nodes)}
            parts.sort(key=lambda summary: order.get(summary.node, len(order)))
        elif gather.kind is p.Pinned:           # pins the client will have to undo
            for oid, value in parts:
                if isinstance(value, p.Located):
                    self.client_pins[gather.peer][(value.node, oid)] += 1
        self.to_client(gather.peer, gather.kind(gather.request, tuple(parts)))

    # -- nodes -------------------------------------------------------------------------------

    def on_node(self, node: str, message: p.Message) -> None:
        record = self.nodes.get(node)
        if record is not None:
            record.last_seen = self.clock()
        elif not isinstance(message, p.NodeHello):
            self.refuse_node(node)
            return
        handler = FROM_NODE.get(type(message))
        if handler is None:
            raise p.MalformedMessage(f"a node may not send {type(message).__name__}")
        handler(self, node, message)

    def refuse_node(self, node: str) -> None:
        """A node declared dead spoke again (it was stopped, or cut off): it is not trusted,
        and is told so, so that it stops at once instead of running on beside its
        replacements. Its tasks and objects were already given up on."""
        self.emit(ToNode(node, p.NodeLost(node, "the head declared it dead and does not take "
                                                "it back")))

    def node_Subscribe(self, node: str, message: p.Subscribe) -> None:
        self.on_Subscribe((NODE, node), message)

    def node_NodeHello(self, node: str, message: p.NodeHello) -> None:
        refusal = p.wire_mismatch(f"node {message.info.id}", message)
        if refusal is not None:        # told, it stops (as a node declared dead does)
            self.emit(ToNode(node, p.NodeLost(node, refusal)))
            return
        now = self.clock()
        self.nodes[message.info.id] = NodeRecord(message.info, now, message.info.store_capacity)
        self.nodes = dict(sorted(self.nodes.items(), key=lambda item: _node_key(item[1].info)))
        self.nodes_changed()
        self.to_node(message.info.id, p.NodeTable(self.node_infos()))   # its peers, at once
        self.broadcast_table()
        self.answer_hellos()
        self.rehome(message.info)

    def rehome(self, joined: p.NodeInfo) -> None:
        """A node that runs tasks joined: tasks waiting on a node without workers (where
        retries and rebuilds go while no node can run them, as Ray keeps such tasks
        pending) are asked back (Revoke) and sent to it, if it can hold them."""
        if joined.workers == 0:
            return
        self.move_waiting_actors()
        for idle in [n for n, r in self.nodes.items() if r.info.workers == 0]:
            for task_id in list(self.assigned.on(idle)):
                spec = self.assigned[task_id]
                if spec.actor or task_id in self.moving or spec.slots > joined.workers \
                        or not offers(joined.resources, spec.resources):
                    continue
                self.moving[task_id] = joined.id
                self.to_node(idle, p.Revoke(task_id))

    def send_table(self) -> None:
        if self.table_changed:
            self.table_changed = False
            table = p.NodeTable(self.node_infos())
            for node in self.nodes:
                self.to_node(node, table)

    def broadcast_table(self) -> None:
        """Every node learns the new table at the next flush: nodes that join in one turn
        of the loop cause one broadcast, not one each (1,000 joins: N^2 messages of N)."""
        self.table_changed = True

    def node_Heartbeat(self, node: str, message: p.Heartbeat) -> None:
        self.nodes[node].store_free = message.store_free
        self.to_node(node, p.Heartbeat(self.local.id, 0))     # the answer that keeps it on

    def node_TasksDone(self, node: str, message: p.TasksDone) -> None:
        for result in message.results:
            spec = self.assigned.pop(result.task_id, None)
            for oid, value in result.outputs:          # the node keeps what it reports
                if not isinstance(value, p.Stored):
                    self.cached_on(node, oid)
            if spec is None or spec.node != node:      # a retry elsewhere won already
                for oid, value in result.outputs:          # (or this is a duplicate)
                    if isinstance(value, p.Stored) and node not in self.locations.get(oid, ()):
                        self.deletes[node].append(oid)
                if spec is not None:
                    self.assigned[result.task_id] = spec
                continue
            ok = not any(isinstance(v, p.Failed) for _, v in result.outputs)
            self.learn(spec.function_name, result.seconds, result.outputs)
            self.events.record((0, spec.id, sys.intern(spec.function_name),  # a TaskEvent
                                sys.intern(node), result.worker, result.start, result.end,
                                ok))
            self.finish(spec, result.outputs)
            for oid, value in result.outputs:
                if isinstance(value, p.Stored) and value.nbytes >= REVISIT_BYTES:
                    self.revisit(oid, value)

    def finish(self, spec: p.TaskSpec, outputs: tuple[tuple[str, p.ObjectValue], ...]) -> None:
        """An accepted task is over: its results are known and it reads its inputs no more."""
        self.census.finished(spec, outputs, spec.node)
        process = self.submitted_by.pop(spec.id, None)
        if process is not None:
            mine = self.by_process[process]
            del mine[spec.id]
            if not mine:
                del self.by_process[process]
        self.interrupting.discard(spec.id)
        self.record_results(spec, outputs)
        for peer, free in self.frees_after.pop(spec.id, ()):
            if peer in self.client_holds:         # (a peer gone meanwhile let go of all)
                self.on_Free(peer, free)          # it waited for these results
        if spec.generator:
            self.streams.pop(spec.id, None)
            self.fail_awaited(spec, outputs[0][1] if outputs else None)
        for oid in self.task_puts.pop(spec.id, ()):
            self.directory.release(oid, f"task {spec.id}, which put it, at its end")
        for oid in spec.deps:
            self.readers_of[oid].discard(spec.id)
            if not self.readers_of[oid]:
                del self.readers_of[oid]
        for oid in dict.fromkeys(spec.deps + spec.nested):
            self.directory.drop_reader(oid)

    def node_Yielded(self, node: str, message: p.Yielded) -> None:
        """A value a generator task yielded, stored on ``node``: a new one is an object of
        its own from now on (lineage: the task), held for the caller of a "streaming" task
        and handed to it at once, or held by a "dynamic" task until its list holds it. One
        seen before (a re-run yields from the first again) fills its object if that was
        lost, else is one more copy of it, or goes."""
        spec = self.assigned.get(message.task_id)
        stream = self.streams.get(message.task_id)
        ours = spec is not None and spec.node == node
        if ours and stream is not None and message.index >= stream.seen:
            assert spec is not None and message.index == stream.seen, (message, stream)
            stream.seen += 1
            self.first_yield(node, spec, stream, message)
        else:
            self.yielded_again(node, message)

    def first_yield(self, node: str, spec: p.TaskSpec, stream: Stream,
                    message: p.Yielded) -> None:
        oid, value = message.object_id, message.value
        if stream.kind == "streaming" and stream.caller is None:     # nobody will read it
            self.deletes[node].append(oid)
            return
        self.directory.expect(oid, stream.caller)   # its one holder: the caller, or the task
        #                                             (told if it is an error nobody got)
        if stream.caller is not None:
            self.client_holds[stream.caller][oid] += 1
        else:
            self.task_puts[spec.id].append(oid)
        if not isinstance(value, p.Stored):
            self.cached_on(node, oid)
        if not isinstance(value, p.Failed):
            self.lineage.record(oid, spec)
        self.object_done(oid, value)
        if stream.caller is not None:
            self.to_client(stream.caller, message)

    def yielded_again(self, node: str, message: p.Yielded) -> None:
        oid, value = message.object_id, message.value
        if oid not in self.directory.entries:    # taken and freed since: this copy goes
            self.deletes[node].append(oid)
            return
        if not isinstance(value, p.Stored):
            self.cached_on(node, oid)
        self.object_done(oid, value)
        awaited = self.awaited.get(message.task_id)
        if awaited is not None:
            awaited.discard(oid)

    def fail_awaited(self, spec: p.TaskSpec, end: p.ObjectValue | None) -> None:
        """Values of a generator task lost with their copy that its re-run did not yield
        again (it failed, or yielded fewer): they fail, with its error if it had one."""
        for oid in self.awaited.pop(spec.id, ()):
            entry = self.directory.entries.get(oid)
            if entry is None or entry.value is not None:
                continue
            error = end.error if isinstance(end, p.Failed) else pickle.dumps(ObjectLostError(
                oid, f"its copy was lost and the re-run of {spec.id} did not yield it again"))
            self.object_done(oid, p.Failed(error))

    def record_results(self, spec: p.TaskSpec,
                       outputs: tuple[tuple[str, p.ObjectValue], ...]) -> None:
        """Record a task's results (and, for those it made, the task as their lineage)."""
        self.node_failures.pop(spec.id, None)
        for oid, value in outputs:
            if not isinstance(value, p.Failed):
                self.lineage.record(oid, spec)
            self.object_done(oid, value)

    def revisit(self, object_id: str, value: p.Stored) -> None:
        """A result came out big: move its waiting readers to it rather than copy it.

        The compiler placed them with a guessed (small) size. Each reader that has not
        started, is not fused, and would find more of its input bytes on the producer's
        node is asked back from its node and reassigned there: the rest of the plan stands.
        """
        for task_id in sorted(self.readers_of.get(object_id, ())):
            spec = self.assigned.get(task_id)
            if (spec is None or spec.follows or spec.pinned or spec.actor
                    or task_id in self.moving or spec.node == value.node
                    or value.node not in self.nodes
                    or not offers(self.nodes[value.node].info.resources, spec.resources)):
                continue
            if self.bytes_on(spec, value.node) > self.bytes_on(spec, spec.node) + REVISIT_BYTES:
                self.moving[task_id] = value.node
                self.to_node(spec.node, p.Revoke(task_id))

    def bytes_on(self, spec: p.TaskSpec, node: str) -> int:
        """Bytes of the task's stored inputs that already have a copy on ``node``."""
        total = 0
        for oid in dict.fromkeys(spec.deps):
            entry = self.directory.entries.get(oid)
            if entry is not None and node in self.locations.get(oid, ()):
                total += _size_of(entry.value)
        return total

    def node_Revoked(self, node: str, message: p.Revoked) -> None:
        record = self.actors.get(message.task_id)
        if record is not None and record.moving:         # a waiting actor asked back
            self.actor_revoked(node, record, message.ok)
            return
        target = self.moving.pop(message.task_id, None)
        spec = self.assigned.get(message.task_id)
        if not message.ok or target is None or spec is None or target not in self.nodes:
            if message.ok and spec is not None:          # nowhere to go: give it back
                self.assign(node, [spec], {})
            return
        if spec.id in self.interrupting:         # cancelled while it was being taken back
            self.fail_assigned(spec, pickle.dumps(TaskCancelledError(spec.id)))
            return
        moved = replace(spec, node=target)
        self.assigned[spec.id] = moved
        self.assign(target, [moved], {})

    def node_Created(self, node: str, message: p.Created) -> None:
        self.directory.expect(message.object_id)
        self.expected_puts.pop(message.object_id, None)
        if message.task_id:
            self.task_puts[message.task_id].append(message.object_id)
        if not isinstance(message.value, p.Stored):
            self.cached_on(node, message.object_id)
        self.object_done(message.object_id, message.value)

    def learn(self, function_name: str, seconds: float,
              outputs: tuple[tuple[str, p.ObjectValue], ...]) -> None:
        """Running means of a function's task duration and result size, for the compiler."""
        self.durations[function_name] = _mean(self.durations.get(function_name), seconds)
        sizes = [_size_of(value) for _, value in outputs if not isinstance(value, p.Failed)]
        if sizes:
            self.result_sizes[function_name] = int(
                _mean(self.result_sizes.get(function_name), max(sizes)))

    def on_ObjectsRequest(self, peer: Peer, message: p.ObjectsRequest) -> None:
        self.to_client(peer, p.ObjectsReport(message.request, self.directory.rows()))

    def on_TraceRequest(self, peer: Peer, message: p.TraceRequest) -> None:
        events = self.events.since(message.since, message.newest)
        self.to_client(peer, p.TraceReport(message.request, events, self.events.end))

    def node_ReplicaAdded(self, node: str, message: p.ReplicaAdded) -> None:
        if message.source:
            self.census.moved(message.nbytes)
            self.events.record((1, message.object_id,                    # a TransferEvent
                                sys.intern(message.source), sys.intern(node),
                                message.nbytes, message.start, message.end))
        if message.object_id in self.directory.entries:
            self.locations.add(message.object_id, node)
        else:
            self.deletes[node].append(message.object_id)     # freed while it travelled

    def node_Output(self, node: str, message: p.Output) -> None:
        """A worker's printed lines, to every driver showing them (Ray sends a job's to its
        driver; plait's workers serve every driver, so each sees all)."""
        for peer in self.output_peers:
            self.to_client(peer, message)

    def node_ReplicaDropped(self, node: str, message: p.ReplicaDropped) -> None:
        self.locations.discard(message.object_id, node)

    def node_Pinned(self, node: str, message: p.Pinned) -> None:
        gather = self.gathers.get(message.request)
        if gather is not None and gather.origin is not None and any(
                isinstance(v, p.Failed) and node not in self.locations.get(oid, ())
                and not isinstance(self.directory.lookup(oid), p.Failed)
                for oid, v in message.values):   # a lost copy: rebuilt, or copied elsewhere
            gather.parts[node] = message.values
            self.pin_again(message.request, gather)
            return
        self.gather_part(message.request, node, message.values)

    def pin_again(self, request: int, gather: Gather) -> None:
        """Undo the pins a client request already took, and ask again from the start."""
        del self.gathers[request]
        for other, part in gather.parts.items():
            pins = tuple((other, oid) for oid, v in part if isinstance(v, p.Located))
            if pins:
                self.to_node(other, p.Unpin(pins))
        assert gather.origin is not None
        self.on_Pin(gather.peer, gather.origin)

    def node_MemoryReport(self, node: str, message: p.MemoryReport) -> None:
        self.gather_part(message.request, node, message.nodes)

    def node_ResourcesReport(self, node: str, message: p.ResourcesReport) -> None:
        self.gather_part(message.request, node, message.nodes)

    def gather_part(self, request: int, node: str, part: tuple) -> None:
        gather = self.gathers.get(request)
        if gather is not None and node in gather.waiting:
            gather.waiting.discard(node)
            gather.parts[node] = part
            self.try_answer(request)

    # -- objects -----------------------------------------------------------------------------

    def object_done(self, object_id: str, value: p.ObjectValue) -> None:
        entry = self.directory.entries.get(object_id)
        if entry is not None and entry.value is not None:
            self.duplicate_done(object_id, entry.value, value)
            return
        if isinstance(value, p.Stored) and entry is not None:
            self.locations.add(object_id, value.node)
        for peer in self.directory.set_value(object_id, value):
            self.notify(peer, object_id, value)
        for peer, pin in self.waiting_pins.pop(object_id, ()):
            self.on_Pin(peer, pin)                  # it was being rebuilt: answer now

    def duplicate_done(self, object_id: str, known: p.ObjectValue, value: p.ObjectValue) -> None:
        """A result made again (a re-run for one lost output of a task with several): the
        object already has its value, so a new stored copy is one more replica of it."""
        if not isinstance(value, p.Stored) or value.node not in self.nodes:
            return
        if isinstance(known, p.Stored):
            self.locations.add(object_id, value.node)
        else:
            self.deletes[value.node].append(object_id)

    def reclaim(self, object_id: str, value: p.ObjectValue) -> None:
        """The object's last holder and reader are gone: every copy goes. An actor's ready
        marker going means no handle or call is left: the actor stops (unless detached)."""
        self.lineage.forget(object_id, self.directory.entries.__contains__)
        self.let_alias_go(object_id)
        actor = self.actors.get(object_id)
        if actor is not None and not actor.spec.detached:
            if not actor.dead:
                self.to_node(actor.node, p.KillActor(object_id, True, "no handle to it is left",
                                                     graceful=True))
            self.release_arguments(actor)
            del self.actors[object_id]
            self.move_waiting_actors()
        holders = self.locations.pop(object_id) | self.cached.pop(object_id, set())
        if isinstance(value, p.Stored):
            holders.add(value.node)
        for node in holders:
            self.deletes[node].append(object_id)

    # -- failures ----------------------------------------------------------------------------

    def forgive_stall(self, now: float) -> None:
        """Time the head spent not listening (a turn busy with a 100k-task submit, or the
        whole process descheduled) is not the nodes' silence: their heartbeats wait unread
        meanwhile. Without this, a stall past the timeout declared every node dead at once
        (seen at 10 simulated nodes and 100k-task graphs, on a shared machine). ``behind``
        (set by the loop: its socket still held unread messages after this turn) counts
        the whole turn as a stall: a node's heartbeat may be among those unread."""
        if self.last_tick is not None:
            stall = now - self.last_tick - (0.0 if self.behind else STALL_SECONDS)
            if stall > 0:
                for record in self.nodes.values():
                    record.last_seen += stall
        self.last_tick = now

    def check_nodes(self, now: float) -> None:
        """Nodes silent past the timeout are lost; looked for a few times a second, not at
        every turn of a loop that may turn thousands of times a second at 1,000 nodes."""
        if now - self.checked < CHECK_NODES_SECONDS:
            return
        self.checked = now
        for node, record in list(self.nodes.items()):
            if node != self.local.id and now - record.last_seen > NODE_TIMEOUT_SECONDS:
                self.node_lost(node, f"no heartbeat for {NODE_TIMEOUT_SECONDS:.0f} s")

    def node_lost(self, node: str, reason: str) -> None:
        """Forget a node: retry its tasks elsewhere, mark objects only it held as lost."""
        record = self.nodes.pop(node, None)
        if record is None:
            return
        self.census.node_died(record.info, reason)
        self.nodes_changed()
        self.table_changed = True
        self.send_table()                     # before the NodeLost that follows, as it was
        for other in self.nodes:
            self.to_node(other, p.NodeLost(node, reason))
        self.lose_objects(node, reason)
        self.actors_lost(node, reason)
        self.retry_tasks_of(node, reason)
        for request, gather in list(self.gathers.items()):
            if node not in gather.waiting:
                continue
            if gather.origin is not None:            # pins: ask again, objects may be rebuilt
                self.pin_again(request, gather)
                continue
            self.gather_part(request, node, ())
        self.cleanup_segments(record.info)

    def lose_objects(self, node: str, reason: str) -> None:
        """Objects on a dead node: a replica survives, or the task that made it runs again
        (lineage), or, for a put, it is lost for good."""
        rebuild: dict[str, p.TaskSpec] = {}
        for oid in self.locations.on(node):
            spec = self.copy_gone(oid, node, f"its only copy was on {node}, which died "
                                             f"({reason})")
            if spec is not None:
                rebuild[spec.id] = spec
        for spec in rebuild.values():
            self.rebuild(spec, node, reason)

    def copy_gone(self, object_id: str, node: str, why: str) -> p.TaskSpec | None:
        """``node``'s copy is gone: point at a surviving copy, else return the task to run
        again (pending meanwhile: waiters wait), else fail the object (a put)."""
        self.locations.discard(object_id, node)
        holders = self.locations.get(object_id, set())
        entry = self.directory.entries.get(object_id)
        if entry is None or not isinstance(entry.value, p.Stored):
            return None
        if holders:
            entry.value = replace(entry.value, node=sorted(holders)[0])
            return None
        self.locations.pop(object_id)
        spec = self.lineage.producer(object_id)
        if spec is None:
            entry.value = p.Failed(pickle.dumps(ObjectLostError(object_id, why)))
            self.census.notice("lost", object_id, f"{object_id} is lost: {why}")
            return None
        entry.value = None
        if object_id not in spec.outputs:          # a value its generator yielded
            self.awaited[spec.id].add(object_id)
        return spec

    def node_WorkerExited(self, node: str, message: p.WorkerExited) -> None:
        """A worker ended: the session it opened, if any, is gone (on the head's own host
        its pid is watched too; then this finds nothing left to do). One killed by a
        recursive cancel takes the unfinished tasks its session submitted with it (not
        actors' creations or calls), and they theirs, as Ray's ``recursive=True``."""
        record = self.nodes.get(node)
        if record is None:
            return
        process = (record.info.host, message.pid)
        peer = self.sessions.get(process)
        if peer is not None:
            self.client_gone(peer)
        if message.cancelled:
            self.cancel_tasks(self.submitted_by_process(process), True)

    def node_CancelSubmitted(self, node: str, message: p.CancelSubmitted) -> None:
        """A worker's task was interrupted by a recursive cancel: so are the unfinished
        tasks its process submitted (not actors' creations or calls), and theirs in turn."""
        record = self.nodes.get(node)
        if record is not None:
            process = (record.info.host, message.pid)
            self.cancel_tasks(self.submitted_by_process(process), True, force=False)

    def submitted_by_process(self, process: tuple[str, int]) -> list[str]:
        """Its unfinished tasks, actors' aside (``by_process``: no scan of all tasks)."""
        return [task_id for task_id in self.by_process.get(process, ())
                if not self.assigned[task_id].actor]

    def node_CopyLost(self, node: str, message: p.CopyLost) -> None:
        """A node's copy was lost with its spill file: as for a dead node, for one object."""
        self.lost_from_disk(message.object_id, node, pickle.loads(message.error))

    def on_CorruptCopy(self, peer: Peer, message: p.CorruptCopy) -> None:
        """A driver found a node's spill file of the object altered, reading it in place:
        the node drops that copy (its file) before anything else it is sent, and the object
        is found elsewhere or made again, as if the node had found the file so itself. The
        driver asks for it again after this (one socket: in order)."""
        if message.node in self.nodes:
            self.to_node(message.node, p.Delete((message.object_id,)))
        self.lost_from_disk(message.object_id, message.node, pickle.loads(message.error))

    def lost_from_disk(self, object_id: str, node: str, error: Exception) -> None:
        """``node``'s copy went with its spill file: point at another copy, else run its
        task again (a put, with no task, is lost)."""
        reason = f"its copy on {node} was lost from disk ({error})"
        spec = self.copy_gone(object_id, node, reason)
        if spec is not None:
            self.rebuild(spec, node, reason)

    def rebuild(self, spec: p.TaskSpec, node: str, reason: str) -> None:
        """Run a finished task again because its result was lost (within max_retries);
        inputs of it that are gone by now are made again first, from their own lineage."""
        if spec.id in self.assigned:
            return                                 # already running again
        if 0 <= spec.max_retries < self.lineage.count_rerun(spec):
            error = ReconstructionFailedError(spec.outputs[0], f"{spec.id} was re-run "
                                              f"{spec.max_retries} time(s) already; {node} "
                                              f"died ({reason})")
            for oid in spec.outputs:
                if oid in self.directory.entries and self.directory.entries[oid].value is None:
                    self.object_done(oid, p.Failed(pickle.dumps(error)))
            self.fail_awaited(spec, p.Failed(pickle.dumps(error)))
            return
        self.revive_inputs(spec, node, reason)
        self.census.rebuilt(spec, f"its result was lost on {node} ({reason})")
        target = spec.node if spec.node in self.nodes else self.least_loaded(spec.resources)
        again = replace(spec, node=target, pinned=False)
        if self.accept(again):
            self.assign(target, [again], {})
        elif again.generator:                      # an input is gone: it cannot run again
            self.fail_awaited(again, self.directory.lookup(again.outputs[0]))

    def revive_inputs(self, spec: p.TaskSpec, node: str, reason: str) -> None:
        """Inputs of a task about to re-run that left the directory (their readers had all
        finished) come back as pending objects, and their producers re-run too. An input
        with no lineage (a put) or freed with plait.free stays gone: the task then fails."""
        for oid in reads(spec):
            producer = self.lineage.producer(oid)
            if oid in self.directory.entries or producer is None \
                    or oid in self.directory.tombstones:
                continue
            self.directory.revive(oid)
            self.rebuild(producer, node, reason)

    def retry_tasks_of(self, node: str, reason: str) -> None:
        """A dead node's tasks go to the least-loaded node; with none that runs tasks left,
        to the head's, where they wait for one to join (rehome)."""
        retried: dict[str, list[p.TaskSpec]] = defaultdict(list)
        for task_id in self.assigned.on(node):
            spec = self.assigned[task_id]
            if spec.actor:                                 # actors: see actors_lost
                continue
            self.moving.pop(task_id, None)           # a Revoke the dead node won't answer
            if task_id in self.interrupting:         # cancelled: not retried
                self.fail_assigned(spec, pickle.dumps(TaskCancelledError(task_id)))
                continue
            failures = self.node_failures[task_id]
            failures.append(f"{node} died ({reason})")
            if spec.max_retries >= 0 and len(failures) > spec.max_retries:
                del self.assigned[task_id]
                error = WorkerCrashedError(spec.function_name, task_id, list(failures))
                self.finish(spec, tuple((oid, p.Failed(pickle.dumps(error)))
                                        for oid in spec.outputs))
                continue
            target = self.least_loaded(spec.resources)
            moved = replace(spec, node=target)
            self.census.retried(spec, f"{node} died ({reason}); now on {target}")
            self.assigned[task_id] = moved
            retried[target].append(moved)
        for target, specs in retried.items():
            self.assign(target, specs, {})

    def fail_assigned(self, spec: p.TaskSpec, error: bytes) -> None:
        del self.assigned[spec.id]
        self.finish(spec, tuple((oid, p.Failed(error)) for oid in spec.outputs))

    def able(self) -> list[str]:
        """Nodes that run tasks (a head started with no workers does not)."""
        return [n for n, r in self.nodes.items() if r.info.workers > 0]

    def least_loaded(self, needs: tuple[tuple[str, float], ...] = ()) -> str:
        """The live node with the shortest queue per worker among those that offer
        ``needs`` (a task's GPUs, custom resources); the head's own node if none. A node
        given a task it cannot hold fails it (node.py, dispatch). Tasks that ask for no
        resources (nearly all) are answered by ``loads``, a heap; the rest scan the nodes."""
        if needs:
            able = [n for n in self.able() if offers(self.nodes[n].info.resources, needs)]
            if able:
                return min(able, key=lambda n: (self.nodes[n].queued
                                                / max(self.nodes[n].info.workers, 1),
                                                self.node_order(n)))
        return self.loads.least() or self.local.id

    def cleanup_segments(self, info: p.NodeInfo) -> None:
        """A dead node on this host cannot clean up after itself: remove its arena and spills."""
        if info.host == self.host_of(self.local.id):
            self.emit(Unlink((os.path.join("/dev/shm", info.arena),
                              spill_directory(self.session, info.id))))


def _is_node(peer: Peer) -> bool:
    """A node's peer (``(NODE, its id)``), not a client's."""
    return isinstance(peer, tuple) and peer[0] == NODE


FROM_CLIENT = handlers(Head, "on_")     # Hello -> Head.on_Hello, ... (wire/dispatch.py)
FROM_NODE = handlers(Head, "node_")     # TasksDone -> Head.node_TasksDone, ...


def _node_key(info: p.NodeInfo) -> tuple:
    """Head first, then node-1, node-2, ... node-10 in numeric order.

    >>> info = lambda n: p.NodeInfo(n, "", 0, False, 1, "", 0)
    >>> sorted(["node-10", "node-2"], key=lambda n: _node_key(info(n)))
    ['node-2', 'node-10']
    """
    stem, _, number = info.id.rpartition("-")
    return (not info.is_head, stem, int(number) if number.isdigit() else 0, info.id)


def _mean(known: float | None, sample: float) -> float:
    """Exponential running mean (new samples weigh 20%).

    >>> _mean(None, 4.0), _mean(4.0, 9.0)
    (4.0, 5.0)
    """
    return sample if known is None else 0.8 * known + 0.2 * sample


def _size_of(value: p.ObjectValue | None) -> int:
    """Bytes of an object's layout (0 while its task has not finished)."""
    if isinstance(value, p.Stored | p.Located):
        return value.nbytes
    if isinstance(value, p.Inline):
        return len(value.data)
    return 0
