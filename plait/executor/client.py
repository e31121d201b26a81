"""The driver's side of the cluster: start the embedded node process, talk to it, stop it.

``LocalCluster`` owns the node process and its run directory; ``Connection`` is one DEALER
socket to the head with a receive that always has a timeout and notices a dead head.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import zmq

from plait.errors import ClusterError, HeadUnavailableError
from plait.executor import protocol as p
from plait.executor.server import NodeConfig, ipc_addresses
from plait.store.arena import SEGMENT_PREFIX, SHM_DIR

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
LIVENESS_SLICE_MS = 100
# Tasks run one per worker slot; their numeric libraries should not each start a thread
# per core on top (Ray sets the same defaults for its workers).
_THREAD_LIMITS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass
class LocalCluster:
    """The node processes (head first, each with its workers) started from this driver."""

    session: str
    run_dir: str
    configs: list[NodeConfig]
    processes: list[subprocess.Popen]

    @classmethod
    def start(cls, session: str, num_nodes: int, num_workers: int, store_capacity: int,
              spill_dir: str | None) -> LocalCluster:
        """Start node-0 (the head) and nodes 1..n-1; ``spill_dir`` None turns spilling off."""
        run_dir = tempfile.mkdtemp(prefix=f"plait-{session}-")
        head_address = ipc_addresses(run_dir, "node-0")["client_address"]
        configs = []
        for index in range(num_nodes):
            node = f"node-{index}"
            spill = None
            if spill_dir is not None:
                spill = os.path.join(os.path.abspath(spill_dir or tempfile.gettempdir()),
                                     f"plait-{session}-{node}-spill")
            configs.append(NodeConfig(
                session, node, num_workers, store_capacity, run_dir, os.getpid(), spill,
                head_address="" if index == 0 else head_address, **ipc_addresses(run_dir, node)))
        processes = [_launch(config) for config in configs]
        return cls(session, run_dir, configs, processes)

    @property
    def client_address(self) -> str:
        return self.configs[0].client_address

    def alive(self) -> bool:
        """Whether the head is running (other nodes may come and go)."""
        return self.processes[0].poll() is None

    @property
    def head(self) -> subprocess.Popen:
        return self.processes[0]

    def stop(self) -> None:
        """Wait for the nodes to exit after Bye; kill any that do not; sweep leftovers."""
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        for config in self.configs:
            if config.spill_dir:
                shutil.rmtree(config.spill_dir, ignore_errors=True)
        for path in glob.glob(os.path.join(SHM_DIR, f"{SEGMENT_PREFIX}{self.session}-*")):
            os.unlink(path)   # only after a crash: a node that stops cleanly unlinks its own


def _launch(config: NodeConfig) -> subprocess.Popen:
    env = dict(os.environ)
    for name in _THREAD_LIMITS:
        env.setdefault(name, "1")
    # Workers import what the driver can import (functions pickled by reference, as
    # multiprocessing's spawn does with sys.path).
    env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(entry or os.curdir) for entry in sys.path)
    command = [sys.executable, "-m", "plait.executor.server",
               json.dumps(dataclasses.asdict(config))]
    return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)


class Connection:
    """A DEALER socket to the head node; every receive is bounded and checks the head."""

    def __init__(self, address: str, cluster: LocalCluster) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(address)
        self.cluster = cluster

    def send(self, message: p.Message) -> None:
        self.sock.send(p.encode(message), copy=False)

    def receive(self, timeout: float | None) -> p.Message | None:
        """The next message, or None after ``timeout`` seconds (None: wait indefinitely)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = LIVENESS_SLICE_MS if deadline is None else min(
                LIVENESS_SLICE_MS, max(0, int((deadline - time.monotonic()) * 1000)))
            if self.sock.poll(left):
                return p.decode(self.sock.recv(copy=False).buffer)
            if not self.cluster.alive():
                raise HeadUnavailableError(
                    f"the plait head process (pid {self.cluster.head.pid}) exited with code "
                    f"{self.cluster.head.returncode}; call plait.shutdown() and init again")
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def handshake(self, nodes_expected: int) -> p.Welcome:
        """Say hello and wait until the nodes and all their workers are up."""
        self.send(p.Hello(os.getpid(), nodes_expected))
        try:
            reply = self.receive(START_TIMEOUT_S)
        except HeadUnavailableError as error:
            raise ClusterError(f"the plait node process failed to start: {error}") from None
        if not isinstance(reply, p.Welcome):
            raise ClusterError(f"the plait node did not start within {START_TIMEOUT_S} s")
        return reply

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()
