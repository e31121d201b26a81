"""The head's part in actors: which node each lives on, its name, whether it died.

The head registers an actor when its creation is submitted, routes every call to wherever
the actor lives now (the compiler's placement is a hint), fails calls of a dead or unknown
actor at once, answers ``get_actor`` by name, and forwards ``plait.kill``. The actor's
process and its call queue are its node's (plait.executor.node.actors). When a node dies, its
actors start again elsewhere within ``max_restarts``, their unfinished calls in order.

An actor that asks for CPUs waits on its node while other actors hold them there. When
another node has CPUs no actor holds (an actor there ended, was killed, or the node joined),
the head asks the waiting actor's node to give it back (Revoke; the node refuses if it has
started) and sends its creation and unfinished calls there, as Ray starts a pending actor on
the first node with room. Calls made meanwhile wait at the head for the answer.

A mixin of Head: it uses the head's tables (assigned, nodes, directory) and its helpers
(assign, finish, object_done, least_loaded, able, fail_assigned).
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from plait.compiler.view import offers
from plait.errors import ActorDiedError, ActorNotFoundError
from plait.executor.head.lineage import reads
from plait.executor.wire import protocol as p
from plait.executor.wire.instructions import Peer
from plait.graph.actor import name_and_namespace
from plait.store.serialization import dumps


@dataclass
class ActorRecord:
    """An actor as the head knows it: its creation task, where it lives, whether it died."""

    spec: p.TaskSpec
    node: str
    restarts: int = 0
    base: int = 0                   # restarts used before it moved to its current node
    dead: bytes = b""               # the pickled ActorDiedError, once dead for good
    holds_arguments: bool = False   # its constructor's inputs are held for its restarts
    killed: bool = False            # killed for good, its end not reported by its node yet
    moving: str = ""                # asked back from its node, to go here if it had not started
    held_calls: list[p.TaskSpec] = field(default_factory=list)   # made while it moved
    started: bool = False           # its node said it had started: never moved
    creation: p.TaskSpec | None = None   # its restart's creation (in no table of the head's)


def actor_row(actor_id: str, record: ActorRecord, assigned: Mapping[str, p.TaskSpec]
              ) -> p.ActorRow:
    """One actor as the dashboard and ``list_actors`` show it: "starting" while its
    constructor has not finished (after a restart too), "dead" once dead or killed for
    good, else "alive"."""
    state = ("dead" if record.dead or record.killed else
             "starting" if actor_id in assigned else "alive")
    spec = record.spec
    return p.ActorRow(actor_id, spec.function_name, spec.actor_name, record.node, state,
                      record.restarts, spec.detached)


class ActorRouting:
    """Actor bookkeeping and routing for the Head (see the module docstring)."""

    actors: dict[str, ActorRecord]
    named: dict[str, tuple[str, bytes]]
    aliases: dict[str, str]
    may_wait: dict[str, None]   # creations asking for CPUs, not pinned, perhaps unfinished

    def actor_task(self, spec: p.TaskSpec) -> p.TaskSpec | None:
        """Register an actor's creation; send a call to wherever its actor lives now
        (None: the actor is dead or unknown, and the call has failed)."""
        if spec.method == "__init__":
            if spec.node not in self.nodes:
                spec = replace(spec, node=self.least_loaded(spec.resources))
            taken = self.named.get(spec.actor_name) if spec.actor_name else None
            if taken is not None and taken[0] in self.actors \
                    and not self.actors[taken[0]].dead:
                if spec.if_exists:
                    self.alias(spec, taken[0])
                    return None
                name = name_and_namespace(spec.actor_name)[0]
                error = ActorDiedError(spec.actor, f"the name {name!r} is taken by the live "
                                                   f"actor {taken[0]}")
                self.actors[spec.actor] = ActorRecord(spec, spec.node, dead=pickle.dumps(error))
                self.refuse_call(spec, pickle.dumps(error))
                return None
            self.actors[spec.actor] = ActorRecord(spec, spec.node)
            if spec.slots and not spec.pinned:
                self.may_wait[spec.actor] = None  # (see move_waiting_actors)
            if spec.detached:             # outlives its handles: its ready marker too
                self.directory.hold(spec.actor)
            if spec.actor_name:
                self.named[spec.actor_name] = (spec.actor, spec.handle)
            return spec
        actor = self.aliases.get(spec.actor, spec.actor)
        record = self.actors.get(actor)
        if record is None or record.dead:
            error = record.dead if record else pickle.dumps(ActorDiedError(
                spec.actor, "no such actor in this cluster (it was never created here)"))
            self.refuse_call(spec, error)
            return None
        return replace(spec, actor=actor, node=record.node)

    def alias(self, spec: p.TaskSpec, actor: str) -> None:
        """A creation with get_if_exists whose name a live actor took since its driver
        looked (several tasks made it at once): its handle is served by that actor, as
        Ray's get_if_exists is atomic, and holds it as a handle would. (It failed with
        ActorDiedError before.)"""
        self.aliases[spec.actor] = actor
        self.directory.hold(actor)
        for oid in spec.outputs:
            self.object_done(oid, p.Inline(dumps(None)))

    def let_alias_go(self, object_id: str) -> None:
        """An alias's last handle is gone: the actor it named loses that holder."""
        actor = self.aliases.pop(object_id, None)
        if actor is not None:
            self.directory.release(actor, f"a get_if_exists handle of {actor}")

    def hold_arguments(self, spec: p.TaskSpec) -> None:
        """A restartable actor's constructor runs again at each restart, on the arguments
        it was created with: they stay while the actor lives, as Ray keeps them, even once
        no handle or ref of the caller's is left."""
        record = self.actors.get(spec.actor)
        if record is None or spec.max_retries == 0 or record.holds_arguments:
            return
        record.holds_arguments = True
        for oid in reads(spec):
            self.directory.hold(oid)

    def release_arguments(self, record: ActorRecord) -> None:
        """The actor is dead for good or gone: its constructor never runs again."""
        if record.holds_arguments:
            record.holds_arguments = False
            for oid in reads(record.spec):
                self.directory.release(oid, f"actor {record.spec.actor}, which was made "
                                            f"with it, at its end")

    def refuse_call(self, spec: p.TaskSpec, error: bytes) -> None:
        """A creation or call that is never assigned: its results fail with ``error``."""
        for oid in spec.outputs:
            self.object_done(oid, p.Failed(error))

    def on_ActorLookup(self, peer: Peer, message: p.ActorLookup) -> None:
        record = self.named.get(message.name)
        actor = self.actors.get(record[0]) if record else None
        if actor is None or actor.dead:
            error = ActorNotFoundError(f"no actor named {message.name!r} is alive in this "
                                       f"cluster")
            self.to_client(peer, p.Refused(message.request, pickle.dumps(error)))
            return
        self.to_client(peer, p.ActorFound(message.request, record[1]))

    def on_ActorNamesRequest(self, peer: Peer, message: p.ActorNamesRequest) -> None:
        """The registered names of the named actors alive (``list_named_actors``)."""
        live = tuple(name for name, (actor, _) in self.named.items()
                     if actor in self.actors and not self.actors[actor].dead)
        self.to_client(peer, p.ActorNames(message.request, live))

    def on_ActorsRequest(self, peer: Peer, message: p.ActorsRequest) -> None:
        """Every actor whose record the head keeps (those whose last handle went are
        forgotten), for ``plait.util.state.list_actors``."""
        rows = tuple(actor_row(actor_id, record, self.assigned)
                     for actor_id, record in self.actors.items())
        self.to_client(peer, p.ActorsReport(message.request, rows))

    def on_KillActor(self, peer: Peer, message: p.KillActor) -> None:
        """Forward the kill to the actor's node; one killed for good gives up its name at
        once, so that the killer may make another actor of that name next (its death
        reaches the head only later, from the node)."""
        if message.actor in self.aliases:          # (a get_if_exists handle's kill)
            message = replace(message, actor=self.aliases[message.actor])
        record = self.actors.get(message.actor)
        if record is not None and not record.dead:
            self.to_node(record.node, message)
            record.killed = record.killed or message.no_restart
            if record.killed:
                self.move_waiting_actors()       # its CPUs are as good as free
            name = record.spec.actor_name
            if message.no_restart and name and self.named.get(name, ("",))[0] == message.actor:
                del self.named[name]

    def hold_call(self, spec: p.TaskSpec) -> bool:
        """Keep a call of an actor being moved until its node answers (``actor_revoked``);
        whether it was kept."""
        record = self.actors.get(spec.actor)
        if record is None or not record.moving or spec.method == "__init__":
            return False
        record.held_calls.append(spec)
        return True

    def move_waiting_actors(self) -> None:
        """Ask back each actor that may be waiting for CPUs on its node (others' actors
        hold them there, and its constructor has not finished) when another node has room
        for it (see the module docstring). Called whenever actors' CPUs may have come free."""
        for actor_id in list(self.may_wait):
            record = self.actors.get(actor_id)
            if record is None or record.dead or record.killed or record.started \
                    or (actor_id not in self.assigned and record.creation is None):
                del self.may_wait[actor_id]       # constructed, failed or gone: it runs
        if not self.may_wait:
            return
        room = self.actor_room()
        for actor_id in list(self.may_wait):      # the oldest first, as Ray's queue
            record = self.actors[actor_id]
            spec = record.spec
            if record.moving or room.get(record.node, -1.0) >= 0:
                continue                          # (a node running no tasks has no room)
            target = next((node for node in sorted(room, key=self.node_order)
                           if room[node] >= spec.slots
                           and offers(self.nodes[node].info.resources, spec.resources)), None)
            if target is None:
                continue
            room[target] -= spec.slots
            if record.node in room:
                room[record.node] += spec.slots
            record.moving = target
            self.to_node(record.node, p.Revoke(actor_id))

    def restart_home(self, spec: p.TaskSpec, dead: str) -> str:
        """Where an actor of the dead node starts again: the first node with CPUs no actor
        holds for it (that offers what it asks for), else the least-loaded. Before, the
        least-loaded always, whose CPUs other actors might hold: the restart waited there
        for ever though another node had CPUs free (found by an actor churn probe with node
        losses)."""
        if spec.slots:
            room = self.actor_room()
            for node in sorted(room, key=self.node_order):
                if node != dead and room[node] >= spec.slots \
                        and offers(self.nodes[node].info.resources, spec.resources):
                    return node
        return self.least_loaded(spec.resources)

    def actor_room(self) -> dict[str, float]:
        """The CPUs of each live node that runs tasks that no actor holds or waits for
        (below 0: actors wait there)."""
        room = {node: float(self.nodes[node].info.workers) for node in self.able()}
        for record in self.actors.values():
            if not record.dead and not record.killed and record.node in room:
                room[record.node] -= record.spec.slots
        return room

    def actor_revoked(self, node: str, record: ActorRecord, ok: bool) -> None:
        """``node``'s answer to moving ``record``'s actor. Given back, the actor goes where
        it was to go (back to ``node`` if that one died meanwhile) with its creation and every
        unfinished call of it, in order: those sent to ``node`` left it with the actor, those
        made meanwhile were held here. Refused (it had started), it stays, and the calls
        held go to it."""
        target, record.moving = record.moving, ""
        held, record.held_calls = record.held_calls, []
        if not ok:
            record.started = True
            self.may_wait.pop(record.spec.actor, None)
            if held:
                self.assign(node, held, {})
            self.move_waiting_actors()   # the room it was to take may serve one that waits
            return
        where = target if target in self.nodes else node
        actor_id = record.spec.actor
        specs = [spec for spec in map(self.assigned.get, self.assigned.on(node))
                 if spec is not None and spec.actor == actor_id]
        if actor_id not in self.assigned and record.creation is not None:
            specs.insert(0, record.creation)      # a restart's creation goes first
        pending = [replace(spec, node=where) for spec in specs]
        for spec in pending:
            if spec.id in self.assigned:
                self.assigned[spec.id] = spec
        if record.creation is not None:
            record.creation = replace(record.creation, node=where)
        record.node = where
        self.assign(where, pending, {})
        if record.killed:            # plait.kill came while it moved: it reached the old node
            self.to_node(where, p.KillActor(actor_id, True))

    def node_ActorExit(self, node: str, message: p.ActorExit) -> None:
        record = self.actors.get(message.actor)
        if record is not None:
            record.restarts = record.base + message.restarts
            record.dead = message.error or record.dead
            if record.dead:
                self.release_arguments(record)
                self.move_waiting_actors()

    def actors_lost(self, node: str, reason: str) -> None:
        """Actors on a dead node start again elsewhere within ``max_restarts``, with their
        unfinished calls in order; otherwise they are dead and their calls fail. Calls run
        one at a time in order, so only the first unfinished one may have been running: it
        is retried within its ``max_task_retries`` (else ActorDiedError), the rest move."""
        for actor_id, record in self.actors.items():
            if record.node != node or record.dead:
                continue
            record.moving, record.held_calls = "", []   # (held calls are among ``pending``)
            pending = [s for s in map(self.assigned.get, self.assigned.on(node))
                       if s is not None and s.actor == actor_id]
            limit = record.spec.max_retries
            if 0 <= limit <= record.restarts:
                record.dead = pickle.dumps(ActorDiedError(actor_id, f"its node {node} died "
                                                                    f"({reason})"))
                self.release_arguments(record)
                for spec in pending:
                    self.fail_assigned(spec, record.dead)
                continue
            record.restarts += 1
            record.base, record.node = record.restarts, self.restart_home(record.spec, node)
            remaining = -1 if limit < 0 else limit - record.restarts
            moved = [replace(record.spec, node=record.node, max_retries=remaining)]
            record.creation, record.started = moved[0], False
            if record.spec.slots and not record.spec.pinned:
                self.may_wait[actor_id] = None    # it may wait there for CPUs, as a new one
            calls = [spec for spec in pending if spec.method != "__init__"]
            for spec in calls:
                failures = self.node_failures[spec.id]
                if spec is calls[0]:
                    failures.append(f"{node} died ({reason})")
                if 0 <= spec.max_retries < len(failures):
                    self.fail_assigned(spec, record.dead or pickle.dumps(ActorDiedError(
                        actor_id, f"its node {node} died ({reason}) while the call may have been "
                                  f"running, and max_task_retries is "
                                  f"{spec.max_retries}")))
                else:
                    moved.append(replace(spec, node=record.node))
            for spec in moved[1:]:
                self.assigned[spec.id] = spec
            if actor_id in self.assigned:         # its constructor had not finished yet
                self.assigned[actor_id] = moved[0]
            self.assign(record.node, moved, {})
