"""Every message plait sends, in one place, and how it becomes ZeroMQ frames.

Who talks to whom (all over ZeroMQ; ROUTER on the serving side, DEALER on the other)::

    driver --Hello/Heartbeat/PutInline/Alloc/Seal/Abandon/ViewRequest/Submit/Subscribe/Pin/
             Handled/Unpin/Expect/Hold/Free/Cancel/MemoryRequest/ResourcesRequest/StateCheck/
             TraceRequest/KillActor/ActorLookup/ActorNamesRequest/SnapshotRequest/PlanRequest/
             ObjectsRequest/ActorsRequest/ShowOutput/CorruptCopy/Bye--> head
    driver <--Welcome/Heartbeat/Allocated/Refused/View/Ready/Unhandled/Yielded/Pinned/
             MemoryReport/ResourcesReport/StateReport/TraceReport/ActorFound/ActorNames/
             Snapshot/PlanReport/ObjectsReport/ActorsReport/Output-- head
    node   --NodeHello/Heartbeat/Subscribe/TasksDone/Yielded/Created/ReplicaAdded/
             ReplicaDropped/Revoked/Pinned/MemoryReport/ResourcesReport/StateReport/ActorExit/
             CopyLost/WorkerExited/CancelSubmitted/NodeSnapshot/Output--> head
    node   <--NodeTable/Heartbeat/Assign/Cancel/Revoke/Ready/Delete/Pin/Unpin/MemoryRequest/
             ResourcesRequest/StateCheck/NodeLost/KillActor/SnapshotRequest/Bye-- head
    node   --Fetch/FetchDone--> peer node's transfer socket --FetchHeader, raw chunks--> node
    worker --WorkerReady/Alloc/Seal/PutInline/TasksDone/ViewsGone/Yielded/Blocked/
             Unblocked/HandBack/Output--> node
    worker <--RunTasks/Skip/Cancel/Allocated/Refused/Bye----- node

Each receiving side's handlers are looked up by message class (dispatch.py); a test holds
them to this diagram (tests/executor/test_dispatch.py).

The head runs in node-0's process and talks to its own node by calling its handlers
directly (the same messages, not encoded): one code path for local and remote nodes.

A message is a frozen dataclass; ``encode`` makes it one frame (pickle protocol 5) and
``decode`` turns the frame back. Object values ride as ``Inline`` bytes when small; a large
object is ``Stored`` on a node, and whoever reads it first pins it, which yields its
``Located`` block (an offset is only meaningful while pinned: unpinned objects may spill).
Values record the ids of refs pickled inside them (``contains``), which they keep alive.

A generator task's values travel one by one, as it yields them, each as a ``Yielded``: the
worker stores the value and tells its node, which seals it and tells the head, which
records the object and hands it to the caller of a ``"streaming"`` task (whose
ObjectRefGenerator is waiting for it), all before the task ends::

    worker --Yielded(T, i, T.i, Inline|Located)--> node --Yielded(.., Inline|Stored)--> head
    head --Yielded--> the caller's session: ObjectRefGenerator's next ref
    worker --TasksDone(T: None | the refs | Failed)--> node --> head: the stream's end
A dashboard is a client like a driver: once a second, while a page is open, it sends a
``SnapshotRequest``; the head answers from its counters and bounded rings, after asking
every node for a ``NodeSnapshot`` (workers, store, CPU, RSS), and a ``PlanRequest`` gives
the tasks of the latest submission, to draw. Without a dashboard none of these is sent.

Only peers on this host (or holding the cluster key) can reach these sockets, and even
their frames are decoded before they are trusted: ``decode`` builds only the classes in
``ADMITTED`` (see "Reading frames" below).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import pickle
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from plait.compiler.view import ClusterView, NodeView, ObjectInfo
from plait.store.store import ObjectSummary, StoreSummary

LOOPBACK = "127.0.0.1"          # where a node on this host's ipc sockets is, to its peers

# -- object values ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Inline:
    """A small object's whole layout, carried in the message."""

    data: bytes
    contains: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Stored:
    """A large object held by ``node``'s store (in memory or spilled)."""

    node: str
    nbytes: int
    contains: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Located:
    """A pinned object in ``node``'s arena at ``offset`` (layout of ``nbytes``)."""

    node: str
    offset: int
    nbytes: int
    contains: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OnDisk:
    """A spilled object that ``node``'s store has no room to bring back for a reader, as
    Ray falls back to disk when its store is full: the reader maps its spill file at
    ``path`` (this host's) read-only, each chunk checked against ``crc``. The file never
    changes while the object lives, and a mapping outlives its deletion: no pin."""

    node: str
    path: str
    nbytes: int
    crc: tuple[int, ...]
    contains: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Pending:
    """In a fused chain: made by an earlier task of the same message, in the same worker."""

    object_id: str


