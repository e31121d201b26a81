"""``ray.cluster_utils`` under plait: a cluster of several nodes on this machine, grown and
shrunk while it runs, as Ray's own tests build theirs (``Cluster``, the ``ray_start_cluster``
fixture).

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    node = cluster.add_node(num_cpus=2, resources={"disk": 1})    # joins the running head
    plait.init(address=cluster.address)       # a driver, as for a cluster `plait start` runs
    cluster.remove_node(node)                 # killed: its tasks and actors fail over
    plait.shutdown(); cluster.shutdown()      # no process, socket or segment left

Each node is a node process of plait's own (the one ``plait.init(num_nodes=...)`` starts),
with its workers and its store; the first is the head. Unlike ``plait.init``, the cluster
belongs to this object, not to a driver: drivers connect and leave (``plait.shutdown`` only
disconnects), nodes come and go, and ``shutdown`` (or interpreter exit) stops it. As an
embedded cluster, it talks over ipc sockets in a private 0700 directory, so its address is
an ``ipc://`` path and needs no key. The nodes watch this process and stop if it dies.
``import plait`` loads this module; what speaks to the head (ZeroMQ) loads on first use.
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from plait.compiler.units import parse_bytes
from plait.errors import ClusterError
from plait.executor.driver.cluster import sweep_dead_sessions
from plait.executor.wire import protocol as p
from plait.executor.wire.config import (NodeConfig, descendants, ipc_addresses, launch,
                                        terminate)
from plait.store.arena import SHM_DIR
from plait.store.spill import spill_directory

# Ray's Cluster.add_node defaults: one CPU and a 150 MiB store per node (an arena's pages
# cost nothing until written, so the store's size only bounds what a test may put).
DEFAULT_NODE_ARGS = {"num_cpus": 1, "num_gpus": 0, "object_store_memory": 150 * 1024 * 1024}
STOP_GRACE_SECONDS = 10.0      # a node asked to stop (SIGTERM) has this long, then SIGKILL
WAIT_SLICE_SECONDS = 0.05      # between two looks at the head's node list in wait_for_nodes

# Ray's node arguments that shape a Ray node's own processes (ports, logging, its
# dashboard, internal config) and mean nothing to a plait node: taken and ignored.
IGNORED_NODE_ARGS = frozenset({
    "_system_config", "cleanup", "dashboard_agent_listen_port", "dashboard_host",
    "dashboard_port", "enable_object_reconstruction", "include_dashboard", "include_log_monitor",
    "labels", "log_to_driver", "max_worker_port", "metrics_export_port", "min_worker_port",
    "namespace", "node_ip_address", "node_manager_port", "node_name", "object_manager_port",
    "plasma_directory", "raylet_ip_address", "redis_address", "redis_password",
    "redis_username", "runtime_env_dir_name", "temp_dir", "env_vars", "worker_port_list",
    "_temp_dir", "ray_client_server_port", "gcs_address", "gcs_server_port"})

_clusters = itertools.count(1)


@dataclass(eq=False)
class ClusterNode:
    """One node of a Cluster (Ray's ``ray._private.node.Node`` as its tests use it): its id,
    as ``plait.nodes()`` and ``get_runtime_context().get_node_id()`` name it, and its
    process. Compared by identity, as Ray's are (a Cluster keeps them in a list)."""

    config: NodeConfig
    process: subprocess.Popen
    num_cpus: int
    resources: dict[str, float] = field(default_factory=dict)

    @property
    def node_id(self) -> str:
        return self.config.node

    unique_id = node_id            # Ray's older name

    @property
    def address(self) -> str:
        """The cluster's address (Ray's node.address is its GCS's, the same on every node)."""
        return self.config.client_address

    @property
    def is_head(self) -> bool:
        return self.config.is_head

    @property
    def node_ip_address(self) -> str:
        return "127.0.0.1"

    @property
    def pid(self) -> int:
        return self.process.pid

    def any_processes_alive(self) -> bool:
        return self.process.poll() is None

    remaining_processes_alive = any_processes_alive

    def kill_all_processes(self, check_alive: bool = True, allow_graceful: bool = False,
                           wait: bool = True) -> None:
        """Stop the node: its process and every worker and actor process under it, then
        remove its arena, spill dir and sockets (a node killed cannot)."""
        processes = [self.process.pid] + descendants(self.process.pid)
        if allow_graceful:   # the node first: it stops its own workers and actors knowing it
            #                  goes (its actors then restart once, elsewhere, not on it too)
            terminate(processes[:1], STOP_GRACE_SECONDS, signal.SIGTERM)
        terminate(processes, 0.0, signal.SIGKILL)      # what it left behind
        self.process.wait()                     # ours to reap
        if self.config.spill_dir:
            shutil.rmtree(self.config.spill_dir, ignore_errors=True)
        for path in (self.config.worker_address.removeprefix("ipc://"),
                     self.config.transfer_address.removeprefix("ipc://"),
                     os.path.join(SHM_DIR, self.config.arena_name)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    kill_raylet = kill_all_processes           # Ray's tests kill a node's raylet this way

    def __repr__(self) -> str:
        state = "alive" if self.any_processes_alive() else "stopped"
        return (f"ClusterNode({self.node_id}, {self.num_cpus} CPU, {self.resources}, "
                f"pid {self.pid}, {state})")


class Cluster:
    """Several plait nodes on this machine, added and removed one by one (Ray's API).

    ``initialize_head`` starts the head at once with ``head_node_args``; ``connect`` then
    makes this process its driver (``plait.init(address=cluster.address)``).
    ``shutdown_at_exit`` stops everything when the interpreter exits, a failed test's
    cluster included.
    """

    def __init__(self, initialize_head: bool = False, connect: bool = False,
                 head_node_args: dict[str, Any] | None = None,
                 shutdown_at_exit: bool = True) -> None:
        if connect and not initialize_head:
            raise RuntimeError("Cannot connect to uninitialized cluster.")
        self.session = f"{os.getpid():x}-c{next(_clusters)}"
        sweep_dead_sessions()
        self.run_dir = tempfile.mkdtemp(prefix=f"plait-{self.session}-")
        self.head_node: ClusterNode | None = None
        self.worker_nodes: list[ClusterNode] = []
        self.removed: list[NodeConfig] = []           # their leftovers are swept at shutdown
        self.connected = False
        self.webui_url = None
        self.numbers = itertools.count()              # node-0 is the head; ids never reused
        self._stop_at_exit = None
        if shutdown_at_exit:
            self._stop_at_exit = _stopper(weakref.ref(self))
            atexit.register(self._stop_at_exit)
        if initialize_head:
            self.add_node(**(head_node_args or {}))
            if connect:
                self.connect()

    # -- Ray's API -------------------------------------------------------------------------

    @property
    def address(self) -> str | None:
        """What ``plait.init(address=...)`` takes to join this cluster as a driver."""
        return None if self.head_node is None else self.head_node.config.client_address

    gcs_address = address

    def connect(self, namespace: str | None = None) -> None:
        """Make this process the cluster's driver."""
        import plait

        if self.address is None:
            raise ClusterError("connect() before the head node was added")
        plait.init(address=self.address, namespace=namespace, ignore_reinit_error=True)
        self.connected = True

    def add_node(self, wait: bool = True, **node_args: Any) -> ClusterNode:
        """Start a node (the first one is the head) with Ray's arguments: ``num_cpus``
        (its worker slots; default 1, and 0 makes a node that runs no tasks), ``num_gpus``,
        ``resources``, ``object_store_memory``, ``memory``. With ``wait``, return once the
        head counts it, so nodes appear in the order they were added."""
        num_cpus, offered, capacity = _node_shape({**DEFAULT_NODE_ARGS, **node_args})
        node_id = f"node-{next(self.numbers)}"
        head = self.head_node
        config = NodeConfig(
            self.session, node_id, num_cpus, capacity, self.run_dir, os.getpid(),
            spill_directory(self.session, node_id),
            head_address="" if head is None else head.config.client_address,
            resources=offered, **ipc_addresses(self.run_dir, node_id))
        node = ClusterNode(config, launch(config), num_cpus, offered)
        if head is None:
            self.head_node = node
            from plait.executor.driver.discovery import cluster_started

            cluster_started(config.client_address)
        else:
            self.worker_nodes.append(node)
        if wait or head is None:       # nodes join the head: it must be up first
            self._wait_for_node(node)
        return node

    def remove_node(self, node: ClusterNode, allow_graceful: bool = True) -> None:
        """Stop a node and all its processes: its running tasks are retried on the others
        and its actors restart elsewhere within their ``max_restarts``, as when a machine
        dies; objects only it held are rebuilt from their lineage when read. Removing the
        head ends the cluster (a driver connected to it is shut down first)."""
        if node is self.head_node:
            from plait.executor.driver.discovery import cluster_stopped

            self._disconnect_driver()
            cluster_stopped(node.address)
            self.head_node = None
        elif node in self.worker_nodes:
            self.worker_nodes.remove(node)
        else:
            raise ValueError(f"{node} is not a node of this cluster")
        node.kill_all_processes(allow_graceful=allow_graceful)
        self.removed.append(node.config)

    def wait_for_nodes(self, timeout: float = 30) -> None:
        """Wait until the head lists exactly the nodes added and not removed (a node that
        died without ``remove_node`` makes this time out, as in Ray)."""
        expected = {node.node_id for node in self.list_all_nodes()}
        deadline = time.monotonic() + timeout
        while True:
            listed = {info.id for info in self._node_infos(max(0.0, deadline -
                                                                time.monotonic()))}
            dead = {node.node_id for node in self.list_all_nodes()
                    if not node.any_processes_alive()}
            if listed == expected and not dead:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"Timed out while waiting for nodes to join: the head "
                                   f"lists {sorted(listed)}, expected {sorted(expected)}"
                                   + (f" ({', '.join(sorted(dead))} exited)" if dead else ""))
            time.sleep(WAIT_SLICE_SECONDS)      # the head notices a removal within a turn

    def list_all_nodes(self) -> list[ClusterNode]:
        """The head first, then the other nodes in the order they were added."""
        return ([self.head_node] if self.head_node is not None else []) + self.worker_nodes

    def remaining_processes_alive(self) -> bool:
        return all(node.any_processes_alive() for node in self.list_all_nodes())

    def shutdown(self) -> None:
        """Stop every node, the head last; nothing of the cluster is left afterwards."""
        from plait.executor.driver.cluster import remove_leftovers

        for node in list(self.worker_nodes):
            self.remove_node(node)
        if self.head_node is not None:
            self.remove_node(self.head_node)
        remove_leftovers(self.session, self.run_dir, self.removed)
        if self._stop_at_exit is not None:
            atexit.unregister(self._stop_at_exit)
            self._stop_at_exit = None

    # -- plumbing --------------------------------------------------------------------------

    def _wait_for_node(self, node: ClusterNode) -> None:
        """Wait until the head counts ``node`` (and every node before it); if it exits
        first, stop waiting and say why."""
        from contextlib import closing

        from plait.executor.driver.cluster import JoinedCluster
        from plait.executor.driver.connection import START_TIMEOUT_S, Connection

        def check() -> None:
            for started in (node, self.head_node):
                if started is not None and started.process.poll() is not None:
                    raise ClusterError(f"{started.node_id} exited with code "
                                       f"{started.process.returncode} before it joined")

        expected = len(self.list_all_nodes())
        with closing(Connection(JoinedCluster(self.address, None))) as conn:
            welcome = conn.hello(expected, START_TIMEOUT_S, alive=check)
            while welcome is not None and node.node_id not in {n.id for n in welcome.nodes}:
                # a node removed a moment ago was still counted: ask again
                welcome = conn.hello(expected, START_TIMEOUT_S, alive=check)
        if welcome is None:
            raise ClusterError(f"{node.node_id} did not join within {START_TIMEOUT_S:.0f} s")

    def _node_infos(self, timeout: float) -> tuple[p.NodeInfo, ...]:
        """The nodes the head lists now (none if there is no head, or it does not answer)."""
        from contextlib import closing

        from plait.executor.driver.cluster import JoinedCluster
        from plait.executor.driver.connection import Connection

        if self.address is None:
            return ()
        with closing(Connection(JoinedCluster(self.address, None))) as conn:
            welcome = conn.hello(1, timeout)
        return () if welcome is None else welcome.nodes

    def _disconnect_driver(self) -> None:
        """This process's driver session on this cluster ends with its head (Ray's
        remove_node of the driver's node shuts the driver down too)."""
        import plait
        from plait import api

        current = api._session
        if current is not None and getattr(getattr(current, "cluster", None),
                                           "client_address", None) == self.address:
            plait.shutdown()
        self.connected = False

    def __repr__(self) -> str:
        return f"Cluster({self.address}, nodes={self.list_all_nodes()})"


def _stopper(cluster: weakref.ref) -> Any:
    """The exit hook of a cluster: stop it if it is still there (a weak reference, so a
    cluster dropped without shutdown is not kept alive by the hook)."""
    def stop() -> None:
        alive = cluster()
        if alive is not None:
            alive.shutdown()
    return stop


def _node_shape(args: dict[str, Any]) -> tuple[int, dict[str, float], int]:
    """Ray's node arguments as plait's: worker slots, resources offered, store size."""
    unknown = set(args) - set(DEFAULT_NODE_ARGS) - {"resources", "memory"} - IGNORED_NODE_ARGS
    if unknown:
        raise TypeError(f"Cluster.add_node() got unknown argument(s) {', '.join(sorted(unknown))}")
    num_cpus = args["num_cpus"]
    if not isinstance(num_cpus, int) or isinstance(num_cpus, bool) or num_cpus < 0:
        raise ValueError(f"num_cpus must be a whole number >= 0, got {num_cpus!r}")
    offered = {name: float(amount) for name, amount in (args.get("resources") or {}).items()}
    for name in ("CPU", "GPU"):
        if name in offered:
            raise ValueError(f"pass {name}s as num_{name.lower()}s=, not in resources")
    if args["num_gpus"]:
        offered["GPU"] = float(args["num_gpus"])
    if args.get("memory"):
        offered["memory"] = float(parse_bytes(args["memory"]))
    return num_cpus, offered, parse_bytes(args["object_store_memory"])
