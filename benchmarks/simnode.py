"""Simulated nodes: many per process, speaking the real protocol to the real head.

    python benchmarks/simnode.py CONFIG_JSON      (started by benchmarks/scale.py)

Each simulated node has its own DEALER socket to the head's client address, joins with a
NodeHello like a real node, heartbeats every HEARTBEAT_SECONDS with its store's free
bytes, and answers what a node must answer (Subscribe for inputs it lacks, TasksDone,
Revoked, StateReport, a cancelled task's result). It runs no worker: a task assigned to it
completes as soon as its inputs are ready, or ``duration`` seconds later, or never on a
node listed in ``hold`` (tasks kept "in flight" for the cancel and node-loss figures). Its
results have sizes drawn, in turn, from ``sizes``: below INLINE_THRESHOLD they travel
inline (a real serialised bytes value, so a driver's ``get`` returns it), above they are
reported ``Stored`` on the node (the head's books see them; nothing is allocated, so a
driver must not ``get`` those).

    scale.py ---ROUTER control (commands, stats)---> this process (one DEALER)
    the head ---ROUTER client---> one DEALER per simulated node

A process stops on "stop", on Bye from the head, or when its parent is gone.
"""

from __future__ import annotations

import heapq
import json
import os
import pickle
import sys
import time
from collections import deque

import zmq

from plait.errors import TaskCancelledError
from plait.executor.wire import protocol as p
from plait.executor.wire.config import HEARTBEAT_SECONDS
from plait.executor.wire.hostid import host_id
from plait.store.serialization import INLINE_THRESHOLD, serialize

POLL_MS = 20


class SimNode:
    """One simulated node's state: tasks waiting for inputs, the inputs it knows."""

    def __init__(self, sim: Simulator, node_id: str, sock: zmq.Socket) -> None:
        self.sim, self.id, self.sock = sim, node_id, sock
        self.known: set[str] = set()
        self.waiting: dict[str, set[str]] = {}          # task -> inputs not ready yet
        self.readers: dict[str, list[str]] = {}         # input -> tasks waiting for it
        self.specs: dict[str, p.TaskSpec] = {}          # tasks held (not done yet)
        self.asked: set[str] = set()
        self.done: list[p.TaskResult] = []
        self.beats: deque[float] = deque()              # heartbeats not answered yet
        self.lost = False

    def send(self, message: p.Message) -> None:
        self.sock.send(p.encode(message), copy=False)

    def on_message(self, message: p.Message) -> None:
        handler = getattr(self, f"on_{type(message).__name__}", None)
        if handler is not None:
            handler(message)

    def on_Assign(self, message: p.Assign) -> None:
        self.sim.stats["assigns"] += 1
        if not self.sim.stats["first_assign"]:
            self.sim.stats["first_assign"] = time.time()
        wanted = []
        for spec in message.tasks:
            self.specs[spec.id] = spec
            missing = {oid for oid in spec.deps + spec.nested if oid not in self.known}
            if not missing:
                self.start(spec)
                continue
            self.waiting[spec.id] = missing
            for oid in missing:
                self.readers.setdefault(oid, []).append(spec.id)
                if oid not in self.asked:
                    self.asked.add(oid)
                    wanted.append(oid)
        if wanted:
            self.send(p.Subscribe(tuple(wanted)))

    def on_Ready(self, message: p.Ready) -> None:
        for oid, _ in message.values:
            self.known.add(oid)
            self.asked.discard(oid)
            for task_id in self.readers.pop(oid, ()):
                missing = self.waiting.get(task_id)
                if missing is None:
                    continue
                missing.discard(oid)
                if not missing:
                    del self.waiting[task_id]
                    self.start(self.specs[task_id])

    def start(self, spec: p.TaskSpec) -> None:
        if self.id in self.sim.hold:
            return                                       # in flight until cancelled or lost
        if self.sim.duration <= 0:
            self.finish(spec)
        else:
            heapq.heappush(self.sim.timers, (time.monotonic() + self.sim.duration,
                                             next(self.sim.order), self, spec.id))

    def finish(self, spec: p.TaskSpec) -> None:
        if self.specs.pop(spec.id, None) is None:
            return                                       # cancelled or revoked meanwhile
        outputs = tuple((oid, self.sim.next_value(self.id)) for oid in spec.outputs)
        self.done.append(p.TaskResult(spec.id, 0, outputs, 0.0))

    def flush(self) -> None:
        if self.done:
            self.sim.stats["done"] += len(self.done)
            self.send(p.TasksDone(tuple(self.done)))
            self.done = []

    def forget(self, task_id: str) -> bool:
        spec = self.specs.pop(task_id, None)
        self.waiting.pop(task_id, None)
        return spec is not None

    def on_Cancel(self, message: p.Cancel) -> None:
        """With ``force`` the head has failed the task already; without, it waits for the
        result, which a real node gives at once for a task no worker runs (none runs here)."""
        for task_id in message.object_ids:
            spec = self.specs.get(task_id)
            if self.forget(task_id) and not message.force and spec is not None:
                error = p.Failed(pickle.dumps(TaskCancelledError(task_id)))
                outputs = tuple((oid, error) for oid in spec.outputs)
                self.done.append(p.TaskResult(task_id, 0, outputs, 0.0))

    def on_Revoke(self, message: p.Revoke) -> None:
        self.send(p.Revoked(message.task_id, self.forget(message.task_id)))

    def on_Delete(self, message: p.Delete) -> None:
        self.known.difference_update(message.object_ids)

    def on_StateCheck(self, message: p.StateCheck) -> None:
        self.send(p.StateReport(message.request, (), tuple(sorted(self.specs))))

    def on_Heartbeat(self, message: p.Heartbeat) -> None:
        """The head's answer: the oldest heartbeat not answered waited this long."""
        if self.beats:
            wait = time.monotonic() - self.beats.popleft()
            self.sim.stats["beat_max"] = max(self.sim.stats["beat_max"], wait)

    def on_NodeLost(self, message: p.NodeLost) -> None:
        if message.node == self.id:
            self.lost = True
            self.sim.stats["declared_dead"] += 1

    def on_Bye(self, message: p.Bye) -> None:
        self.sim.running = False

    def beat(self, now: float) -> None:
        self.beats.append(now)
        self.send(p.Heartbeat(self.id, self.sim.store_free))


