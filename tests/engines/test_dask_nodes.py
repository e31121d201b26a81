"""plait on a Dask cluster whose workers come and go: a worker's name is the same in the
driver and in every task's own session (plait/engines/names.py)."""

from __future__ import annotations

import pytest

import plait
import plait.api
from tests.conftest import assert_nothing_leaked

pytestmark = pytest.mark.cluster
distributed = pytest.importorskip("distributed",
                                  reason="the dask engine's extra is not installed")


@plait.remote
def where_it_runs():
    return str(plait.get_runtime_context().get_node_id())


@pytest.fixture
def two_workers():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    client = distributed.Client(cluster)
    plait.shutdown()
    plait.init(engine="dask", address=client)
    yield cluster, client
    plait.shutdown()
    client.close()
    cluster.close()
    assert_nothing_leaked()


def test_a_worker_that_joins_after_one_left_has_one_name_in_the_driver_and_its_tasks(
        two_workers):
    """Dask lists its workers by address: with node-1 gone, a new worker's place in that
    list is not the one the driver gave it, yet its tasks name it as the driver does."""
    cluster, client = two_workers
    assert [node.id for node in plait.nodes()] == ["node-0", "node-1"]
    client.retire_workers([plait.api.session().node_ids["node-1"]], close_workers=True)
    cluster.scale(len(cluster.worker_spec) + 1)        # a new worker process
    client.wait_for_workers(2, timeout=60)
    assert [node.id for node in plait.nodes()] == ["node-0", "node-2"]
    assert plait.get(where_it_runs.options(node="node-2").remote(), timeout=60) == "node-2"
    assert plait.get(where_it_runs.options(node="node-0").remote(), timeout=60) == "node-0"
