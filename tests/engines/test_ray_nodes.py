"""plait on a Ray cluster of three nodes (``ray.cluster_utils.Cluster``, all on loopback):
the compiler sees Ray's nodes and where objects live, and each task runs where planned."""

from __future__ import annotations

import os
import sys
import time

import cloudpickle
import numpy as np
import pytest

import plait
import plait.api
from tests.conftest import assert_nothing_leaked

pytestmark = pytest.mark.cluster
cluster_utils = pytest.importorskip("ray.cluster_utils",
                                    reason="the ray engine's extra is not installed")


@plait.remote
def make(megabytes):
    return np.ones(megabytes << 20, dtype=np.uint8)


@plait.remote
def total(array):
    return float(array.sum())


@pytest.fixture(scope="module")
def three_nodes():
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    plait.shutdown()
    plait.init(engine="ray", address=cluster.address)
    yield cluster
    plait.shutdown()
    import ray

    ray.shutdown()
    cluster.shutdown()
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert_nothing_leaked()


def test_every_ray_node_is_a_plait_node(three_nodes):
    assert [node.id for node in plait.nodes()] == ["node-0", "node-1", "node-2"]


def test_the_plan_is_obeyed_and_nothing_moves(three_nodes):
    arrays = [make.options(node=f"node-{i}").remote(4) for i in range(3)]
    plait.wait(arrays, num_returns=3, timeout=60)
    with plait.trace() as trace:      # (made inside: the idle flusher may run them early)
        consumers = [total.remote(a) for a in arrays]
        plan = plait.compile(*consumers)
        assert [plan.placements[c.task.id].node for c in consumers] == \
            ["node-0", "node-1", "node-2"]
        assert plait.get(consumers, timeout=60) == [float(4 << 20)] * 3
    assert sorted((t.function_name, t.node) for t in trace.tasks) == \
        [("total", "node-0"), ("total", "node-1"), ("total", "node-2")]
    assert trace.bytes_moved == 0


def test_a_transfer_the_plan_makes_is_traced(three_nodes):
    array = make.options(node="node-1").remote(4)
    plait.wait([array], timeout=60)
    with plait.trace() as trace:
        assert plait.get(total.options(node="node-2").remote(array), timeout=60) == 4 << 20
    assert [(t.src, t.dst, t.nbytes) for t in trace.transfers] == [("node-1", "node-2", 4 << 20)]


def test_a_transfer_is_traced_though_its_object_went_before_the_report_was_read(
        three_nodes):
    """The array's last ref goes at its reader's launch; its record of where it was made
    waits for the reader's report, read after the get, then goes."""
    session = plait.api.session()
    with plait.trace() as trace:
        array = make.options(node="node-1").remote(4)
        array_id = array.id
        read = total.options(node="node-2").remote(array)
        del array                             # its reader holds it until its launch
        assert plait.get(read, timeout=60) == 4 << 20
        del read
        plait.put(0)                          # counts them down; the reports are unread
        assert array_id in session.holders
    assert [(t.object_id, t.src, t.dst) for t in trace.transfers] == \
        [(array_id, "node-1", "node-2")]
    assert array_id not in session.holders


def test_a_result_read_in_the_same_graph_is_made_where_its_reader_runs(three_nodes):
    """Tasks that read nothing are left to Ray's scheduler unless a task of their graph
    reads their results: then they stay pinned where the plan put them, beside the reader."""
    with plait.trace() as trace:      # (made inside: the idle flusher may run them early)
        arrays = [make.remote(2) for _ in range(6)]
        consumers = [total.remote(a) for a in arrays]
        assert plait.get(consumers, timeout=60) == [float(2 << 20)] * 6
    ran = {t.task_id: t.node for t in trace.tasks}
    assert [ran[a.task.id] for a in arrays] == [ran[c.task.id] for c in consumers]
    assert len(set(ran.values())) == 3 and trace.bytes_moved == 0


def test_a_plan_is_made_on_the_node_list_at_hand_while_a_fresh_one_is_read_beside_it(
        three_nodes):
    """ray.nodes() is a round trip to Ray's GCS, slow while it takes a burst's task events:
    a list older than NODES_FRESH_SECONDS serves the plan and is read again in a thread;
    only one older than NODES_STALE_SECONDS (or none) is waited for."""
    from plait.engines import ray as ray_engine

    session = plait.api.session()
    nodes = session.read_nodes()
    old = time.monotonic() - ray_engine.NODES_FRESH_SECONDS - 1
    session.nodes_seen = (old, nodes[:1])                       # old, and one node short
    assert session.engine_nodes() == nodes[:1]
    reader = session.nodes_reader
    if reader is not None:                                     # (it may be done already)
        reader.join(timeout=30)
    assert session.engine_nodes() == nodes and session.nodes_reader is None
    session.nodes_seen = (time.monotonic() - ray_engine.NODES_STALE_SECONDS - 1, nodes[:1])
    assert session.engine_nodes() == nodes                     # stale: read before the plan


@plait.remote
def where_it_runs():
    return str(plait.get_runtime_context().get_node_id())


def test_a_task_knows_which_ray_node_it_runs_on(three_nodes):
    names = [f"node-{i}" for i in range(3)]
    assert plait.get([where_it_runs.options(node=name).remote() for name in names]) == names


@plait.remote
def pin_from_inside(index):
    """A task picks a node from plait.nodes() and pins a task of its own there."""
    name = plait.nodes()[index].id
    return plait.get(where_it_runs.options(node=name).remote(), timeout=60)


def test_a_task_pins_the_tasks_it_submits_on_the_nodes_it_sees(three_nodes):
    assert plait.get([pin_from_inside.options(node="node-0").remote(index)
                      for index in (1, 2)], timeout=60) == ["node-1", "node-2"]


def test_a_node_that_joins_after_one_died_has_one_name_in_the_driver_and_its_tasks(
        three_nodes):
    """A worker's own session meets the nodes after the driver did: with node-1 gone, Ray's
    list gives a new node another place than it had for the driver. The names are kept in
    the cluster (plait/engines/names.py), so a task names its node as the driver does.
    (Last in the module: it changes the cluster.)"""
    lost = plait.api.session().node_ids["node-1"]
    three_nodes.remove_node(next(node for node in three_nodes.worker_nodes
                                 if node.node_id == lost))
    three_nodes.wait_for_nodes()                  # until Ray no longer lists it alive
    three_nodes.add_node(num_cpus=1)              # its workers' sessions are all new
    three_nodes.wait_for_nodes()
    assert [node.id for node in plait.nodes()] == ["node-0", "node-2", "node-3"]
    assert plait.get(where_it_runs.options(node="node-3").remote(), timeout=60) == "node-3"


def test_a_result_lost_with_its_node_is_made_again_on_a_live_one(three_nodes):
    """Ray remakes a lost result from its task's lineage, as Ray alone does: plait's pin
    (soft, while the node lives) lets it run elsewhere once its node is gone. (After the
    test above, which leaves node-0, node-2 and node-3.)"""
    made = make.options(node="node-2").remote(1)
    plait.wait([made], timeout=60)
    gone = plait.api.session().node_ids["node-2"]
    three_nodes.remove_node(next(node for node in three_nodes.worker_nodes
                                 if node.node_id == gone))
    three_nodes.wait_for_nodes()
    assert plait.get(total.remote(made), timeout=60) == float(1 << 20)
    assert int(plait.get(made, timeout=60).sum()) == 1 << 20