class Simulator:
    """The process: its nodes' sockets, one poll loop, the control channel to scale.py."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self.ctx = zmq.Context()
        self.ctx.set(zmq.MAX_SOCKETS, 4096)
        self.control = self.ctx.socket(zmq.DEALER)
        self.control.setsockopt(zmq.LINGER, 0)
        self.control.connect(config["control"])
        self.duration = float(config.get("duration", 0.0))
        self.hold: set[str] = set(config.get("hold", ()))
        self.store_free = int(config.get("store_capacity", 1 << 34))
        self.draw_from(config.get("sizes") or [8])
        self.timers: list[tuple[float, int, SimNode, str]] = []
        self.order = iter(range(1 << 62))
        self.stats = {"assigns": 0, "done": 0, "first_assign": 0.0, "beat_max": 0.0,
                      "declared_dead": 0, "turn_max": 0.0}
        self.running = True
        self.nodes: dict[zmq.Socket, SimNode] = {}
        self.poller = zmq.Poller()
        self.poller.register(self.control, zmq.POLLIN)
        host = host_id()
        for node_id in config["nodes"]:
            sock = self.ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(config["head"])
            self.poller.register(sock, zmq.POLLIN)
            node = self.nodes[sock] = SimNode(self, node_id, sock)
            info = p.NodeInfo(node_id, "ipc:///nonexistent", os.getpid(), False,
                              int(config.get("workers", 4)), f"plait-sim-absent-{node_id}",
                              self.store_free, host)
            node.send(p.NodeHello(info))
        self.control.send_json({"hello": config["name"]})

    def draw_from(self, sizes: list[int]) -> None:
        """Result sizes, used in turn: inline values below the threshold, else Stored."""
        self.values = [p.Inline(serialize(b"x" * size).to_bytes()) if size < INLINE_THRESHOLD
                       else size for size in sizes]
        self.drawn = 0

    def next_value(self, node_id: str) -> p.ObjectValue:
        value = self.values[self.drawn % len(self.values)]
        self.drawn += 1
        return value if isinstance(value, p.Inline) else p.Stored(node_id, value)

    def run(self) -> None:
        parent = os.getppid()
        last_beat = 0.0
        turn = time.monotonic()
        while self.running:
            for sock, _ in self.poller.poll(POLL_MS):
                if sock is self.control:
                    self.on_control(self.control.recv_json())
                else:
                    self.drain(self.nodes[sock])
            now = time.monotonic()
            self.stats["turn_max"] = max(self.stats["turn_max"], now - turn)
            turn = now
            while self.timers and self.timers[0][0] <= now:
                _, _, node, task_id = heapq.heappop(self.timers)
                spec = node.specs.get(task_id)
                if spec is not None:
                    node.finish(spec)
            for node in self.nodes.values():
                node.flush()
            if now - last_beat >= HEARTBEAT_SECONDS:
                last_beat = now
                for node in self.nodes.values():
                    if not node.lost:
                        node.beat(now)
                if os.getppid() != parent:
                    self.running = False

    def drain(self, node: SimNode) -> None:
        for _ in range(1000):
            try:
                frame = node.sock.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            node.on_message(p.decode(frame.buffer))

    def on_control(self, command: dict) -> None:
        kind = command["cmd"]
        if kind == "set":
            self.duration = float(command.get("duration", self.duration))
            self.hold = set(command.get("hold", self.hold))
            if "sizes" in command:
                self.draw_from(command["sizes"])
        elif kind == "reset":
            self.stats.update(assigns=0, done=0, first_assign=0.0)
        elif kind == "stop":
            self.running = False
        held = sum(len(n.specs) for n in self.nodes.values())
        self.control.send_json({"name": self.config["name"], "held": held, **self.stats})

    def close(self) -> None:
        for sock in self.nodes:
            sock.close(0)
        self.control.close(0)
        self.ctx.term()


def main() -> None:
    simulator = Simulator(json.loads(sys.argv[1]))
    try:
        simulator.run()
    finally:
        simulator.close()


if __name__ == "__main__":
    main()
