"""How processes are started and how long they wait for each other: the facts every side
shares, so that none has to import another's code to learn them.

    driver or ``plait start`` --launch(NodeConfig)--> ``python -m plait.executor.node.server``
    node --fork, or spawn(WorkerConfig)-------------> ``python -m plait.executor.worker``

Both configs cross the process boundary as JSON (``dataclasses.asdict``), so they hold
plain strings and numbers only. A node heartbeats the head every HEARTBEAT_SECONDS and is
declared dead after NODE_TIMEOUT_SECONDS of silence; a driver allows a joined head longer
(see plait.executor.driver.connection).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field

# Heartbeats every second; a node silent for this long is declared dead.
HEARTBEAT_SECONDS = 1.0
NODE_TIMEOUT_SECONDS = 4.0

# The processes' entry points: started as modules, never imported by who starts them.
NODE_MAIN = "plait.executor.node.server"
WORKER_MAIN = "plait.executor.worker"

# Tasks run one per worker slot; their numeric libraries should not each start a thread
# per core on top (Ray sets the same defaults for its workers).
THREAD_LIMITS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class NodeConfig:
    """How to start one node process; ``head_address`` empty means this node is the head."""

    session: str
    node: str
    num_workers: int
    store_capacity: int
    run_dir: str
    parent_pid: int                     # 0: no parent to watch (started by the CLI)
    spill_dir: str | None = None        # None: spilling is off
    head_address: str = ""
    client_address: str = ""            # the head's address for drivers and nodes
    transfer_address: str = ""
    key_file: str = ""                  # a cluster key: CurveZMQ on every TCP socket
    worker_memory_limit: int = 0        # bytes of RSS a busy worker may use (0: no limit)
    resources: dict[str, float] = field(default_factory=dict)   # GPU, custom, memory offered

    @property
    def is_head(self) -> bool:
        return not self.head_address

    @property
    def worker_address(self) -> str:
        return f"ipc://{self.run_dir}/{self.node}-workers.sock"

    @property
    def arena_name(self) -> str:
        return f"plait-{self.session}-{self.node}"


def ipc_addresses(run_dir: str, node: str) -> dict[str, str]:
    """Addresses of an embedded cluster: ipc sockets in the driver's private run dir."""
    return {"client_address": f"ipc://{run_dir}/head.sock",
            "transfer_address": f"ipc://{run_dir}/{node}-transfer.sock"}


def launch(config: NodeConfig, log_path: str | None = None) -> subprocess.Popen:
    """Start a node process.

    Without ``log_path`` it is a driver's child: it imports what the driver can import
    (functions pickled by reference, as multiprocessing's spawn does with sys.path). With
    one it is a service of ``plait start``: its own session, its output to that log.
    """
    env = dict(os.environ)
    for name in THREAD_LIMITS:
        env.setdefault(name, "1")
    command = [sys.executable, "-m", NODE_MAIN, json.dumps(dataclasses.asdict(config))]
    if log_path is None:
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(entry or os.curdir)
                                            for entry in sys.path)
        return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
    log = open(log_path, "ab")
    process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log,
                               stderr=log, start_new_session=True)
    log.close()
    return process


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker needs to start (passed through fork or the command line)."""

    index: int
    node: str
    address: str
    arena: str
    parent_pid: int
    head_address: str = ""          # for tasks that submit tasks: the head, as a driver sees it
    key_file: str = ""

    @property
    def session(self) -> str:
        """The cluster's session (what drivers call their job): the arena is named after
        it and the node (``NodeConfig.arena_name``)."""
        return self.arena.removeprefix("plait-").removesuffix(f"-{self.node}")


def identity_of(index: int, pid: int) -> bytes:
    """The worker's ZeroMQ identity: the node routes by it and knows it before hello."""
    return f"w{index}.{pid}".encode()
