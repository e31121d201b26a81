"""One plait session per engine, shared by a test module (Ray and Dask start slowly here).

``engine`` runs a test module once per engine: the native cluster, Ray (``ray.init`` of 2
CPUs, started by plait), Ray through Ray Client (``address="ray://..."``: a Ray cluster of
2 CPUs and a Ray Client server in front of it, as ``ray start --head`` runs one) and Dask (a
LocalCluster of 3 worker processes on 127.0.0.1). The test sees the engine's name ("ray"
for both Ray sessions). An engine whose extra is not installed (``pip install -e ".[ray]"``,
``".[dask]"``) is skipped with that reason; CI installs both. Every engine stays on
loopback.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time

import cloudpickle
import pytest

import plait
from tests.conftest import assert_nothing_leaked

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"     # Ray on 127.0.0.1
# how the engine is reached -> (its name, the module its extra installs)
ENGINES = {"native": ("native", None), "ray": ("ray", "ray"), "ray-client": ("ray", "grpc"),
           "dask": ("dask", "distributed")}
STARTS = {"native": dict(num_workers=2), "ray": dict(engine="ray", num_cpus=2),
          "dask": dict(engine="dask", num_nodes=3)}
CLIENT_SERVER_START_S = 60.0


@contextlib.contextmanager
def started(reached: str, module: object):
    """A plait session on the engine, for the ``with``. Ray's workers import no test module:
    its functions travel by value."""
    name, needed = ENGINES[reached]
    if needed is not None and importlib.util.find_spec(needed) is None:
        pytest.skip(f"the {name} engine's extra is not installed (pip install -e '.[{name}]')")
    if name == "ray":
        cloudpickle.register_pickle_by_value(module)
    plait.shutdown()
    try:
        with ray_client_server() if reached == "ray-client" else \
                contextlib.nullcontext(None) as address:
            try:
                plait.init(**(STARTS[name] if address is None
                              else dict(engine="ray", address=address)))
                yield name
            finally:
                plait.shutdown()
    finally:
        if name == "ray":
            cloudpickle.unregister_pickle_by_value(module)


@contextlib.contextmanager
def ray_client_server():
    """A Ray cluster of its own (one node, 2 CPUs) behind a Ray Client server on 127.0.0.1
    ("legacy" mode: the server is the cluster's driver for its clients); the address a Ray
    Client driver is given."""
    from ray import cluster_utils

    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "ray.util.client.server", "--address", cluster.address,
         "--host", "127.0.0.1", "--port", str(port), "--mode", "legacy"],
        start_new_session=True)
    try:
        listening(port, server, CLIENT_SERVER_START_S)
        yield f"ray://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        cluster.shutdown()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening(port: int, process: subprocess.Popen, timeout: float) -> None:
    """Return once ``process`` accepts connections on ``port``; fail if it exits or takes
    longer than ``timeout``. (Each try waits on the connect itself, not on a sleep.)"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the Ray Client server exited ({process.returncode})"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            process_wait(process, 0.1)
    raise AssertionError(f"the Ray Client server did not listen on {port} in {timeout} s")


def process_wait(process: subprocess.Popen, seconds: float) -> None:
    """Wait up to ``seconds`` for ``process`` to exit (the pause between two tries)."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=seconds)


@pytest.fixture(scope="module", params=list(ENGINES))
def engine(request):
    """The engine's name, with a plait session on it for the whole module."""
    with started(request.param, sys.modules[request.module.__name__]) as name:
        yield name
    assert_nothing_leaked()
