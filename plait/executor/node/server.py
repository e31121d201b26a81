"""A node process: sockets and the one loop that feeds the Node (and, on node-0, the Head).

    drivers, other nodes --ROUTER client (head only)--> Head.handle(FromClient / FromNode)
    the head ------------DEALER (other nodes)--------> Node.handle(FromHead)
    workers -------------ROUTER workers--------------> Node.handle(FromWorker)
    peers ---------------ROUTER transfer, DEALERs----> Transfers (they report to the Node)
    worker / node / driver pidfds -------------------> WorkerGone / NodeGone / ClientGone
    the clock, every turn ---------------------------> Tick, then Dispatch and Flush

The Head and the Node only decide; what they return (send, start or kill a worker, remove
a dead node's files) is carried out here, in ``carry_out`` (wire/instructions.py).

It stops on Bye, when its parent (the driver that started it) disappears, when the head
stops answering, or on SIGTERM, and always removes its arena, spill files and sockets.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import sys
import time

import zmq

from plait.executor.head.head import Head
from plait.executor.node.node import WORKER_STOP_GRACE, Node
from plait.executor.node.node_zero import NodeZero
from plait.executor.node.resources import Ledger
from plait.executor.node.snapshot import rss_of
from plait.executor.node.transfers import PullOwner, Transfers
from plait.executor.node.workers import (Forker, OsProcesses, Processes, WorkerHandle,
                                         fork_worker, stop_all)
from plait.executor.wire import killpoints
from plait.executor.wire import protocol as p
from plait.executor.wire.config import (HEARTBEAT_SECONDS, LOCAL_RECONNECT_MS,
                                        NODE_TIMEOUT_SECONDS, NodeConfig, WorkerConfig,
                                        descendants, remove_paths)
from plait.executor.wire.bulk import transfer_frames
from plait.executor.wire.fetch import IO_THREADS
from plait.executor.wire.hostid import host_id
from plait.executor.wire.instructions import (ClientGone, Dispatch, Event, Flush, FromClient,
                                              FromHead, FromNode, FromWorker, Instruction,
                                              InterruptWorker, KillWorker, NodeGone,
                                              StartWorker, Tick,
                                              ToClient, ToHead, ToNode, ToWorker, Unlink,
                                              WorkerGone, WorkerStarted)
from plait.executor.wire.malloc import keep_chunk_buffers, malloc_usage, return_freed_memory
from plait.executor.wire.output import show
from plait.executor.wire.security import (ClusterKey, check_bind, load_key, secure_client,
                                          secure_server, start_authenticator)
from plait.store.arena import Arena
from plait.store.spill import Spiller
from plait.store.store import ObjectStore

log = logging.getLogger("plait.node")

POLL_MS = 100
PUMP_MS = 1          # the loop's turn while sealed chunks wait for room (transfers.pump)
PARENT_CHECK_SECONDS = 0.5
Machine = Head | Node
# The server's first-generation threshold (CPython's default: 700). On 81,000 no-op tasks
# the server processes spent 0.33-0.48 s in the collector at 700, 0.10-0.17 s at this.
YOUNG_OBJECTS = 20_000


class Server:
    """Owns the sockets of one node process and runs its loop."""

    def __init__(self, config: NodeConfig, arena: Arena, workers: list[WorkerHandle],
                 processes: Processes) -> None:
        self.config = config
        self.ctx = zmq.Context(io_threads=IO_THREADS)    # transfer streams on several cores
        self.key = load_key(config.key_file) if config.key_file else None
        self.auth = start_authenticator(self.ctx, self.key) if self.key else None
        for address in [config.transfer_address] + [config.client_address] * config.is_head:
            _check_tcp(address, self.key)
        self.poller = zmq.Poller()
        self.worker_sock = self.bind(zmq.ROUTER, config.worker_address)
        spiller = Spiller(config.spill_dir, killpoints.hook("mid-spill", config.node)) \
            if config.spill_dir else None
        self.processes = processes
        self.node = Node(config.node, arena, spiller, workers, config.worker_address,
                         self.make_transfers, processes)
        self.node.worker_settings = worker_settings(config)
        self.node.worker_memory_limit = config.worker_memory_limit
        self.store, self.transfers = self.node.store, self.node.transfers
        transfer_address = self.transfers.server.getsockopt_string(zmq.LAST_ENDPOINT)
        offered = offered_resources(config.resources, arena.capacity,
                                    p.host_of(transfer_address), config.is_head)
        self.node.ledger = Ledger(offered)
        self.info = p.NodeInfo(config.node, transfer_address, os.getpid(), config.is_head,
                               config.num_workers, arena.name, arena.capacity, host_id(),
                               offered)
        self.poller.register(self.transfers.server, zmq.POLLIN)
        if self.transfers.receiver is not None:   # runs read over TCP streams end here
            self.poller.register(self.transfers.receiver.fd, zmq.POLLIN)
        self.linked: set[zmq.Socket] = set()
        self.worker_fds = {w.pidfd for w in workers}
        self.node_fds: dict[int, str] = {}
        self.client_fds: dict[int, bytes] = {}       # pidfd of a driver on this host
        for worker in workers:
            self.poller.register(worker.pidfd, zmq.POLLIN)
        self.head: Head | None = None
        self.zero: NodeZero | None = None
        self.node_identities: dict[bytes, str] = {}
        self.identity_of: dict[str, bytes] = {}     # and back: a send finds its node in O(1)
        self.encoded: tuple[p.Message | None, bytes] = (None, b"")   # the last one sent on
        self.joined = False
        self.last_beat = self.head_seen = time.monotonic()
        if config.is_head:
            self.client = self.bind(zmq.ROUTER, config.client_address, secure=True)
            self.head = Head(config.session, self.node, self.info)
            self.zero = NodeZero(self.head, self.node)
        else:
            self.client = self.ctx.socket(zmq.DEALER)
            self.secure(self.client, False)
            self.client.setsockopt(zmq.LINGER, 1000)
            if config.head_address.startswith("ipc://"):     # the head starts beside us
                self.client.setsockopt(zmq.RECONNECT_IVL, LOCAL_RECONNECT_MS)
            self.client.connect(config.head_address)
            self.poller.register(self.client, zmq.POLLIN)

    def make_transfers(self, store: ObjectStore, owner: PullOwner) -> Transfers:
        """The node's transfers (the Node makes them, and is the owner they report to)."""
        return Transfers(self.config.node, host_id(), store, self.ctx,
                         self.config.transfer_address, owner, transfer_frames(self.key),
                         keep_chunk_buffers)

    def bind(self, kind: int, address: str, secure: bool = False) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        if secure:
            self.secure(sock, True)
        sock.setsockopt(zmq.LINGER, 0)
        # A ROUTER silently drops what it would queue past its high-water mark (1,000
        # messages by default) for a slow peer: a node or worker stopped for a second
        # while many Assigns or Readys go its way would lose some, and wait for them for
        # good. Control messages are small; queue them all.
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.bind(address)
        self.poller.register(sock, zmq.POLLIN)
        return sock

    def secure(self, sock: zmq.Socket, server: bool) -> None:
        """CurveZMQ with the cluster key, when there is one (TCP clusters)."""
        if self.key is not None:
            (secure_server if server else secure_client)(sock, self.key)

    # -- carrying out ------------------------------------------------------------------------

    def feed(self, machine: Machine, event: Event) -> None:
        """Hand an event to the Head or the Node and carry out what it decided."""
        if self.zero is not None:
            self.carry_out(self.zero.handle(machine, event))
        else:
            self.carry_out(machine.handle(event))

    def node_reported(self) -> None:
        """Carry out what the node decided outside an event (its transfers report to it)."""
        decided = self.node.take()
        self.carry_out(self.zero.route(decided) if self.zero is not None else decided)

    def carry_out(self, instructions: list[Instruction]) -> None:
        """Carry out the instructions in order (on node-0, NodeZero has already handed the
        head's messages for its node, and the node's for the head, over in process)."""
        for instruction in instructions:
            match instruction:
                case ToWorker(identity, message):
                    self.to_worker(identity, message)
                case ToClient(peer, message):
                    self.to_client(peer, message)
                case ToNode(node, message):
                    self.to_node(node, message)
                case ToHead(message):
                    self.up(message)
                case StartWorker(config, extra, actor):
                    worker = self.processes.start(config)
                    self.watch_worker(worker.pidfd)
                    self.feed(self.node, WorkerStarted(worker, extra, actor))
                case KillWorker(identity):
                    if identity in self.node.workers:
                        self.processes.kill(self.node.workers[identity])
                case InterruptWorker(identity):
                    if identity in self.node.workers:
                        self.processes.interrupt(self.node.workers[identity])
                case Unlink(paths):
                    remove_paths(paths)

    def up(self, message: p.Message) -> None:
        """From a node to the head, through its socket (node-0's go in process)."""
        self.client.send(p.encode(message), copy=False)

    def to_client(self, peer: tuple[str, bytes], message: p.Message) -> None:
        self.client.send_multipart([peer[1], p.encode(message)], copy=False)

    def to_node(self, node: str, message: p.Message) -> None:
        """Send to a node; one message sent to every node (the node table, a NodeLost) is
        encoded once, not once per node: at 1,000 nodes that was most of a join's cost."""
        identity = self.identity_of.get(node)
        if identity is None:
            return
        if self.encoded[0] is not message:
            self.encoded = (message, p.encode(message))
        self.client.send_multipart([identity, self.encoded[1]], copy=False)

    def to_worker(self, identity: bytes, message: p.Message) -> None:
        self.worker_sock.send_multipart([identity, p.encode(message)], copy=False)

    def watch_worker(self, pidfd: int) -> None:
        self.worker_fds.add(pidfd)
        self.poller.register(pidfd, zmq.POLLIN)

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> None:
        checked = time.monotonic()
        while not self.node.stopping:
            for source, _ in self.poller.poll(PUMP_MS if self.transfers.sends else POLL_MS):
                self.on_event(source)
            self.transfers.pump()
            self.register_links()
            now = time.monotonic()
            self.feed(self.node, Tick(now))
            if self.head is not None:
                self.settle(now)
            else:
                self.feed(self.node, Dispatch())
                self.keep_in_touch(now)
            if now - checked > PARENT_CHECK_SECONDS:
                checked = now
                if self.config.parent_pid and os.getppid() != self.config.parent_pid:
                    self.node.stopping = True

    def dump_state(self) -> None:
        """``kill -USR1 <node pid>``: what this node (and head) holds, to stderr, for a
        cluster that seems stuck."""
        node = self.node
        lines = [f"== {node.id}: {len(node.table.tasks)} tasks, {len(node.table.ready)} ready, "
                 f"asked {sorted(node.asked)[:20]}"]
        for task_id, state in list(node.table.tasks.items())[:50]:
            lines.append(f"  task {task_id} attempt {state.attempt} waiting "
                         f"{sorted(state.waiting)} riding {state.riding}")
        for w in node.workers.values():
            lines.append(f"  worker {w.index} pid {w.pid} ready {w.ready} blocked {w.blocked} "
                         f"extra {w.extra} parked {bool(w.parked_since)} retiring {w.retiring} "
                         f"actor {w.actor!r} inflight {list(w.inflight)}")
        for oid, stored in list(node.store.objects.items())[:50]:
            lines.append(f"  object {oid} {stored.nbytes} B pins {stored.pins} "
                         f"views {node.client_pins[oid]} sealed {stored.sealed} "
                         f"in memory {stored.offset is not None}")
        lines.append(f"  task pins {dict(list(node.task_pins.items())[:20])} "
                     f"allocs waiting {[m.object_id for _, m in node.alloc_waiting]}")
        lines.append(memory_line())
        if self.head is not None:
            lines.append(f"  head: assigned {sorted(self.head.assigned)[:50]}")
            pending = [oid for oid, e in self.head.directory.entries.items() if e.value is None]
            lines.append(f"  head: pending objects {sorted(pending)[:50]}")
        print("\n".join(lines), file=sys.stderr, flush=True)

    def settle(self, now: float) -> None:
        """The head's turn, then flush its notes and dispatch until neither makes more work:
        a note to the local node (an input is ready) can make a task runnable at once."""
        assert self.head is not None
        self.head.behind = bool(self.client.get(zmq.EVENTS) & zmq.POLLIN)
        self.feed(self.head, Tick(now))
        self.feed(self.node, Dispatch())
        while self.head.has_notes:
            self.feed(self.head, Flush())
            self.feed(self.node, Dispatch())

    def on_event(self, source: zmq.Socket | int) -> None:
        if source is self.client:
            self.drain_client()
        elif source is self.worker_sock:
            self.drain(self.worker_sock, self.from_worker)
        elif source is self.transfers.server:
            self.transfers.on_server()
            self.node_reported()
        elif self.transfers.receiver is not None and source == self.transfers.receiver.fd:
            self.transfers.on_streams()
            self.node_reported()
        elif isinstance(source, zmq.Socket):
            link = next(k for k, s in self.transfers.links.items() if s is source)
            self.transfers.on_link(link)
            self.node_reported()
        elif source in self.worker_fds:
            self.worker_fds.discard(source)
            self.poller.unregister(source)
            self.drain(self.worker_sock, self.from_worker)   # its last results count
            self.feed(self.node, WorkerGone(source))
        elif source in self.client_fds:
            self.poller.unregister(source)
            os.close(source)
            assert self.head is not None
            self.feed(self.head, ClientGone((None, self.client_fds.pop(source))))
        elif source in self.node_fds:
            self.poller.unregister(source)
            os.close(source)
            assert self.head is not None
            self.feed(self.head, NodeGone(self.node_fds.pop(source), "its process exited"))

    def from_worker(self, identity: bytes, message: p.Message) -> None:
        if isinstance(message, p.Output) and not self.config.parent_pid:
            show(message)                # a CLI node's log keeps its workers' lines too
        self.feed(self.node, FromWorker(identity, message))

    def drain(self, sock: zmq.Socket, handle) -> None:
        for _ in range(1000):      # bounded, so one busy peer cannot starve the rest
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if len(frames) != 2:
                log.warning("%s: dropped a message of %d frames", self.config.node, len(frames))
                continue
            identity, frame = frames
            self.safely(lambda i, f: handle(i, p.decode(f)), identity.bytes, frame.buffer)

    def drain_client(self) -> None:
        if self.head is None:                   # a node: messages from the head
            for _ in range(1000):
                try:
                    frame = self.client.recv(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    return
                self.head_seen = time.monotonic()
                self.safely(lambda _, f: self.feed(self.node, FromHead(p.decode(f))),
                            b"head", frame.buffer)
            return
        self.drain(self.client, self.from_client)

    def from_client(self, identity: bytes, message: p.Message) -> None:
        assert self.head is not None
        if isinstance(message, p.NodeHello):
            self.node_identities[identity] = message.info.id
            self.identity_of[message.info.id] = identity
            if message.info.host == self.info.host:
                self.watch_node(message.info)
        if isinstance(message, p.Hello) and message.host == self.info.host:
            self.watch_client(identity, message.pid)
        node = self.node_identities.get(identity)
        if node is not None:
            self.feed(self.head, FromNode(node, message))
        else:
            self.feed(self.head, FromClient((None, identity), message))

    def watch_client(self, identity: bytes, pid: int) -> None:
        """A driver on this host: when its process ends, what it held is released (a
        killed driver must not leak into a cluster that outlives it)."""
        if pid == os.getpid() or identity in self.client_fds.values():
            return
        try:
            fd = os.pidfd_open(pid)
        except (ProcessLookupError, OSError):
            return
        self.client_fds[fd] = identity
        self.poller.register(fd, zmq.POLLIN)

    def watch_node(self, info: p.NodeInfo) -> None:
        """A node on this host: its exit is seen at once through a pidfd, not a timeout."""
        try:
            fd = os.pidfd_open(info.pid)
        except (ProcessLookupError, OSError):
            return
        self.node_fds[fd] = info.id
        self.poller.register(fd, zmq.POLLIN)

    def safely(self, handle, identity: bytes, message: p.Message | memoryview) -> None:
        try:
            handle(identity, message)
        except p.MalformedMessage as error:
            log.warning("%s: dropped a malformed message: %s", self.config.node, error)
        except Exception:       # one bad message must not take the node down
            log.exception("%s failed handling %s", self.config.node, type(message).__name__)
            request = getattr(message, "request", None)
            if request is not None and self.head is not None and not isinstance(
                    message, p.Pinned | p.MemoryReport):
                from plait.errors import ClusterError

                error = ClusterError(f"{self.config.node} failed handling "
                                     f"{type(message).__name__}; see its log")
                self.to_client((None, identity), p.Refused(request, _pickle(error)))

    def register_links(self) -> None:
        for sock in self.transfers.links.values():
            if sock not in self.linked:
                self.linked.add(sock)
                self.poller.register(sock, zmq.POLLIN)
        for sock in list(self.linked):
            if sock.closed:
                self.linked.discard(sock)
                self.poller.unregister(sock)

    def keep_in_touch(self, now: float) -> None:
        """A node joins once its workers are up, then heartbeats; a silent head stops it."""
        if not self.joined and self.node.ready:
            self.joined = True
            self.up(p.NodeHello(self.info))
            self.head_seen = now
        if self.joined and now - self.last_beat >= HEARTBEAT_SECONDS:
            self.last_beat = now
            allocator = self.store.allocator
            self.up(p.Heartbeat(self.config.node, allocator.capacity - allocator.used))
        if self.joined and now - self.head_seen > NODE_TIMEOUT_SECONDS:
            log.warning("%s: the head stopped answering; stopping", self.config.node)
            self.node.stopping = True

    # -- shutdown ----------------------------------------------------------------------------

    def close(self) -> None:
        self.node.stop_workers()
        self.node_reported()
        self.processes.stop(list(self.node.workers.values()), WORKER_STOP_GRACE)
        if self.head is not None:
            self.feed(self.head, Flush())
        self.transfers.close()
        self.worker_sock.close(linger=0)
        self.client.close(linger=500)
        if self.auth is not None:
            self.auth.stop()
        self.ctx.term()
        self.store.close()
        self.store.arena.unlink()
        if self.config.is_head or not self.config.parent_pid:
            # the head's, or a CLI node's own; a driver's other nodes share the head's run
            # dir, where nodes that join later and replacement workers find their sockets
            remove_paths([self.config.run_dir])


def memory_line() -> str:
    """The process's memory as the USR1 dump shows it: resident bytes, Python's blocks and
    glibc's heap, so that growth with flat Python objects can be told apart (malloc.py)."""
    usage = malloc_usage()
    return (f"  memory: RSS {rss_of(os.getpid()) / (1 << 20):.1f} MiB, "
            f"{sys.getallocatedblocks():,} Python blocks, "
            f"{usage.describe() if usage else 'no malloc figures'}")


def _check_tcp(address: str, key: ClusterKey | None) -> None:
    if address.startswith("tcp://"):
        check_bind(p.host_of(address), key)


def _pickle(error: Exception) -> bytes:
    import pickle

    return pickle.dumps(error)


def offered_resources(asked: dict[str, float], store_capacity: int, ip: str = "",
                      is_head: bool = False) -> tuple[tuple[str, float], ...]:
    """What the node offers beside CPUs: what it was started with, and Ray's ``memory``
    (unless given): the memory this host has available now, less the store's; and, as
    every Ray node does, one unit of ``node:<its IP>`` (and the head ``node:__internal_
    head__``), which a task asks a sliver of to run there (``resources={f"node:{ip}":
    0.01}``, with ``plait.util.get_node_ip_address()``)."""
    offered = {f"node:{ip}": 1.0} if ip else {}
    if is_head:
        offered[HEAD_RESOURCE] = 1.0
    offered.update(asked)
    if "memory" not in offered:
        offered["memory"] = float(max(0, _available_memory() - store_capacity))
    return tuple(sorted((name, float(amount)) for name, amount in offered.items() if amount))


HEAD_RESOURCE = "node:__internal_head__"      # Ray's name of the head's own resource


def _available_memory() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def worker_settings(config: NodeConfig) -> dict[str, str]:
    """What a worker needs to reach the head itself (tasks that submit tasks)."""
    head = config.client_address if config.is_head else config.head_address
    return {"head_address": head, "key_file": config.key_file}


def serve(config: NodeConfig) -> None:
    """Create the arena, fork the workers, then run the loop until told to stop."""
    arena = Arena.create(config.arena_name, config.store_capacity)
    workers: list[WorkerHandle] = []
    server = None
    forker = None
    try:
        for index in range(config.num_workers):     # fork before any thread exists
            workers.append(fork_worker(WorkerConfig(index, config.node, config.worker_address,
                                                    arena.name, os.getpid(),
                                                    **worker_settings(config))))
        forker = Forker.start()
        try:
            server = Server(config, arena, workers, OsProcesses(forker))
        except zmq.ZMQError:
            if os.path.isdir(config.run_dir):
                raise
            log.warning("%s: the cluster's run directory %s is gone (its driver shut it "
                        "down while this node was starting); stopping", config.node,
                        config.run_dir)
            return
        signal.signal(signal.SIGTERM, lambda *_: setattr(server.node, "stopping", True))
        signal.signal(signal.SIGUSR1, lambda *_: server.dump_state())
        # All made so far (modules, the node's and the head's own tables) lives as long as
        # the process: frozen, no full collection walks it again (node-0 on 81,000 no-op
        # tasks: a full collection took 25 ms before, 4 ms after). And the youngest
        # generation is collected past YOUNG_OBJECTS new objects, not CPython's 700: most
        # of a message's objects are gone by then, so fewer are walked at all.
        gc.freeze()
        gc.set_threshold(YOUNG_OBJECTS, *gc.get_threshold()[1:])
        server.run()
    finally:
        if server is not None:
            server.close()
        else:
            stop_all(workers, 0)
            arena.unlink()
        if forker is not None:
            forker.stop()
        kill_left_behind()


def kill_left_behind() -> None:
    """Processes the node's tasks started and left running (a subprocess, a fork, their
    children) go with the node, as Ray kills a worker's children when it exits: the node
    is their subreaper (Forker.start), so they are still found below it once their
    workers are gone."""
    for pid in descendants(os.getpid()):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def main() -> None:
    """``python -m plait.executor.node.server CONFIG_JSON``: started by a driver or the CLI."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C in the driver must not kill us
    return_freed_memory()                     # (forked workers inherit it)
    logging.basicConfig(level=os.environ.get("PLAIT_LOG", "WARNING").upper(),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    import numpy  # noqa: F401  (imported once here so forked workers start with it)

    import plait.executor.worker  # noqa: F401  (... and with their own module)

    config = NodeConfig(**json.loads(sys.argv[1]))
    profile = os.environ.get("PLAIT_PROFILE")     # a directory: write NODE.prof there
    if not profile:
        serve(config)
        return
    import cProfile

    cProfile.runctx("serve(config)", globals(), {"config": config},
                    os.path.join(profile, f"{config.node}.prof"))


if __name__ == "__main__":
    main()
