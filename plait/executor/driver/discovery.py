"""Finding a cluster that ``plait start`` runs: what ``plait.init(address=...)`` joins.

``plait start --head`` writes the head's address to ``$PLAIT_HOME/cluster.json`` and the
cluster key to ``$PLAIT_HOME/cluster.key`` (see plait.executor.cli); a driver on the same
host reads them back, so ``address="auto"`` needs no address and no key passed by hand.
``PLAIT_KEY_FILE`` names another key file (a driver on another host).
"""

from __future__ import annotations

import json
import os

from plait.errors import ClusterError, ClusterNotFoundError
from plait.executor.driver.cluster import JoinedCluster


MAX_PORT = 65535

# The address of the plait.cluster_utils.Cluster this process runs (the newest), which a
# plain ``plait.init()`` or ``address="auto"`` joins, as Ray's ``ray.init()`` joins the
# cluster that ray.cluster_utils.Cluster started.
_cluster_here: list[str] = []


def cluster_started(address: str) -> None:
    _cluster_here.append(address)


def cluster_stopped(address: str) -> None:
    if address in _cluster_here:
        _cluster_here.remove(address)


def cluster_here() -> str | None:
    """The address of the newest Cluster this process runs, if any."""
    return _cluster_here[-1] if _cluster_here else None


def home() -> str:
    return os.environ.get("PLAIT_HOME") or os.path.join(os.path.expanduser("~"), ".plait")


def _path(name: str) -> str:
    return os.path.join(home(), name)


def joined_cluster(address: str) -> JoinedCluster:
    """What ``plait.init(address=...)`` connects to: "auto" is the cluster started here;
    an ``ipc://`` address is a head on this host in a private directory, as
    ``plait.cluster_utils.Cluster`` starts one (no key: only this user can reach it)."""
    if address == "auto" and cluster_here() is not None:
        address = cluster_here()
    if address.startswith("ipc://"):
        return JoinedCluster(address, None)
    if address == "auto":
        try:
            with open(_path("cluster.json")) as f:
                address = json.load(f)["address"]
        except (OSError, ValueError, KeyError):
            raise ClusterNotFoundError(f"address='auto' found no cluster started on this "
                                       f"host (no {_path('cluster.json')}); run `plait start "
                                       f"--head` first") from None
    from plait.executor.wire.security import load_key   # (ZeroMQ: not for a plain init)

    key_file = os.environ.get("PLAIT_KEY_FILE") or _path("cluster.key")
    key = load_key(key_file) if os.path.exists(key_file) else None
    return JoinedCluster(f"tcp://{host_port(address)}", key)


def host_port(address: str) -> str:
    """``address`` as HOST:PORT, a TCP port a head can listen on (1 to 65535): ZeroMQ
    itself takes 70000 and listens at 70000 - 65536, so the address would lie."""
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) <= MAX_PORT:
        raise ClusterError(f"a cluster address looks like HOST:PORT, the port 1 to {MAX_PORT}, "
                           f"got {address!r}")
    return f"{host}:{port}"
