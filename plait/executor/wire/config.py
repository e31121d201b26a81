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
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

# Heartbeats every second; a node silent for this long is declared dead.
HEARTBEAT_SECONDS = 1.0
NODE_TIMEOUT_SECONDS = 4.0
# A process sent SIGKILL exits at once; past this it is stuck in the kernel (D state).
KILL_WAIT_SECONDS = 5.0

# A worker and a driver connect to their node's ipc socket while the node is still starting
# (before it binds): ZeroMQ then retries after RECONNECT_IVL, 100 ms by default, which cost
# a cold init 0-100 ms twice over (the first worker's Ready, the driver's Hello). A failed
# connect to a path that is not there yet costs a system call, so retry this often.
LOCAL_RECONNECT_MS = 5

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
    env_vars: dict[str, str] = field(default_factory=dict)    # runtime_env's, for its workers

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
    env.update(config.env_vars)         # (the node's too: its workers are its children)
    command = [sys.executable, "-m", NODE_MAIN, json.dumps(dataclasses.asdict(config))]
    if log_path is None:
        paths = [os.path.abspath(entry or os.curdir) for entry in sys.path]
        if config.env_vars.get("PYTHONPATH"):       # runtime_env's first, as Ray's
            paths.insert(0, config.env_vars["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(paths)
        return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
    log = open(log_path, "ab")
    process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log,
                               stderr=log, start_new_session=True)
    log.close()
    return process


def remove_paths(paths: Sequence[str]) -> None:
    """Remove what nodes leave (arenas, run and spill dirs): files and directory trees;
    what is already gone (its node, or another driver, removed it first) is no error."""
    for path in paths:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except (FileNotFoundError, NotADirectoryError):   # gone, or never made (a spill
                pass                                           # dir under a file: refused)


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (a node's workers, actors and forker), read from
    /proc before it is stopped: once it is gone, its orphans name no parent to find them by."""
    found, queue = [], [pid]
    while queue:
        parent = queue.pop()
        try:
            threads = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for thread in threads:
            try:
                with open(f"/proc/{parent}/task/{thread}/children") as f:
                    children = [int(child) for child in f.read().split()]
            except OSError:
                continue
            found += children
            queue += children
    return found


def terminate(pids: Sequence[int], grace: float, first: int = signal.SIGTERM) -> None:
    """Send ``first`` (SIGTERM: let them clean up), wait up to ``grace`` seconds for every
    one to exit (pidfds, no polling), then SIGKILL what is left and wait for that too. A
    pid already gone is skipped; a child of the caller must still be reaped by it."""
    fds = {}
    for pid in pids:
        try:
            fds[os.pidfd_open(pid)] = pid
            os.kill(pid, first)
        except (ProcessLookupError, OSError):
            continue
    _wait_for_exits(fds, grace)
    for pid in fds.values():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _wait_for_exits(fds, KILL_WAIT_SECONDS)
    for fd in fds:
        os.close(fd)


def _wait_for_exits(fds: dict[int, int], timeout: float) -> None:
    """Wait until the processes behind these pidfds exit (each leaves ``fds`` as it does),
    or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while fds and (left := deadline - time.monotonic()) > 0:
        for fd in select.select(list(fds), [], [], left)[0]:
            os.close(fd)
            del fds[fd]


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


# The identity of a worker's second socket, its output thread's (wire/output.py): its own,
# with this after it, so that the node knows whose lines they are.
OUTPUT_SUFFIX = b"+out"


def offered_resources(num_gpus: float | None, resources: dict[str, float] | None
                      ) -> dict[str, float]:
    """What each node offers beside CPUs, checked: GPUs and custom resources by name
    (``plait.init(num_gpus=, resources=)``, ``plait start --num-gpus --resources``)."""
    offered = dict(resources or {})
    if not all(isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
               and v >= 0 for k, v in offered.items()):
        raise ValueError(f"resources must map names to amounts >= 0, got {resources!r}")
    for name in ("CPU", "GPU"):
        if name in offered:
            raise ValueError(f"{name} is not a custom resource: pass num_{name.lower()}s "
                             f"(plait start: --num-{'workers' if name == 'CPU' else 'gpus'})")
    if num_gpus:
        if not isinstance(num_gpus, int) or isinstance(num_gpus, bool) or num_gpus < 0:
            raise ValueError(f"num_gpus must be a whole number >= 0, got {num_gpus!r}")
        offered["GPU"] = num_gpus
    return offered
