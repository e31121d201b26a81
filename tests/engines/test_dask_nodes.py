"""plait on a Dask cluster whose workers come and go: a worker's name is the same in the
driver and in every task's own session (plait/engines/names.py), and a task pinned to a
worker that died runs on a live one, or fails as in Dask if it kills every worker it meets
(plait/engines/dask_scheduler.py)."""

from __future__ import annotations

import os

import numpy as np
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


@plait.remote
def make(megabytes):
    return np.ones(megabytes << 20, dtype=np.uint8)


@plait.remote
def crashes_once(array, marker):
    """Kills its worker the first time it runs (the marker file says it ran before)."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(3)
    return float(array.sum())


@plait.remote
def total(array):
    return float(array.sum())


@plait.remote
def crashes():
    os._exit(3)


@pytest.fixture
def two_workers():
    yield from plait_on_dask(2)


@pytest.fixture
def one_worker():
    yield from plait_on_dask(1)


def plait_on_dask(workers):
    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1,
                                       processes=True, host="127.0.0.1",
                                       dashboard_address=None)
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


def test_the_workers_are_asked_of_the_scheduler_not_of_the_clients_cache(two_workers,
                                                                          monkeypatch):
    """The client's periodic refresh of its cached identity lists no worker: landing just
    before the cache was read, it made a plan see a cluster without nodes."""
    _, client = two_workers

    async def periodic_refresh_first(n_workers=0):
        client._scheduler_identity = {"workers": {}}

    monkeypatch.setattr(client, "_update_scheduler_info", periodic_refresh_first)
    assert [node.id for node in plait.nodes()] == ["node-0", "node-1"]
    assert plait.get(where_it_runs.remote(), timeout=60) in ("node-0", "node-1")


def test_a_task_whose_worker_died_runs_again_and_the_inputs_lost_with_it_are_made_again(
        two_workers, tmp_path):
    """The consumer kills its worker (node-1, holding its input): Dask keeps pins to that
    worker's address, so without the scheduler plugin both would wait for it forever."""
    array = make.options(node="node-1").remote(1)
    plait.wait([array], timeout=60)
    with plait.trace() as trace:
        assert plait.get(crashes_once.remote(array, str(tmp_path / "ran")), timeout=60) == \
            float(1 << 20)
    ran = {t.function_name: t.node for t in trace.tasks}
    assert ran["crashes_once"] not in ("node-1",) and ran["make"] == ran["crashes_once"]


def test_with_one_worker_the_task_runs_again_on_the_worker_that_replaces_it(
        one_worker, tmp_path):
    """No worker is left when it dies: the task and its lost input wait for the one its
    nanny starts, at a new address."""
    array = make.remote(1)
    plait.wait([array], timeout=60)
    assert plait.get(crashes_once.remote(array, str(tmp_path / "ran")), timeout=60) == \
        float(1 << 20)


def test_a_task_that_kills_every_worker_it_meets_fails_as_in_dask(two_workers):
    with pytest.raises(plait.WorkerCrashedError, match="crashes-.* on all 4 attempt"):
        plait.get(crashes.remote(), timeout=120)


def test_a_put_lost_with_its_worker_is_an_object_lost_error_naming_it(two_workers):
    """Dask cannot remake scattered data; a get of it, or of a task reading it, raises
    plait's ObjectLostError with plait's id, not Dask's CancelledError."""
    cluster, client = two_workers
    ref = plait.put(np.ones(1 << 16))
    where = plait.api.session().holders[ref.id][0]
    client.restart_workers([plait.api.session().node_ids[where]])
    with pytest.raises(plait.ObjectLostError, match=f"object {ref.id} is lost"):
        plait.get(ref, timeout=60)
    with pytest.raises(plait.ObjectLostError, match=f"object {ref.id} is lost"):
        plait.get(total.remote(ref), timeout=60)


def test_a_script_starting_a_local_cluster_without_the_main_guard_is_told_why_it_failed(
        tmp_path):
    import subprocess
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text("import plait\nplait.init(engine='dask', num_nodes=1)\n"
                      "print(plait.get(plait.put(1)))\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode != 0
    assert "plait.errors.ClusterError: the dask engine could not start a LocalCluster" in \
        done.stderr
    assert "if __name__ == '__main__':" in done.stderr
