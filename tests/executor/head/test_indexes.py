"""The head's indexes (assignments.py, locations.py) follow every change of what they index."""

import pytest

from plait.executor.head.assignments import Assignments, NodeLoads
from plait.executor.head.locations import Locations
from plait.executor.wire import protocol as p


def spec(task_id: str, node: str, outputs: tuple[str, ...] | None = None) -> p.TaskSpec:
    return p.TaskSpec(task_id, "f@1", "f", b"", (), (), outputs or (task_id,), 3, node)


def test_assignments_index_tasks_by_node_and_objects_by_task():
    tasks = Assignments()
    tasks["t1"] = spec("t1", "node-1", ("t1.0", "t1.1"))
    tasks["t2"] = spec("t2", "node-1")
    tasks["t3"] = spec("t3", "node-2")
    assert tasks.on("node-1") == ["t1", "t2"] and tasks.count("node-2") == 1
    assert tasks.producer == {"t1.0": "t1", "t1.1": "t1", "t2": "t2", "t3": "t3"}
    tasks["t2"] = spec("t2", "node-2")                        # moved
    assert tasks.on("node-1") == ["t1"] and tasks.on("node-2") == ["t3", "t2"]
    assert tasks.pop("t1").node == "node-1" and tasks.pop("t1", None) is None
    del tasks["t3"]
    assert tasks.on("node-1") == [] and tasks.producer == {"t2": "t2"}
    assert tasks.problems() == []
    with pytest.raises(KeyError):
        tasks.pop("t1")
    with pytest.raises(TypeError):
        tasks.update({"t4": spec("t4", "node-1")})          # would bypass the indexes


def test_node_loads_name_the_least_loaded_node_per_worker_ties_to_the_earlier():
    tasks = Assignments()
    loads = NodeLoads(tasks.count)
    tasks.changed = loads.changed
    loads.reset({"node-0": 2, "node-1": 1, "node-2": 1})
    assert loads.least() == "node-0"
    tasks["a"] = spec("a", "node-0")                         # node-0: 0.5 per worker
    assert loads.least() == "node-1"
    tasks["b"] = spec("b", "node-1")
    tasks["c"] = spec("c", "node-2")
    assert loads.least() == "node-0"                         # 0.5 < 1
    del tasks["c"]
    assert loads.least() == "node-2"
    loads.reset({"node-0": 2, "node-1": 1})                  # node-2 left
    assert loads.least() == "node-0"
    for i in range(1000):                                    # the heap stays bounded
        tasks[f"x{i}"] = spec(f"x{i}", "node-1")
    assert len(loads.heap) <= 4 * 2 + 64 + 1


def test_locations_index_objects_by_node():
    where = Locations()
    where.add("o1", "node-1")
    where.add("o1", "node-2")
    where.add("o2", "node-1")
    assert where.on("node-1") == ["o1", "o2"] and where["o1"] == {"node-1", "node-2"}
    where.discard("o1", "node-1")
    assert where.on("node-1") == ["o2"] and where["o1"] == {"node-2"}
    assert where.pop("o1") == {"node-2"} and where.on("node-2") == []
    assert where.pop("absent") == set() and where.problems() == []
