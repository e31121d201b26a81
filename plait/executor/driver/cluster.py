"""The clusters a driver talks to: one it started here, or one it joined.

``LocalCluster`` owns the node processes it started and their run directory;
``JoinedCluster`` is one started by ``plait start``. Neither imports ZeroMQ: ``plait.init``
starts the node processes first and imports the socket side (driver/connection.py) while
they boot, so the two overlap instead of adding up.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from plait.executor.wire.config import NodeConfig, ipc_addresses, launch, remove_paths
from plait.store.arena import SEGMENT_PREFIX, SHM_DIR
from plait.store.spill import spill_directory

if TYPE_CHECKING:
    from plait.executor.wire.security import ClusterKey

STOP_TIMEOUT_S = 10.0


@dataclass
class LocalCluster:
    """The node processes (head first, each with its workers) started from this driver."""

    session: str
    run_dir: str
    configs: list[NodeConfig]
    processes: list[subprocess.Popen]

    @classmethod
    def start(cls, session: str, num_nodes: int, num_workers: int, store_capacity: int,
              spill_dir: str | None, worker_memory_limit: int = 0,
              resources: dict[str, float] | None = None,
              env_vars: dict[str, str] | None = None) -> LocalCluster:
        """Start node-0 (the head) and nodes 1..n-1; ``spill_dir`` None turns spilling off."""
        sweep_dead_sessions()
        run_dir = tempfile.mkdtemp(prefix=f"plait-{session}-")
        head_address = ipc_addresses(run_dir, "node-0")["client_address"]
        configs = []
        for index in range(num_nodes):
            node = f"node-{index}"
            spill = None if spill_dir is None else spill_directory(session, node, spill_dir)
            configs.append(NodeConfig(
                session, node, num_workers, store_capacity, run_dir, os.getpid(), spill,
                head_address="" if index == 0 else head_address,
                worker_memory_limit=worker_memory_limit, resources=dict(resources or {}),
                env_vars=dict(env_vars or {}),
                **ipc_addresses(run_dir, node)))
        processes = [launch(config) for config in configs]
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
        remove_leftovers(self.session, self.run_dir, self.configs)


def remove_leftovers(session: str, run_dir: str, configs: list[NodeConfig]) -> None:
    """What stopped nodes of one session may leave (only a killed one leaves anything):
    the run dir with its sockets, the spill dirs, the arenas in /dev/shm."""
    remove_paths([run_dir] + [c.spill_dir for c in configs if c.spill_dir]
                 + glob.glob(os.path.join(SHM_DIR, f"{SEGMENT_PREFIX}{session}-*")))


# A driver's session (plait.init: "<pid>-<n>", cluster_utils: "<pid>-c<n>", the pid in hex)
# in the name of what its nodes leave: arenas, run dirs, spill dirs. A CLI cluster's
# ("<pid>-c", no number) outlives the `plait start` that named it and never matches.
_DRIVER_SESSION = re.compile(rf"{SEGMENT_PREFIX}([0-9a-f]+)-c?[0-9]+-")


def sweep_dead_sessions() -> None:
    """Remove what sessions of drivers no longer running left on this host.

    A driver and its nodes killed at once (SIGKILL of the process group, an OOM kill, a CI
    timeout) run no cleanup, and each arena holds /dev/shm until someone unlinks it. As Ray
    does with a dead session's files, the next driver to start a cluster here removes
    them. A pid that is alive, even reused by another program, keeps its files.
    """
    places = (os.path.join(SHM_DIR, f"{SEGMENT_PREFIX}*"),
              os.path.join(tempfile.gettempdir(), f"{SEGMENT_PREFIX}*"))
    found = (path for place in places for path in glob.glob(place))
    remove_paths([path for path in found
                  if (match := _DRIVER_SESSION.match(os.path.basename(path)))
                  and not _alive(int(match[1], 16))])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True               # another user's
    return True


@dataclass
class JoinedCluster:
    """A cluster someone else started (``plait start``): we connect and never stop it."""

    client_address: str
    key: ClusterKey | None

    def alive(self) -> bool:
        return True            # only heartbeats can tell

    def stop(self) -> None:
        pass


Cluster = LocalCluster | JoinedCluster
