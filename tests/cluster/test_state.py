"""plait.util.state.list_objects: the head's record of the objects alive, as Ray's state
API lists them, in the driver and inside a task."""

from __future__ import annotations

import time

import numpy as np
import pytest

import plait
from plait.util.state import list_actors, list_nodes, list_objects

pytestmark = pytest.mark.cluster


def listed(object_id: str) -> list:
    return list_objects(filters=[("object_id", "=", object_id)])


def gone_within(object_id: str, seconds: float) -> bool:
    """Whether ``object_id`` leaves the listing within ``seconds`` (a dropped ref reaches
    the head with the session's next message or flush, not at once)."""
    deadline = time.monotonic() + seconds
    while listed(object_id):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_put_object_is_listed_ready_with_its_size_until_its_ref_is_dropped(cluster):
    ref = plait.put(np.zeros(1 << 20, dtype=np.uint8))
    object_id = ref.hex()
    assert object_id == ref.id
    (row,) = listed(object_id)
    assert (row.state, row["state"], row.holders) == ("READY", "READY", 1)
    assert row.object_size >= 1 << 20
    del ref
    assert gone_within(object_id, 10)


def test_each_streamed_value_leaves_the_listing_once_its_ref_is_dropped(cluster):
    @plait.remote
    def values(n):
        for i in range(n):
            yield np.full(1 << 20, i, dtype=np.uint8)

    seen = 0
    for ref in values.remote(3):     # not enumerate(): its reused tuple would keep the ref
        object_id = ref.hex()
        assert plait.get(ref)[0] == seen
        del ref
        assert gone_within(object_id, 10)
        seen += 1
    assert seen == 3


def test_filters_compare_as_strings_and_unknown_predicates_are_refused(cluster):
    ref = plait.put(1)
    assert [r.object_id for r in list_objects(filters=[("object_id", "=", ref.id)])] == [ref.id]
    assert ref.id not in [r.object_id for r in
                          list_objects(filters=[("object_id", "!=", ref.id)], limit=10_000)]
    with pytest.raises(ValueError, match="predicate"):
        list_objects(filters=[("object_id", "~", ref.id)])


def test_a_task_lists_the_objects_of_the_cluster_through_its_worker(cluster):
    ref = plait.put("kept")

    @plait.remote
    def sees(object_id):
        return [row.object_id for row in list_objects(filters=[("object_id", "=", object_id)])]

    assert plait.get(sees.remote(ref.id)) == [ref.id]


@plait.remote
class Named:
    def __init__(self, fail=False):
        if fail:
            raise ValueError("no")

    def ping(self):
        return "pong"


def test_actors_are_listed_by_rays_names_and_states(cluster):
    alive = Named.options(name="listed", namespace="tests").remote()
    plait.get(alive.ping.remote(), timeout=30)
    killed = Named.remote()
    plait.get(killed.ping.remote(), timeout=30)
    plait.kill(killed)
    rows = {row.actor_id: row for row in list_actors(limit=10_000)}
    mine = rows[alive._actor_id]
    assert (mine.class_name, mine.state, mine.name, mine.ray_namespace, mine["node_id"],
            mine.num_restarts, mine.is_detached) == ("Named", "ALIVE", "listed", "tests",
                                                     "node-0", 0, False)
    assert rows[killed._actor_id].state == "DEAD"
    assert [r.actor_id for r in list_actors(filters=[("name", "=", "listed")])] == [
        alive._actor_id]
    plait.kill(alive)


def test_nodes_are_listed_alive_with_the_head_first(cluster):
    (head,) = list_nodes()
    assert (head.node_id, head.state, head.is_head_node, head.resources_total["CPU"]) == (
        "node-0", "ALIVE", True, 2.0)
    assert list_nodes(filters=[("is_head_node", "=", False)]) == []
