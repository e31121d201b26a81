"""The API's behaviour on every engine: native, Ray and Dask (one session each, see conftest).

What an engine does not do is refused by name (NotImplementedError naming the engine): those
tests check the refusal on that engine and the feature on the others.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import plait

pytestmark = pytest.mark.cluster


@plait.remote
def inc(x):
    return x + 1


@plait.remote
def total(array):
    return float(array.sum())


@plait.remote
def fails(x):
    raise KeyError(f"no {x}")


@plait.remote(num_returns=2)
def split(x):
    return x, x * 2


@plait.remote
def writes(array):
    array[0] = 1
    return "wrote"


@plait.remote
def fan_out(n):
    return sum(plait.get([inc.remote(i) for i in range(n)]))


@plait.remote
def read_nested(box):
    return plait.get(box["ref"]) * 10


@plait.remote
def where_it_runs():
    context = plait.get_runtime_context()
    return str(context.get_node_id()), context.get_task_id(), context.get_worker_id()


@plait.remote
def nodes_and_a_pinned_task(name):
    """What a task sees of the cluster, and where a task it pins on ``name`` runs."""
    seen = [(node.id, node.address) for node in plait.nodes()]
    return seen, plait.get(where_it_runs.options(node=name).remote(), timeout=60)[0]


@plait.remote
def init_inside():
    """A task's init, as a library's `if not is_initialized(): init()` would make it."""
    try:
        plait.init()
        refused = False
    except plait.ClusterError:
        refused = True
    info = plait.init(ignore_reinit_error=True)
    return plait.is_initialized(), refused, [node.id for node in info.nodes]


@plait.remote
def wait_for_its_own(n):
    """Waits for tasks of its own, pinned where it runs (on Dask: its worker's one thread)."""
    here = str(plait.get_runtime_context().get_node_id())
    refs = [inc.options(node=here).remote(i) for i in range(n)]
    ready, _ = plait.wait(refs, num_returns=n, timeout=20)
    return len(ready)


@plait.remote
class Counter:
    def incr(self):
        return 1


def test_put_and_get_give_equal_read_only_arrays(engine):
    array = np.arange(300_000, dtype=np.float64)
    ref = plait.put(array)
    back = plait.get(ref)
    assert np.array_equal(back, array) and not back.flags.writeable
    assert plait.get(total.remote(ref)) == float(array.sum())
    with pytest.raises(ValueError, match="read-only"):
        plait.get(writes.remote(ref))


def test_chains_lists_and_num_returns(engine):
    assert plait.get(inc.remote(inc.remote(inc.remote(1)))) == 4
    assert plait.get([inc.remote(i) for i in range(5)], timeout=60) == [1, 2, 3, 4, 5]
    first, second = split.remote(21)
    assert plait.get([first, second]) == [21, 42]
    assert inc.remote(first).compute() == 22


def test_wait_compute_and_persist(engine):
    refs = [inc.remote(i) for i in range(4)]
    ready, pending = plait.wait(refs, num_returns=4, timeout=60)
    assert sorted(plait.get(ready)) == [1, 2, 3, 4] and pending == []
    assert plait.compute(inc.remote(1), inc.remote(2)) == (2, 3)
    kept = plait.persist(inc.remote(10))
    assert isinstance(kept, tuple) and len(kept) == 1 and kept[0].compute() == 11


def test_a_get_of_what_is_not_a_ref_is_both_errors_ray_may_raise(engine):
    """Ray's get(5) raises ValueError, its get([5]) TypeError: plait's error is both."""
    for given in (5, [5]):
        with pytest.raises(TypeError, match="expects ObjectRefs"):
            plait.get(given)
        with pytest.raises(ValueError, match="expects ObjectRefs"):
            plait.get(given)


@plait.remote
def aborts():
    class Abort(BaseException):      # (made here, it travels by value to every engine's
        """A user's error class that is not an Exception."""   # client: none imports tests)

    raise Abort("stop here")


def test_a_users_base_exception_is_a_task_error(engine):
    with pytest.raises(plait.TaskError, match="stop here") as raised:
        plait.get(aborts.remote(), timeout=60)
    assert "Abort" in [kind.__name__ for kind in type(raised.value).__mro__]


@plait.remote
def until_exists(path):
    import os
    import time

    while not os.path.exists(path):     # (released by the test, whatever happens in it)
        time.sleep(0.01)
    return "released"


def test_a_get_raises_a_failure_without_waiting_for_the_rest(engine, tmp_path):
    """As Ray's get: the failure of one ref ends the get, whichever its place in the list;
    a get that waited for the rest would time out here (the first task waits for the
    test)."""
    release = tmp_path / "release"
    try:
        blocked = until_exists.remote(str(release))
        with pytest.raises(KeyError, match="no early"):
            plait.get([blocked, fails.remote("early")], timeout=60)
    finally:
        release.touch()
    assert plait.get(blocked, timeout=60) == "released"


def test_results_as_they_complete(engine):
    """Ray's ray.util.as_completed and map_unordered: every value once, in batches."""
    refs = [inc.remote(i) for i in range(7)]
    assert sorted(plait.util.as_completed(refs, chunk_size=3, timeout=60)) == list(range(1, 8))
    got = list(plait.util.as_completed(refs, chunk_size=2, yield_obj_refs=True))
    assert sorted(ref.id for ref in got) == sorted(ref.id for ref in refs)
    mapped = plait.util.map_unordered(inc, range(25), backpressure_size=4, chunk_size=3)
    assert sorted(mapped) == list(range(1, 26))
    assert list(plait.util.as_completed([])) == []
    with pytest.raises(ValueError, match="chunk_size"):
        list(plait.util.as_completed(refs, chunk_size=0))
    with pytest.raises(ValueError, match="num_returns"):
        list(plait.util.map_unordered(inc, [1], num_returns=1))
    with pytest.raises(ValueError, match="backpressure_size"):
        list(plait.util.map_unordered(inc, [1], backpressure_size=0))


def test_compile_explains_without_running(engine):
    ref = inc.remote(inc.remote(0))
    plan = plait.compile(ref)
    assert len(plan.placements) == 2 and "inc" in plan.explain()
    assert plan.visualize().startswith("<svg")
    assert plait.get(ref) == 2


def test_a_task_error_is_plaits_and_the_users(engine):
    failing = fails.remote("key")
    with pytest.raises(plait.TaskError) as raised:
        plait.get(inc.remote(failing))
    error = raised.value
    assert isinstance(error, KeyError) and "no key" in str(error)
    assert (error.function_name, error.task_id) == ("fails", failing.id)
    assert error.node in [node.id for node in plait.nodes()]


@plait.remote
def answer():
    return 42


@plait.remote(num_returns=2)
def pair():
    return "a", "b"


@plait.remote(num_returns=2)
def as_two(value):
    return value


def test_a_value_that_does_not_fit_num_returns_fails_as_rays_does(engine):
    """Any sequence of the right length is split (a numpy array too); a value without a
    length is Ray's TypeError, one of another length its ValueError."""
    with pytest.raises(TypeError, match="has no len"):
        plait.get(as_two.remote(5)[0], timeout=60)
    with pytest.raises(ValueError, match="returned 3 objects, but num_returns=2"):
        plait.get(as_two.remote((1, 2, 3))[1], timeout=60)
    assert plait.get(list(as_two.remote(np.arange(2))), timeout=60) == [0, 1]


def test_calls_without_arguments_run_and_are_traced(engine):
    """(Ray passes such a call no arguments at all: the worker knows the call.)"""
    with plait.trace() as trace:
        assert plait.get([answer.remote(), *pair.remote(), answer.remote()]) == \
            [42, "a", "b", 42]
    assert sorted(t.function_name for t in trace.tasks) == ["answer", "answer", "pair"]
    assert {t.node for t in trace.tasks} <= {node.id for node in plait.nodes()}


@plait.remote
def both():
    return "a", "b"


def test_calls_of_one_function_run_each_with_its_own_options(engine):
    """(The Ray engine reuses the Ray function of the task before only when its function
    and options are the same: here they change from call to call.)"""
    halves = both.options(num_returns=2)
    with plait.trace() as trace:
        assert plait.get([both.remote(), *halves.remote(), both.remote(), *halves.remote(),
                          both.options(name="renamed").remote()]) == \
            [("a", "b"), "a", "b", ("a", "b"), "a", "b", ("a", "b")]
    assert sorted(t.function_name for t in trace.tasks) == ["both"] * 4 + ["renamed"]


def test_tasks_run_where_pinned_and_a_missing_node_is_a_plan_error(engine):
    names = [node.id for node in plait.nodes()]
    assert names[0] == "node-0"
    last = names[-1]
    with plait.trace() as trace:
        plait.get(inc.options(node=last).remote(1))
    assert [(t.function_name, t.node, t.ok) for t in trace.tasks] == [("inc", last, True)]
    with pytest.raises(plait.PlanError, match="node-99"):
        plait.get(inc.options(node="node-99").remote(1))


def test_a_task_knows_its_node_its_worker_and_its_task_id(engine):
    names = [node.id for node in plait.nodes()]
    with plait.trace() as trace:      # (made inside: the idle flusher may run them early)
        found = plait.get([where_it_runs.options(node=name).remote() for name in names])
    assert [node for node, _, _ in found] == names
    assert sorted(task for _, task, _ in found) == sorted(t.task_id for t in trace.tasks)
    workers = [str(worker) for _, _, worker in found if worker is not None]
    assert len(set(workers)) == len(names)        # one of its own on each node
    driver = plait.get_runtime_context()
    assert str(driver.get_node_id()) == "node-0"
    assert driver.get_worker_id() not in (None, *workers)      # the driver's own, as Ray's


def test_a_task_sees_the_cluster_its_driver_sees_and_pins_the_tasks_it_submits(engine):
    """Inside a task, plait.nodes() asks the task's own session (on Ray or Dask: the
    worker's session on that engine, never a plait cluster of its own started there)."""
    nodes = [(node.id, node.address) for node in plait.nodes()]
    last = nodes[-1][0]
    seen, ran_on = plait.get(nodes_and_a_pinned_task.remote(last), timeout=60)
    assert seen == nodes and ran_on == last


def test_init_inside_a_task_is_a_second_init_of_its_drivers_cluster(engine):
    """As Ray: a task runs in its driver's cluster; init there starts no other."""
    initialized, refused, nodes = plait.get(init_inside.remote(), timeout=60)
    assert initialized and refused and nodes == [node.id for node in plait.nodes()]


def test_a_task_waits_for_the_tasks_it_pins_on_its_own_node(engine):
    assert plait.get(wait_for_its_own.remote(3), timeout=60) == 3


def test_the_cluster_resources_and_what_is_free(engine):
    """(What is free leaves out what is all taken, as in Ray: a CPU a task just let go of
    may not be counted free yet.)"""
    total, free = plait.cluster_resources(), plait.available_resources()
    assert total["CPU"] == {"native": 2, "ray": 2, "dask": 3}[engine]
    assert 0 <= free.get("CPU", 0) <= total["CPU"] and 0 < free["memory"] <= total["memory"]


@plait.remote
def put_free_get():
    """A task frees an object it put, then reads it: plait.free holds inside a task too."""
    ref = plait.put(np.ones(10))
    plait.free(ref)
    try:
        plait.get(ref, timeout=10)
    except plait.ObjectFreedError:
        return "freed"
    return "read after free"


def test_rays_ways_to_read_nodes_and_wait_work(engine):
    """``import plait as ray`` scripts read ray.nodes() as dicts and pass fetch_local."""
    nodes = plait.nodes()
    assert [node["NodeID"] for node in nodes] == [node.id for node in nodes]
    assert all(node["Alive"] and node["Resources"]["CPU"] >= 1 for node in nodes)
    assert nodes[0].get("IsHead") and nodes[0].get("no such key", 7) == 7
    assert all(isinstance(node, dict) and "Alive" in node for node in nodes)   # Ray's dicts
    assert json.loads(json.dumps(nodes))[0]["NodeID"] == nodes[0].id
    assert nodes[0]["NodeName"] == nodes[0]["NodeManagerAddress"]        # an IP, as Ray's
    ref = inc.remote(1)
    assert plait.wait([ref], num_returns=1, timeout=60, fetch_local=False) == ([ref], [])


@plait.remote
def its_ip():
    return plait.util.get_node_ip_address()


def test_the_node_ip_address_in_the_driver_and_in_a_task(engine):
    """Ray's ray.util.get_node_ip_address: every engine here runs on loopback."""
    assert plait.util.get_node_ip_address() == "127.0.0.1"
    assert plait.get(its_ip.remote(), timeout=60) == "127.0.0.1"


def test_free_inside_a_task(engine):
    assert plait.get(put_free_get.remote(), timeout=60) == "freed"


def test_free_and_cancel(engine):
    ref = plait.put(np.ones(10))
    plait.free(ref)
    with pytest.raises(plait.ObjectFreedError):
        plait.get(ref)
    lazy = inc.remote(1)
    plait.cancel(lazy)
    with pytest.raises(plait.TaskCancelledError):
        plait.get(lazy)


def test_tasks_submit_tasks(engine):
    assert plait.get(fan_out.remote(4), timeout=60) == 10


def test_refs_nested_in_arguments(engine):
    box = {"ref": inc.remote(1)}
    if engine == "dask":
        with pytest.raises(NotImplementedError, match="dask engine.*nested"):
            read_nested.remote(box)
        return
    assert plait.get(read_nested.remote(box), timeout=60) == 20


def test_actors(engine):
    if engine != "native":
        with pytest.raises(NotImplementedError, match=f"{engine} engine.*actors"):
            Counter.remote()
        with pytest.raises(NotImplementedError, match=f"{engine} engine.*actors"):
            plait.util.list_named_actors()
        return
    counter = Counter.remote()
    assert plait.get(counter.incr.remote()) == 1


def test_a_tasks_runtime_env(engine):
    with_var = inc.options(runtime_env={"env_vars": {"PLAIT_TEST_VAR": "1"}})
    if engine != "native":
        with pytest.raises(NotImplementedError, match=f"{engine.split('-')[0]} engine does "
                                                      f"not take a task's runtime_env"):
            with_var.remote(1)
        return
    assert plait.get(with_var.remote(1), timeout=60) == 2


@plait.remote
def make(megabytes):
    return np.ones(megabytes << 20, dtype=np.uint8)


def test_consumers_run_beside_their_inputs(engine):
    """W7 in small: an array made on each node, a consumer per array, no hints: the plan
    keeps every consumer beside its input, and the engine obeys it (nothing moves)."""
    names = [node.id for node in plait.nodes()]
    arrays = [make.options(node=name).remote(2) for name in names]
    plait.wait(arrays, num_returns=len(arrays), timeout=60)
    with plait.trace() as trace:
        assert plait.get([total.remote(a) for a in arrays], timeout=60) == \
            [float(2 << 20)] * len(names)
    assert sorted(t.node for t in trace.tasks) == sorted(names)
    assert trace.bytes_moved == 0


@plait.remote
def sleeps(seconds):
    import time

    time.sleep(seconds)
    return "slept"


def test_cancel_a_submitted_task(engine):
    """Submitted and (likely) running: its ref raises TaskCancelledError at once (Ray and
    native kill it; Dask forgets it, its thread finishing the 2 s on its own), and so does a
    task that reads it, naming a task of plait's."""
    ref = sleeps.remote(2)
    after = inc.remote(ref)
    plait.wait([after], timeout=0.2)
    plait.cancel(ref)
    with pytest.raises(plait.TaskCancelledError, match=f"task {ref.task.id} was cancelled"):
        plait.get(ref, timeout=30)
    with pytest.raises(plait.TaskCancelledError, match="task (sleeps|inc)-[0-9a-f]+ was"):
        plait.get(after, timeout=30)


@plait.remote(max_retries=0)
def kills_its_worker():
    import os

    os._exit(3)


def test_a_task_that_kills_its_worker_fails_naming_it(engine):
    """(Last here: on Dask the workers it killed come back at new addresses.) Dask counts
    the workers that died running a task against its own ``allowed-failures`` (3), not
    max_retries: the fourth death fails it."""
    with pytest.raises(plait.WorkerCrashedError) as raised:
        plait.get(kills_its_worker.remote(), timeout=120)
    error = raised.value
    assert error.task_id.startswith("kills_its_worker-")
    assert error.function_name == "kills_its_worker"
    assert len(error.attempts) == (4 if engine == "dask" else 1)