@dataclass(frozen=True, slots=True)
class Failed:
    """The object will never exist: ``error`` is the pickled exception to raise on get."""

    error: bytes


ObjectValue = Inline | Stored | Located | OnDisk | Pending | Failed


# -- driver <-> head -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Hello:
    pid: int
    nodes_expected: int = 1          # answer once this many nodes have joined
    host: str = ""                   # the client's host: the head may watch its pid
    wire: str = field(default_factory=lambda: WIRE_VERSION)   # the messages it speaks


# A Hello's answer when the client speaks other messages than the head (``Refused``'s
# request: no request of a client is ever numbered so)
HELLO_REFUSED = -1


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What a peer needs to know of a node (public as ``plait.nodes()``)."""

    id: str
    address: str                     # where the node serves transfers
    pid: int
    is_head: bool
    workers: int
    arena: str
    store_capacity: int
    host: str = ""                   # nodes with equal hosts share /dev/shm
    resources: tuple[tuple[str, float], ...] = ()   # offered beside CPUs: GPU, memory, custom

    def as_ray(self) -> dict[str, Any]:
        """Ray's keys for what plait knows of a node (a listed node is alive): the dict
        ``plait.nodes()`` lists it as (api.Node)."""
        resources = {"CPU": float(self.workers), **dict(self.resources),
                     "object_store_memory": float(self.store_capacity)}
        ip = host_of(self.address)
        return {"NodeID": self.id, "Alive": True, "alive": True, "NodeName": ip,
                "NodeManagerAddress": ip, "IsHead": self.is_head, "Resources": resources}


def host_of(address: str) -> str:
    """The host in a node's address (an ipc:// node is on this host's loopback).

    >>> host_of("tcp://10.0.0.5:7001"), host_of("ipc:///tmp/x.sock"), host_of("10.0.0.6")
    ('10.0.0.5', '127.0.0.1', '10.0.0.6')
    """
    if address.startswith("ipc://"):
        return LOOPBACK
    return address.removeprefix("tcp://").rsplit(":", 1)[0] if "://" in address else address


@dataclass(frozen=True, slots=True)
class NodeHello:
    info: NodeInfo
    wire: str = field(default_factory=lambda: WIRE_VERSION)   # the messages it speaks


@dataclass(frozen=True, slots=True)
class NodeTable:
    """Every live node, head first (sent to nodes when it changes)."""

    nodes: tuple[NodeInfo, ...]


@dataclass(frozen=True, slots=True)
class Heartbeat:
    node: str
    store_free: int


@dataclass(frozen=True, slots=True)
class NodeLost:
    node: str
    reason: str


@dataclass(frozen=True, slots=True)
class Welcome:
    session: str
    nodes: tuple[NodeInfo, ...]
    client: int = 0                # this Hello's number, never the same twice in the head's
                                   # life: a joined driver's ids are unique with it (d7:f-1)


@dataclass(frozen=True, slots=True)
class PutInline:
    object_id: str
    value: Inline | Failed          # Failed: a task never submitted (cancelled, refused)
    task_id: str = ""              # the task that put it (a worker may run several at once)


@dataclass(frozen=True, slots=True)
class Alloc:
    request: int
    object_id: str
    nbytes: int
    created_by: str = ""
    spare: bool = False            # a driver's block for its next put, asked ahead: refused
    #                                rather than waiting for room (driver/session.py)


@dataclass(frozen=True, slots=True)
class Allocated:
    request: int
    object_id: str
    node: str
    offset: int
    held: bool = False             # the node already holds it sealed (a re-run yielded it
    #                                again): nothing to write, no block was allocated
    path: str = ""                 # no room in the store: write it to this file
    #                                instead (spill.write_on_disk), and Seal it with its CRCs


@dataclass(frozen=True, slots=True)
class Refused:
    """The answer to a request that failed: ``error`` is the pickled exception to raise."""

    request: int
    error: bytes


@dataclass(frozen=True, slots=True)
class Seal:
    """The block allocated for ``object_id`` is written: the object now exists. A driver's
    Seal keeps the block's pin as the driver's own (one Unpin undoes it; reading.py)."""

    object_id: str
    contains: tuple[str, ...] = ()
    task_id: str = ""              # the task that put it (a worker may run several at once)
    nbytes: int = 0                # a driver's put written into a spare block: its own size
    created_by: str = ""           # and call site (the block was asked for by the put before)
    crc: tuple[int, ...] = ()      # written to the file Allocated named: its chunks' CRC-32s


@dataclass(frozen=True, slots=True)
class Abandon:
    """A driver's spare block (an Alloc with ``spare``) that no put will use: dropped."""

    object_id: str


