"""One plait session per engine, shared by a test module (Ray and Dask start slowly here).

``engine`` runs a test module once per engine: the native cluster, Ray (``ray.init`` of 2
CPUs, started by plait) and Dask (a LocalCluster of 3 worker processes on 127.0.0.1). An
engine whose extra is not installed (``pip install -e ".[ray]"``, ``".[dask]"``) is skipped
with that reason; CI installs both. Every engine stays on loopback.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import cloudpickle
import pytest

import plait
from tests.conftest import assert_nothing_leaked

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"     # Ray on 127.0.0.1
ENGINES = {"native": None, "ray": "ray", "dask": "distributed"}
STARTS = {"native": dict(num_workers=2), "ray": dict(engine="ray", num_cpus=2),
          "dask": dict(engine="dask", num_nodes=3)}


def start(name: str, module: object) -> None:
    """Start ``name``; Ray's workers import no test module: its functions travel by value."""
    needed = ENGINES[name]
    if needed is not None and importlib.util.find_spec(needed) is None:
        pytest.skip(f"the {name} engine's extra is not installed (pip install -e '.[{name}]')")
    if name == "ray":
        cloudpickle.register_pickle_by_value(module)
    plait.shutdown()
    plait.init(**STARTS[name])


@pytest.fixture(scope="module", params=list(ENGINES))
def engine(request):
    """The engine's name, with a plait session on it for the whole module."""
    start(request.param, sys.modules[request.module.__name__])
    yield request.param
    plait.shutdown()
    if request.param == "ray":
        cloudpickle.unregister_pickle_by_value(sys.modules[request.module.__name__])
    assert_nothing_leaked()
