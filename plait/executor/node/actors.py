"""The actors living on one node: a dedicated worker process each, fed its calls in order.

An actor's creation and calls reach the node as tasks (``TaskSpec.actor``); the task table
waits for their top-level inputs like any task's (not for nested refs: node/tasks.py),
then hands them here instead of to the pool of task workers. Here each actor has a queue
of its unfinished calls in arrival order (a caller's calls arrive in the order it made
them); a call goes to the actor's process only when every call its caller made before it
has been sent, so a caller's calls run in order even when a later call's inputs were
ready first (as Ray's ordered queue of a caller's calls to a sync actor: a call still
waiting for an argument holds back that caller's calls behind it), while another
caller's ready calls pass it, as in Ray (a caller is a driver, or a worker process's
tasks: ``TaskSpec.caller``). Up to MAX_CALLS_SENT calls (or the actor's ``max_concurrency``,
if larger) wait in its process: an actor that runs one call at a time runs them in that
order; an async or threaded one starts up to ``max_concurrency`` of them at once and
reports each as it finishes, in any order.

When the actor's process dies, the call it was running (for an actor that runs several at
once, each of the first ``max_concurrency`` sent) is retried within its
``max_task_retries`` (else it fails with ActorDiedError), the calls queued behind it wait,
and the process is started again (constructor first) within ``max_restarts``; past that,
or after ``plait.kill``, the actor is dead: its queued calls and all later ones fail with
ActorDiedError.

An actor whose last handle is gone is stopped gracefully (``KillActor.graceful``): once its
queued calls are done its process is told Bye and leaves on its own, running the atexit
handlers its code registered (worker.leave_process), as Ray's actors do when they go out of
scope; one still there ACTOR_EXIT_SECONDS later is killed. ``plait.kill`` kills at once
and runs none, as ``ray.kill``.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Protocol

from plait.errors import ActorDiedError, ActorUnavailableError
from plait.executor.node.resources import Ledger
from plait.executor.node.tasks import TaskTable
from plait.executor.node.workers import WorkerHandle
from plait.executor.wire import protocol as p
from plait.executor.wire.instructions import Instruction, KillWorker

MAX_CALLS_SENT = 64          # calls queued in the actor's process at once
SCAN_CALLS = 1024            # calls looked at past those sent, for one another caller's
ACTOR_EXIT_SECONDS = 5.0     # an actor told to leave has this long for its atexit handlers
DEAD_KEPT = 1024             # errors of forgotten dead actors kept for calls still on their way


class ActorHost(Protocol):
    """What the actors use of their Node (node.py), which holds them and feeds them."""

    id: str
    table: TaskTable
    workers: dict[bytes, WorkerHandle]
    held_slots: dict[str, float]
    num_workers: int
    ledger: Ledger
    stopping: bool
    clock: Callable[[], float]

    def up(self, message: p.Message) -> None: ...

    def to_worker(self, identity: bytes, message: p.Message) -> None: ...

    def emit(self, instruction: Instruction) -> None: ...

    def start_worker(self, index: int, extra: bool = False, actor: str = "") -> None: ...

    def next_index(self) -> int: ...

    def work_item(self, task_id: str) -> p.WorkItem | None: ...

    def restart_item(self, spec: p.TaskSpec, attempt: int) -> p.WorkItem | None: ...

    def unpin_inputs(self, task_id: str) -> None: ...

    def send_items(self, worker: WorkerHandle, items: list[p.WorkItem]) -> None: ...

    def fail_task(self, task_id: str, error: bytes) -> None: ...

    def resources_freed(self) -> None: ...


@dataclass
class LocalActor:
    """One actor on this node."""

    spec: p.TaskSpec                      # its creation task
    worker: WorkerHandle | None = None
    calls: deque[str] = field(default_factory=deque)   # unfinished calls, in arrival order
    ready: set[str] = field(default_factory=set)       # calls whose inputs are all here
    sent: int = 0                         # calls at the front of ``calls`` in the process
    state: str = "new"                    # new -> starting -> alive; or dead
    inputs_ready: bool = False            # the constructor's inputs are all here
    restarts: int = 0
    dead: bytes = b""                     # the pickled ActorDiedError, once dead
    kill_reason: str = ""                 # plait.kill asked for this death
    no_restart: bool = False
    kill_asked: bool = False              # plait.kill came while its process was starting
    leaving: bool = False                 # to stop once its queued calls are done (graceful)
    told_bye: float = 0.0                 # when its process was told to leave (0: not yet)


class Actors:
    """The node's actors, by actor id."""

    def __init__(self, node: ActorHost) -> None:
        self.node = node
        self.by_id: dict[str, LocalActor] = {}
        # the errors of actors dead for good whose records went (newest last): a call the
        # head sent before it heard of the death fails with the actor's own error
        self.dead: OrderedDict[str, bytes] = OrderedDict()
        self.wanted: set[str] = set()          # actors that may have work to send
        self.restarting: set[str] = set()      # restarts waiting for their inputs to come
        self.leaving: set[str] = set()         # actors whose process was told Bye
        self.awaiting: list[str] = []          # actors whose resources others hold

    # -- arrivals ----------------------------------------------------------------------

    def create(self, spec: p.TaskSpec) -> None:
        """Start the actor's process; its constructor runs once the process is up."""
        if spec.actor in self.by_id and not self.by_id[spec.actor].dead:
            return                                   # already here (a duplicate assign)
        self.dead.pop(spec.actor, None)
        actor = self.by_id[spec.actor] = LocalActor(spec)
        if self.node.num_workers == 0 and spec.slots:
            self.awaiting.append(spec.actor)      # where the head restarts it while no node
            return                                # can: it moves it once one joins
        if not self.node.ledger.offers(spec.resources) or spec.slots > self.node.num_workers:
            wants = {**dict(spec.resources), **({"CPU": spec.slots} if spec.slots else {})}
            self.die(actor, ActorDiedError(spec.actor, f"it asks for {wants}, which "   # (moved
                                                       f"{self.node.id} does not offer"))  # here)
            return
        if not self.claim(spec):
            self.awaiting.append(spec.actor)      # CPUs, GPUs, ... held: started later
            return
        self.start_process(actor)

    def claim(self, spec: p.TaskSpec) -> bool:
        """Take the actor's CPUs (``num_cpus`` given: that many task slots are its own for
        its life) and other resources, if free now; else it waits, as Ray keeps an actor
        pending until they are (before, actors started on CPUs other actors held)."""
        held = self.node.held_slots
        taken = sum(slots for key, slots in held.items() if key.startswith("actor "))
        if spec.slots and taken + spec.slots > self.node.num_workers:
            return False
        if not self.node.ledger.take("actor " + spec.actor, spec.resources):
            return False
        if spec.slots:
            held["actor " + spec.actor] = spec.slots
        return True

    def resources_freed(self) -> None:
        """Start the actors, in order, whose CPUs and resources are free now."""
        waiting, self.awaiting = self.awaiting, []
        for actor_id in waiting:
            actor = self.by_id.get(actor_id)
            if actor is None or actor.dead:
                continue
            if self.claim(actor.spec):
                self.start_process(actor)
            else:
                self.awaiting.append(actor_id)

    def give_back(self, actor_id: str) -> bool:
        """The head moves an actor still waiting here for CPUs to a node that has them
        free now (head/actors.py): it goes, its creation and queued calls with it (the head
        sends them on), if it has not started; whether it went."""
        actor = self.by_id.get(actor_id)
        if actor is None or actor_id not in self.awaiting:
            return False
        self.awaiting.remove(actor_id)
        del self.by_id[actor_id]
        self.wanted.discard(actor_id)
        for task_id in (actor.spec.id, *actor.calls):
            self.node.table.remove(task_id)
        return True

    def start_process(self, actor: LocalActor) -> None:
        """Ask for the actor's process; its calls wait until it has started and is ready."""
        actor.worker, actor.state, actor.sent = None, "new", 0
        self.node.start_worker(self.node.next_index(), actor=actor.spec.actor)

    def process_started(self, actor_id: str, worker: WorkerHandle) -> None:
        """The process asked for is up. An actor killed or dead meanwhile lets it go."""
        worker.actor = actor_id
        actor = self.by_id.get(actor_id)
        if actor is None or actor.dead or actor.kill_asked:
            worker.retiring = True
            self.node.emit(KillWorker(worker.identity))
            if actor is not None and not actor.dead:
                # killed while its process started: that process is its own, so its end
                # (process_died) lets the actor die or restart as any kill does. Before,
                # the process was not the actor's: the actor never died, and the CPUs it
                # had claimed stayed taken (an actor churn probe's waiting actor, for ever)
                actor.kill_asked = False
                actor.worker = worker
            return
        actor.worker = worker
        self.wanted.add(actor_id)

    def call_arrived(self, spec: p.TaskSpec) -> bytes:
        """Queue a call; returns the pickled error if its actor is dead, leaving or not here."""
        actor = self.by_id.get(spec.actor)
        if actor is None:
            return self.dead.get(spec.actor) or pickle.dumps(
                ActorDiedError(spec.actor, f"it does not live on {self.node.id}"))
        if actor.dead:
            return actor.dead
        if actor.leaving:
            return pickle.dumps(ActorDiedError(spec.actor, actor.kill_reason))
        actor.calls.append(spec.id)
        return b""

    def ready(self, task_ids: list[str]) -> None:
        """Tasks of actors whose inputs are all here (handed over by the task table)."""
        for task_id in task_ids:
            state = self.node.table.tasks.get(task_id)
            if state is None:
                continue
            actor = self.by_id.get(state.spec.actor)
            if actor is None:
                continue
            if task_id == actor.spec.actor:
                actor.inputs_ready = True
            else:
                actor.ready.add(task_id)
            self.wanted.add(actor.spec.actor)

    # -- feeding the processes -------------------------------------------------------------

    def dispatch(self) -> None:
        wanted, self.wanted = self.wanted, set()
        for actor_id in wanted:
            actor = self.by_id.get(actor_id)
            if actor is not None and actor.worker is not None and actor.worker.ready \
                    and not actor.worker.retiring:
                self.feed(actor)
            elif actor is not None and not actor.dead:
                self.wanted.add(actor_id)          # its process is starting, or going

    def feed(self, actor: LocalActor) -> None:
        """Constructor first (once per process), then calls: a plain actor's in each
        caller's order, an async or threaded actor's as their inputs are here."""
        node, worker = self.node, actor.worker
        assert worker is not None
        if actor.state == "new":
            first = actor.spec.id in node.table.tasks     # else a restart
            if first and not actor.inputs_ready:
                return                                     # ready() wakes it up
            item = self.creation_item(actor)
            if item is None:           # inputs not here (yet): a first run waits in the table
                if not first:          # and ready() wakes it; a restart, input_arrived()
                    self.restarting.add(actor.spec.actor)
                return
            actor.state = "starting"
            node.send_items(worker, [item])
            return
        if actor.state != "alive":
            return
        if actor.leaving and not actor.calls:
            self.tell_to_leave(actor)
            return
        items = []
        limit = max(MAX_CALLS_SENT, actor.spec.concurrency)
        waiting: set[str] = set()          # callers with an earlier call not sent yet
        in_order = actor.spec.concurrency <= 1  # Ray keeps a caller's order for plain
        position = actor.sent                   # actors only: an async or threaded one
        #                                         runs a call once its inputs are here
        while (position < len(actor.calls) and actor.sent < limit
               and position < actor.sent + SCAN_CALLS):
            task_id = actor.calls[position]
            caller = self.caller_of(task_id)
            if task_id in actor.ready and not (in_order and caller in waiting):
                if position != actor.sent:            # the sent ones come first
                    del actor.calls[position]
                    actor.calls.insert(actor.sent, task_id)
                actor.sent += 1
                item = node.work_item(task_id)
                if item is not None:
                    items.append(item)
            else:
                waiting.add(caller)
            position += 1
        if items:
            node.send_items(worker, items)

    def caller_of(self, task_id: str) -> str:
        state = self.node.table.tasks.get(task_id)
        return state.spec.caller if state is not None else ""

    def creation_item(self, actor: LocalActor) -> p.WorkItem | None:
        """The constructor's work item: a first run's (or a move's) from the task table, as
        any task's; a restart's on the inputs it was made with (the head holds them while
        the actor lives). None while they are not all here."""
        spec = actor.spec
        if spec.id in self.node.table.tasks:
            return self.node.work_item(spec.id)
        return self.node.restart_item(spec, -1 - actor.restarts)

    # -- results and deaths ----------------------------------------------------------------

    def constructed(self, result: p.TaskResult) -> bool:
        """The constructor ran (True if ``result`` was one): the actor is alive, or dead
        with the constructor's exception as the cause."""
        actor = self.by_id.get(result.task_id)
        if actor is None or actor.state != "starting":
            return False
        failed = next((v for _, v in result.outputs if isinstance(v, p.Failed)), None)
        if failed is None:
            actor.state = "alive"
            self.wanted.add(actor.spec.actor)
        else:
            cause = pickle.loads(failed.error)
            self.die(actor, ActorDiedError(actor.spec.actor, "its constructor raised", cause))
        return True

    def input_arrived(self) -> None:
        """An object is here now: restarts waiting for their inputs look again."""
        if self.restarting:
            self.wanted |= self.restarting
            self.restarting.clear()

    def restart_reads(self, object_id: str) -> bool:
        """Whether a restart waiting here reads the object (so it is pulled here)."""
        return any(object_id in actor.spec.deps or object_id in actor.spec.nested
                   for actor_id in self.restarting
                   if (actor := self.by_id.get(actor_id)) is not None)

    def creation_failed(self, spec: p.TaskSpec, error: bytes) -> None:
        """An actor's constructor failed before it ran (an argument failed, or it was
        cancelled): the actor is dead with that cause, as in Ray. (Left waiting for its
        constructor, the node looked for its inputs again at every turn, for ever.)"""
        actor = self.by_id.get(spec.actor)
        if actor is None or spec.id != actor.spec.id or actor.state not in ("new", "starting"):
            return
        try:
            cause = pickle.loads(error)
        except Exception:                         # (the node cannot always unpickle it)
            cause = None
        self.die(actor, ActorDiedError(spec.actor, "its constructor could not run", cause))

    def ended(self, spec: p.TaskSpec) -> None:
        """A call left the node's table (finished, failed or cancelled): unblock the queue."""
        actor = self.by_id.get(spec.actor)
        if actor is None or spec.id == actor.spec.id:
            return
        if spec.id in actor.calls:
            position = actor.calls.index(spec.id)
            del actor.calls[position]
            if position < actor.sent:
                actor.sent -= 1
        actor.ready.discard(spec.id)
        self.wanted.add(actor.spec.actor)

    def call_retried(self, spec: p.TaskSpec) -> None:
        """A call that raised runs again (its ``retry_exceptions``): it goes to the back of
        its actor's queue, behind calls its process may already hold (Ray keeps no order
        for retried calls either)."""
        actor = self.by_id.get(spec.actor)
        if actor is None or spec.id not in actor.calls:
            return
        position = actor.calls.index(spec.id)
        del actor.calls[position]
        if position < actor.sent:
            actor.sent -= 1
        actor.calls.append(spec.id)
        self.wanted.add(spec.actor)

    def process_died(self, worker: WorkerHandle, how: str) -> None:
        """The actor's process is gone: retry or fail the calls sent to it, then restart or
        die. Every call sent and not reported may have run (a result may be lost on its way
        out of a process that dies), so each is retried if its ``max_task_retries`` allows
        and fails otherwise, as Ray fails the calls it pushed to a dead actor: none runs
        twice unless it may. Calls not sent yet wait for the restart."""
        actor = self.by_id.get(worker.actor)
        if actor is None or actor.worker is not worker:
            return
        node, table = self.node, self.node.table
        actor.worker, actor.sent = None, 0
        if actor.spec.id not in table.tasks:      # a restart's constructor may have run
            node.unpin_inputs(actor.spec.id)
        if actor.dead:
            self.forget(actor)
            return
        if node.stopping and not actor.kill_reason:
            return     # the node goes, not the actor: the head restarts it elsewhere (one
            #            restart, not two) and retries its calls when it hears (actors_lost)
        inflight = list(worker.inflight.items())
        reason = actor.kill_reason or how
        limit = actor.spec.max_retries
        restarts = not (actor.no_restart or node.stopping or 0 <= limit <= actor.restarts)
        for task_id, attempt in inflight:
            if task_id not in table.tasks:
                continue
            if task_id == actor.spec.id:
                table.requeue(task_id, attempt)
            elif not table.crashed(task_id, attempt, how):
                node.fail_task(task_id, pickle.dumps(self.call_lost(
                    actor, reason, table.tasks[task_id].spec.max_retries, restarts)))
        if not restarts:
            self.die(actor, ActorDiedError(actor.spec.actor, reason))
            return
        actor.restarts += 1
        self.start_process(actor)
        node.up(p.ActorExit(actor.spec.actor, actor.restarts))

    @staticmethod
    def call_lost(actor: LocalActor, reason: str, retries: int,
                  restarts: bool) -> ActorDiedError:
        """The error of a call whose process died under it, out of retries: as in Ray,
        ActorUnavailableError (an ActorDiedError) if the actor starts again (later calls
        run), ActorDiedError if it is dead."""
        said = f"{reason}, while running this call (max_task_retries={retries})"
        if restarts:
            return ActorUnavailableError(actor.spec.actor, f"{said}; it is restarting")
        return ActorDiedError(actor.spec.actor, said)

    def exited(self, actor_id: str) -> None:
        """The actor ended itself (exit_actor): dead for good, its process stopped. An
        async or threaded actor's other calls that were running end first, as in Ray (its
        process starts no more); the calls not sent to it fail now."""
        actor = self.by_id.get(actor_id)
        if actor is None or actor.dead:
            return
        reason = "it ended itself (exit_actor() or sys.exit())"
        if actor.spec.concurrency <= 1 or actor.worker is None:
            self.die(actor, ActorDiedError(actor_id, reason))
            return
        actor.leaving, actor.no_restart, actor.kill_reason = True, True, reason
        error = pickle.dumps(ActorDiedError(actor_id, reason))
        for task_id in list(actor.calls)[actor.sent:]:
            self.node.fail_task(task_id, error)
        self.wanted.add(actor_id)

    def kill(self, message: p.KillActor) -> None:
        actor = self.by_id.get(message.actor)
        if actor is None or actor.dead:
            return
        actor.kill_reason = message.reason
        actor.no_restart = actor.no_restart or message.no_restart
        if message.graceful and actor.worker is not None and actor.state == "alive":
            actor.leaving = True             # its queued calls first (see feed)
            self.wanted.add(actor.spec.actor)
        elif actor.worker is not None:   # no call goes to the process being killed: one
            actor.worker.retiring = True     # sent now would fail as if it had been running
            self.node.emit(KillWorker(actor.worker.identity))
        elif message.actor in self.awaiting:     # no process, waiting for CPUs: nothing to
            if actor.no_restart:                 # stop, and it holds none, so it dies now
                self.awaiting.remove(message.actor)
                self.die(actor, ActorDiedError(actor.spec.actor, message.reason))
        else:
            actor.kill_asked = True          # its process is being started: killed when up

    def tell_to_leave(self, actor: LocalActor) -> None:
        """Bye to a leaving actor's process, once: it runs its atexit handlers and exits
        (``process_died`` then marks the actor dead)."""
        if actor.told_bye or actor.worker is None:
            return
        actor.told_bye = self.node.clock()
        actor.worker.retiring = True
        self.leaving.add(actor.spec.actor)
        self.node.to_worker(actor.worker.identity, p.Bye())

    def watch_leaving(self, now: float) -> None:
        """Kill a process told to leave that is still there after ACTOR_EXIT_SECONDS (an
        atexit handler that hangs must not keep the actor's slot and memory for ever)."""
        for actor_id in list(self.leaving):
            actor = self.by_id.get(actor_id)
            if actor is None or actor.worker is None:
                self.leaving.discard(actor_id)   # gone (process_died has seen to it)
            elif now - actor.told_bye >= ACTOR_EXIT_SECONDS:
                actor.told_bye = now             # once per ACTOR_EXIT_SECONDS at most
                self.node.emit(KillWorker(actor.worker.identity))

    def die(self, actor: LocalActor, error: ActorDiedError) -> None:
        """Dead for good: every queued call fails, later calls fail on arrival."""
        actor.state, actor.dead = "dead", pickle.dumps(error)
        slots = self.node.held_slots.pop("actor " + actor.spec.actor, None)
        if self.node.ledger.give_back("actor " + actor.spec.actor) or slots:
            self.node.resources_freed()
        if actor.worker is not None:
            actor.worker.retiring = True
            self.node.emit(KillWorker(actor.worker.identity))
        for task_id in list(actor.calls):
            self.node.fail_task(task_id, actor.dead)
        if actor.spec.id in self.node.table.tasks:
            self.node.fail_task(actor.spec.id, actor.dead)
        self.node.up(p.ActorExit(actor.spec.actor, actor.restarts, actor.dead))
        self.forget(actor)

    def forget(self, actor: LocalActor) -> None:
        """Drop the record of an actor dead for good once its process is gone (a node runs
        many short-lived actors: each record kept cost ~3 KiB for ever); its error stays
        in ``dead`` for calls already on their way, the newest DEAD_KEPT of them."""
        if not actor.dead or actor.worker is not None:
            return                                # process_died forgets it, once gone
        actor_id = actor.spec.actor
        if self.by_id.get(actor_id) is actor:
            del self.by_id[actor_id]
        self.leaving.discard(actor_id)
        self.wanted.discard(actor_id)
        self.restarting.discard(actor_id)
        self.dead[actor_id] = actor.dead
        while len(self.dead) > DEAD_KEPT:
            self.dead.popitem(last=False)