@dataclass(frozen=True, slots=True)
class Pin:
    """Keep these objects in memory for me and tell me where they are."""

    request: int
    object_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Pinned:
    request: int
    values: tuple[tuple[str, ObjectValue], ...]


@dataclass(frozen=True, slots=True)
class Unpin:
    """One earlier pin of each (node, object) is over (its zero-copy views are gone)."""

    pins: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Assign:
    """Run these tasks on the receiving node (its stage of a plan)."""

    functions: tuple[tuple[str, bytes], ...]
    tasks: tuple[TaskSpec, ...]


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop the tasks producing these objects (driver -> head), or this task (head -> node,
    node -> the worker running it). ``force``: a running task's worker is killed; without
    (Ray's default), the task is interrupted: KeyboardInterrupt in its code (the node sends
    this, then the worker's INTERRUPT_SIGNAL), and its result comes as any task's.
    ``recursive`` (Ray's default): the tasks it submitted that have not finished are
    cancelled too, the same way (see WorkerExited, CancelSubmitted)."""

    object_ids: tuple[str, ...]
    recursive: bool = True
    force: bool = False


@dataclass(frozen=True, slots=True)
class Revoke:
    """Give this task back if it has not started: its input turned out big, elsewhere."""

    task_id: str


@dataclass(frozen=True, slots=True)
class Revoked:
    task_id: str
    ok: bool                       # False: already running or done, it stays


@dataclass(frozen=True, slots=True)
class Created:
    """A task put an object on a node (held by that task until it ends)."""

    object_id: str
    value: ObjectValue
    task_id: str


@dataclass(frozen=True, slots=True)
class ReplicaAdded:
    object_id: str
    node: str
    source: str = ""
    nbytes: int = 0
    start: float = 0.0             # wall clock when the pull began and ended
    end: float = 0.0


# Trace events kept for plait.trace/timeline (tasks and transfers, newest last) by the head
# and by every other engine: a ring, so a long run stays flat. ~200 bytes each (names
# interned): ~10 MB when full.
MAX_EVENTS = 50_000


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One finished task, as a trace records it."""

    task_id: str
    function_name: str
    node: str
    worker: int
    start: float
    end: float
    ok: bool


@dataclass(frozen=True, slots=True)
class TransferEvent:
    """One copy of an object between nodes, as a trace records it."""

    object_id: str
    src: str
    dst: str
    nbytes: int
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class TraceRequest:
    """Events recorded since position ``since`` (-1: just tell me the current position);
    ``newest`` > 0: only the last that many of them (a dashboard's task stream)."""

    request: int
    since: int
    newest: int = 0


@dataclass(frozen=True, slots=True)
class TraceReport:
    request: int
    events: tuple[TaskEvent | TransferEvent, ...]
    position: int


@dataclass(frozen=True, slots=True)
class ObjectsRequest:
    """Every object the head's directory holds now (Ray's ``list_objects``)."""

    request: int


@dataclass(frozen=True, slots=True)
class ObjectRow:
    """One object of an ObjectsReport: its id, whether its value is there ("PENDING",
    "READY", "FAILED"), its size in bytes (0 while pending) and who keeps it alive."""

    object_id: str
    state: str
    nbytes: int
    holders: int
    readers: int


@dataclass(frozen=True, slots=True)
class ObjectsReport:
    request: int
    objects: tuple[ObjectRow, ...]


@dataclass(frozen=True, slots=True)
class ActorsRequest:
    """Every actor the head knows now (Ray's ``list_actors``)."""

    request: int


@dataclass(frozen=True, slots=True)
class ActorsReport:
    request: int
    actors: tuple[ActorRow, ...]    # every actor the head keeps a record of (as the dashboard's)


@dataclass(frozen=True, slots=True)
class CopyLost:
    """The sender's copy of an object is gone for good (its spill file was lost or corrupt):
    the head finds another copy, rebuilds it from lineage, or fails it."""

    object_id: str
    error: bytes


@dataclass(frozen=True, slots=True)
class CorruptCopy:
    """A driver read ``node``'s copy of an object in place, from its spill file, and found
    the file altered: that copy is gone for good, as if ``node`` had sent a CopyLost."""

    object_id: str
    node: str
    error: bytes


@dataclass(frozen=True, slots=True)
class ReplicaDropped:
    object_id: str
    node: str


@dataclass(frozen=True, slots=True)
class Delete:
    """No one needs these objects any more: free their memory and spill files."""

    object_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Fetch:
    """Send me the bytes [start, stop) of this object (``stop`` None: to its end), or, on
    the same host, pin and locate it. A large object is asked for in several runs, one per
    stream (plait.executor.wire.fetch.spans). ``stream``: send the run over a plain TCP
    stream rather than as frames (plait.executor.wire.stream), sealed in a keyed cluster."""

    request: int
    object_id: str
    same_host: bool
    start: int = 0
    stop: int | None = None
    stream: bool = False
    puller: str = ""            # the node asking ("": a driver); should it die, its
    #                             holders let go of what they pinned and offered for it


@dataclass(frozen=True, slots=True)
class FetchHeader:
    """Answer to Fetch: the object's ``nbytes``, then raw chunks of the run asked for, or
    ``offset`` to copy from, or the ``port`` of the holder's stream server and the
    ``token`` that gets the run there (a Fetch with ``stream``), or error. On the same
    host, an object the holder's store cannot hold is copied from its spill file at
    ``path`` instead of ``offset``, each chunk checked against ``crc``."""

    request: int
    object_id: str
    nbytes: int
    offset: int | None = None
    error: bytes | None = None
    port: int = 0
    token: bytes = b""
    path: str = ""
    crc: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class FetchDone:
    request: int


@dataclass(frozen=True, slots=True)
class Expect:
    """Objects a task put through its node (which will announce them): a task's own session
    says so first, so tasks it submits that read them never race that announcement."""

    object_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Hold:
    """The sender now holds refs to these objects it did not create (found inside others)."""

    object_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MemoryRequest:
    request: int


@dataclass(frozen=True, slots=True)
class MemoryReport:
    request: int
    nodes: tuple[StoreSummary, ...]


@dataclass(frozen=True, slots=True)
class ResourcesRequest:
    """What every node has and has free (``plait.available_resources()``)."""

    request: int


@dataclass(frozen=True, slots=True)
class NodeResources:
    """One node's resources by Ray's names (CPU, GPU, memory, object_store_memory, custom):
    what it has in all, and what no running task or live actor holds now."""

    node: str
    total: tuple[tuple[str, float], ...]
    free: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class ResourcesReport:
    request: int
    nodes: tuple[NodeResources, ...]


@dataclass(frozen=True, slots=True)
class StateCheck:
    """Ask the head (which asks every node) to check its own invariants."""

    request: int


@dataclass(frozen=True, slots=True)
class StateReport:
    """The invariants that failed, each naming its process and the state that broke it;
    from a node, also the tasks it holds (the head checks it holds all it was given)."""

    request: int
    problems: tuple[str, ...]
    tasks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ViewRequest:
    request: int
    object_ids: tuple[str, ...]
    actors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class View:
    request: int
    view: ClusterView
    missing: tuple[tuple[str, bytes], ...]     # (object, pickled error) not in the cluster


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One task as the executor runs it."""

    id: str
    function_id: str
    function_name: str
    payload: bytes
    deps: tuple[str, ...]          # top-level refs: replaced by their values
    nested: tuple[str, ...]        # refs inside arguments: waited for, passed as refs
    outputs: tuple[str, ...]
    max_retries: int
    node: str
    follows: str = ""              # run right after this task in the same worker (fused)
    priority: float = 0.0          # critical path from here: longer runs first
    pinned: bool = False           # the user chose the node: never moved
    retry_exceptions: bytes = b""  # pickled True or exception types that earn a retry
    actor: str = ""                # runs in this actor's process ("" for a plain task)
    method: str = ""               # "__init__": creates the actor; else the method called
    detached: bool = False         # an actor that outlives its handles
    slots: float = 1               # CPUs it holds while running (num_cpus; an actor's
    #                                creation: rounded up, held for the actor's life)
    handle: bytes = b""            # a named actor's pickled handle (for get_actor)
    actor_name: str = ""
    if_exists: bool = False        # get_if_exists: a live actor of the name serves it instead
    generator: str = ""            # "streaming" or "dynamic": its values are Yielded
    concurrency: int = 1           # an actor's creation: how many of its calls run at once
    resources: tuple[tuple[str, float], ...] = ()   # held while it runs (actor: its life)
    max_calls: int = 0             # calls of its function a worker runs, then it is replaced
    caller: str = ""               # an actor's call: whose (its session's ids prefix)
    env_vars: tuple[tuple[str, str], ...] = ()   # runtime_env's: set while it runs (an
    #                                              actor's creation: in its process)


@dataclass(frozen=True, slots=True)
class KillActor:
    """Stop an actor's process (driver -> head -> its node); ``no_restart``: for good.
    ``graceful`` (the head, when the actor's last handle is gone): once its queued calls
    are done the process is told to leave, and runs its atexit handlers; otherwise it is
    killed at once (SIGKILL, as ``ray.kill``)."""

    actor: str
    no_restart: bool = True
    reason: str = "The actor is dead because it was killed by `ray.kill` (plait.kill)"
    graceful: bool = False


@dataclass(frozen=True, slots=True)
class ActorLookup:
    """Find a named actor (driver -> head); answered by ActorFound or Refused."""

    request: int
    name: str


@dataclass(frozen=True, slots=True)
class ActorFound:
    request: int
    handle: bytes                  # the pickled ActorHandle its creator registered


@dataclass(frozen=True, slots=True)
class ActorNamesRequest:
    """The names of the named actors alive (driver -> head; Ray's ``list_named_actors``)."""

    request: int


@dataclass(frozen=True, slots=True)
class ActorNames:
    request: int
    names: tuple[str, ...]         # as registered: with their namespace (graph/actor.py)


@dataclass(frozen=True, slots=True)
class WorkerExited:
    """A worker process of this node ended (node -> head): a session it opened with the
    head (a task that submits tasks) is gone, though the head cannot watch a pid on
    another host."""

    pid: int
    cancelled: bool = False         # killed by a recursive cancel: its session's tasks go too


@dataclass(frozen=True, slots=True)
class CancelSubmitted:
    """A worker's task was interrupted by a recursive cancel without force (node -> head):
    the unfinished tasks its session submitted are interrupted too."""

    pid: int


@dataclass(frozen=True, slots=True)
class ActorExit:
    """An actor's process died: restarted (``error`` empty) or dead for good (node -> head)."""

    actor: str
    restarts: int
    error: bytes = b""


@dataclass(frozen=True, slots=True)
class Submit:
    """Run these tasks (already placed by the compiler); functions not sent before ride along.

    One message for what a get needs: ``frees`` (as Free, first) and ``subscribe`` (as
    Subscribe, after the tasks) save a round of messages per call.
    """

    functions: tuple[tuple[str, bytes], ...]
    tasks: tuple[TaskSpec, ...]
    frees: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    predicted_bytes: int = 0       # what the plan said would move (the dashboard compares)


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Tell me (once) when each of these objects is ready or failed; with a ``request``,
    also answer Subscribed(request) at once, after what is known of them already: a get or
    wait whose time is up (``timeout=0``) learns what is ready now, and no more."""

    object_ids: tuple[str, ...]
    request: int = 0


@dataclass(frozen=True, slots=True)
class Subscribed:
    """A Subscribe with a request was taken in: every value known then came before this."""

    request: int


@dataclass(frozen=True, slots=True)
class Ready:
    values: tuple[tuple[str, ObjectValue], ...]


@dataclass(frozen=True, slots=True)
class Handled:
    """The sender's get raised these failed objects' errors to its program: they are not
    "Unhandled" when they go (a wait alone does not count, as in Ray)."""

    object_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Unhandled:
    """Objects of the receiver's tasks that failed and went with nobody having asked for
    them or read them: (object, its pickled error), which the receiver logs, as Ray logs an
    "Unhandled error" when the last ref to a failed object goes without a get."""

    errors: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class ShowOutput:
    """The sender shows what workers print (Ray's ``log_to_driver``): the head sends it
    every ``Output``. A driver's session sends it once; workers' sessions never."""


@dataclass(frozen=True, slots=True)
class Output:
    """Lines a worker printed (wire/output.py): worker --> node --> head --> each session
    that sent ShowOutput, which prints them as Ray does, ``(name pid=PID) line``."""

    node: str
    pid: int
    name: str                 # the call running as they were read: a function, an actor
    lines: tuple[str, ...]
    error: bool = False       # written to stderr


@dataclass(frozen=True, slots=True)
class Free:
    """The sender holds no more refs to these objects (``forced``: plait.free). A worker's
    session names the tasks it finished last (``after``): their results reach the head by
    another way (through the node) and may hold these objects, so the head lets go of
    them only once it has those results."""

    object_ids: tuple[str, ...]
    forced: bool = False
    after: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Bye:
    """Shut the cluster down (from the driver) / shutting down (to a worker)."""


# -- node <-> worker -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class WorkerReady:
    index: int
    pid: int


@dataclass(frozen=True, slots=True)
class WorkItem:
    """A task handed to a worker with the values of its dependencies."""

    task_id: str
    attempt: int
    function_id: str
    function_name: str
    payload: bytes
    deps: tuple[ObjectValue, ...]
    nested: tuple[tuple[str, ObjectValue], ...]
    outputs: tuple[str, ...]
    retry_exceptions: bytes = b""
    method: str = ""               # an actor's: "__init__" builds the instance, else a method
    slots: float = 1               # CPUs it holds (get_assigned_resources reads them)
    generator: str = ""            # "streaming" or "dynamic": each value Yielded as it comes
    concurrency: int = 1           # with "__init__": how many calls the actor runs at once
    resources: tuple[tuple[str, float], ...] = ()   # held beside CPUs (get_assigned_resources)
    gpu_ids: tuple[int, ...] = ()  # the GPUs it holds: CUDA_VISIBLE_DEVICES, get_gpu_ids()
    actor_name: str = ""           # with "__init__": options(name=...), for get_actor_name
    env_vars: tuple[tuple[str, str], ...] = ()   # runtime_env's (TaskSpec.env_vars)
    dep_ids: tuple[str, ...] = ()  # the objects ``deps`` are (a view kept names them)
    restarts: bool = False         # with "__init__": the actor restarts after a crash


@dataclass(frozen=True, slots=True)
class Blocked:
    """The worker's task waits for tasks it submitted: lend its slot to another worker."""

    index: int


@dataclass(frozen=True, slots=True)
class Unblocked:
    index: int


@dataclass(frozen=True, slots=True)
class Skip:
    """Tasks sent to a worker that blocked before starting them: others run them now.
    Each is named with its attempt: a task taken back from a worker may be queued on it
    again later (a new attempt), and that one must run."""

    tasks: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class HandBack:
    """The worker's task ``running`` (id, attempt) runs long: the tasks sent after it are
    to go to a free worker. The worker starts none of them before the node's Skip, which
    names those the node took back (all sent after ``running``)."""

    running: tuple[str, int]


@dataclass(frozen=True, slots=True)
class RunTasks:
    functions: tuple[tuple[str, bytes], ...]
    items: tuple[WorkItem, ...]


@dataclass(frozen=True, slots=True)
class TaskResult:
    task_id: str
    attempt: int
    outputs: tuple[tuple[str, ObjectValue], ...]
    seconds: float
    worker: int = -1
    start: float = 0.0             # wall clock (time.time) of the worker, for traces
    end: float = 0.0
    retryable: bool = False        # it raised an exception its retry_exceptions names
    exited: bool = False           # it ended its actor (exit_actor): no call runs after it
    kept: tuple[str, ...] = ()     # stored inputs whose zero-copy views outlive the task (an
                                   # actor's state): the node keeps them pinned (ViewsGone)


@dataclass(frozen=True, slots=True)
class ViewsGone:
    """The last zero-copy views of these objects, once reported kept, died in the worker."""

    object_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TasksDone:
    results: tuple[TaskResult, ...]


@dataclass(frozen=True, slots=True)
class Yielded:
    """The ``index``-th value a generator task yielded, stored as ``object_id`` (worker ->
    node: Inline or Located; node -> head and head -> the caller: Inline or Stored). A
    re-run yields its values again under the same ids; the head keeps the first of each."""

    task_id: str
    index: int
    object_id: str
    value: ObjectValue


# -- dashboard <-> head <-> node: live state (plait/dashboard) ---------------------------

@dataclass(frozen=True, slots=True)
class SnapshotRequest:
    """The cluster's state now, and the notices recorded since position ``since`` (client ->
    head); the head asks each node the same (``since`` unused there)."""

    request: int
    since: int = 0


@dataclass(frozen=True, slots=True)
class WorkerState:
    """One worker process as a node sees it."""

    index: int
    pid: int
    state: str                     # "idle", "busy", "blocked", "actor" or "starting"
    standin: bool                  # started to stand in for a blocked worker
    running: tuple[str, ...]       # functions of the tasks it holds
    rss: int


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    """A node's live state (node -> head), for the dashboard's Cluster and Run pages."""

    request: int
    node: str
    store: StoreSummary
    workers: tuple[WorkerState, ...]
    running: tuple[tuple[str, str], ...]       # (task, function) held by its workers
    cpu_seconds: float                         # user + system CPU of the node and workers
    rss: int                                   # resident bytes of the node and workers
    retried: tuple[tuple[str, int], ...] = ()  # function -> tasks retried after a crash


@dataclass(frozen=True, slots=True)
class FunctionTally:
    """Tasks of one function, counted by the head since it started."""

    function: str
    submitted: int
    done: int
    failed: int
    retried: int                   # moved off a dead node, or rebuilt after a loss


@dataclass(frozen=True, slots=True)
class Notice:
    """Something a person watching wants to know (newest first on the Events page)."""

    time: float                    # wall clock
    kind: str                      # "error", "retry", "rebuild", "node-dead", "lost"
    subject: str                   # the task, object or node it is about
    text: str
    error: bytes = b""             # a failed task's pickled error (read without unpickling)


@dataclass(frozen=True, slots=True)
class ActorRow:
    """An actor as the dashboard and ``list_actors`` list it: where it lives now and whether
    it is alive."""

    actor: str
    class_name: str
    name: str                      # its name if it has one ("" otherwise)
    node: str
    state: str                     # "starting", "alive" or "dead" (killed: dead at once)
    restarts: int
    detached: bool


@dataclass(frozen=True, slots=True)
class DeadNode:
    node: str
    time: float                    # wall clock when the head declared it dead
    reason: str
    info: NodeInfo


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The head's answer to a SnapshotRequest: live nodes (head first) with their snapshot
    and heartbeat age, dead nodes, tasks per function, bytes moved, the latest plan's task
    states, and the notices since the position asked (``notices_end`` is the next one)."""

    request: int
    session: str
    time: float
    nodes: tuple[NodeInfo, ...]
    heartbeat_age: tuple[float, ...]           # seconds since each node was last heard
    node_snapshots: tuple[NodeSnapshot, ...]
    dead: tuple[DeadNode, ...]
    functions: tuple[FunctionTally, ...]
    bytes_moved: int
    transfers: int
    plan_number: int                           # 0: nothing submitted yet
    plan_states: tuple[tuple[str, str], ...]   # (task, "waiting"|"running"|"done"|"failed")
    plan_moved: int                            # bytes moved since that plan was submitted
    notices: tuple[Notice, ...]
    notices_end: int
    objects: tuple[tuple[ObjectSummary, str, tuple[str, ...], tuple[str, ...]], ...] = ()
    # the largest objects: (summary, node, nodes with a copy, clients holding a ref)
    actors: tuple[ActorRow, ...] = ()          # live ones first, at most census.MAX_ACTORS


@dataclass(frozen=True, slots=True)
class PlanRequest:
    request: int


@dataclass(frozen=True, slots=True)
class PlanReport:
    """The latest submission: each task as (id, function, node, deps, outputs, follows),
    and the bytes its plan predicted would move."""

    request: int
    number: int
    tasks: tuple[tuple[str, str, str, tuple[str, ...], tuple[str, ...], str], ...]
    predicted_bytes: int


Message = (Hello | Welcome | NodeHello | NodeTable | Heartbeat | NodeLost | PutInline | Alloc
           | Allocated | Refused | Seal | Abandon | Pin | Pinned | Unpin | Expect | Hold
           | MemoryRequest
           | MemoryReport | ResourcesRequest | ResourcesReport | StateCheck | StateReport
           | ViewRequest | View | Submit | Assign
           | Cancel | Revoke | Revoked
           | Created | ReplicaAdded | ReplicaDropped | CopyLost | CorruptCopy | Delete | Fetch
           | FetchHeader
           | FetchDone | Subscribe | Ready | Handled | Unhandled | ShowOutput | Output | Free
           | TraceRequest | TraceReport
           | KillActor
           | ActorLookup | ActorFound | ActorNamesRequest | ActorNames | ActorExit | WorkerExited
           | CancelSubmitted | Bye
           | WorkerReady | Blocked | Unblocked
           | Skip | HandBack | RunTasks | TasksDone | ViewsGone | Yielded | SnapshotRequest
           | NodeSnapshot | Snapshot
           | PlanRequest | PlanReport | ObjectsRequest | ObjectsReport | ActorsRequest
           | ActorsReport)


def _positional_reduce(cls: type) -> None:
    """Pickle a slotted dataclass as ``cls(*fields)``: the default path calls
    dataclasses.fields() per object and dominated the head's time at 10,000 tasks/s."""
    names = cls.__slots__

    def __reduce__(self):
        return (cls, tuple([getattr(self, name) for name in names]))

    cls.__reduce__ = __reduce__


for _cls in list(globals().values()):
    if isinstance(_cls, type) and dataclasses.is_dataclass(_cls) and _cls.__module__ == __name__:
        _positional_reduce(_cls)


def encode(message: Message) -> bytes:
    return pickle.dumps(message, protocol=5)


# -- reading frames --------------------------------------------------------------------
#
# A pickle names the globals it calls (``os.system``, ``builtins.eval``, a class whose
# __reduce__ does harm) and plain unpickling imports and calls them while it reads. So a
# frame is read by an unpickler that can build the classes in ADMITTED and nothing else:
# this module's messages and values, and the plain-data classes they carry from the compiler
# and the store. Anything else, at any depth, is refused before it runs. Protocol 5 writes
# tuples, lists, dicts, sets, frozensets, bytes, str, int, float, bool and None as opcodes,
# never by a global's name, so no builtin needs admitting. User values (results, arguments,
# functions, exceptions) travel as opaque bytes inside messages and are unpickled where
# they are meant to be: by the worker that runs the task, the driver that gets the value.
# A dict lookup per class a frame names costs no more than pickle.loads' own import and
# getattr: measured here, 1.6 us to read a Free (1.4 before), 5.1 us a RunTasks of one
# item (6.5), 263 us a Submit of 100 tasks (292).

CARRIED = (ClusterView, NodeView, ObjectInfo, StoreSummary, ObjectSummary)


def _admitted() -> dict[tuple[str, str], type]:
    ours = [c for c in globals().values() if isinstance(c, type)
            and dataclasses.is_dataclass(c) and c.__module__ == __name__]
    return {(c.__module__, c.__qualname__): c for c in (*ours, *CARRIED)}


ADMITTED = MappingProxyType(_admitted())


def _wire_version() -> str:
    """A digest of every message's name and fields. Peers whose messages differ in any of
    them misread each other (a field one lacks is missing, not defaulted, once read), so
    a node or client whose Hello names another version is refused there, with a reason,
    rather than admitted to fail later (a cluster's hosts must run one plait)."""
    shape = sorted((kind.__qualname__, tuple(f.name for f in dataclasses.fields(kind)))
                   for kind in ADMITTED.values())
    return hashlib.sha256(repr(shape).encode()).hexdigest()[:12]


WIRE_VERSION = _wire_version()


def wire_of(hello: Hello | NodeHello) -> str:
    """The version a Hello names ("": a plait from before versions were named)."""
    return getattr(hello, "wire", "")


def wire_mismatch(who: str, hello: Hello | NodeHello) -> str | None:
    """Why ``who`` may not join, if its Hello names other messages than ours; else None."""
    theirs = wire_of(hello)
    if theirs == WIRE_VERSION:
        return None
    return (f"{who} speaks plait's messages of version {theirs or 'unknown (an older plait)'}"
            f", the head those of version {WIRE_VERSION}: run the same plait on every host "
            f"of a cluster")


class MalformedMessage(ValueError):
    """A frame that is not a plait message, or names anything but the ADMITTED classes."""


class _MessageUnpickler(pickle.Unpickler):
    """An unpickler that finds only the ADMITTED classes (the ``find_class`` recipe of the
    pickle docs, "Restricting Globals")."""

    def find_class(self, module: str, name: str) -> type:
        try:
            return ADMITTED[module, name]
        except KeyError:
            raise pickle.UnpicklingError(f"a frame may not name {module}.{name}") from None


def decode(frame: bytes | memoryview) -> Message:
    """The message in ``frame``; MalformedMessage if it is anything else (nothing it names
    outside ADMITTED is imported or called)."""
    try:
        message = _MessageUnpickler(io.BytesIO(frame)).load()
    except Exception as error:
        raise MalformedMessage(f"undecodable frame: {error!r}") from None
    if not dataclasses.is_dataclass(message) or type(message).__module__ != __name__:
        raise MalformedMessage(f"not a plait message: {type(message).__name__}")
    return message
