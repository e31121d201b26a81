"""plait.cluster_utils.Cluster: nodes added and removed while a driver runs, as Ray's tests
build their clusters (``ray_start_cluster``), and nothing left once it is shut down."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import pytest

import plait
from plait.cluster_utils import Cluster
from plait.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from tests.cluster.gates import wait_exit
from tests.conftest import assert_nothing_leaked, processes

pytestmark = pytest.mark.cluster


@plait.remote
def where():
    return plait.get_runtime_context().get_node_id()


@plait.remote(max_retries=1)
def where_after(path):
    """The node it ended on, once ``path`` exists (the test creates it; 30 s at most)."""
    deadline = time.monotonic() + 30
    while not os.path.exists(path):              # released by the test, not by a timer
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.005)
    return plait.get_runtime_context().get_node_id()


@plait.remote
def where_big():
    """Its node beside 1 MiB: a result stored in that node's arena, lost with it."""
    return plait.get_runtime_context().get_node_id(), np.ones(1 << 20, dtype=np.uint8)


@plait.remote
def big_then_stuck(path):
    """1 MiB the first time; made again (``path`` exists by then), it waits 30 s."""
    if os.path.exists(path):
        time.sleep(30)
    open(path, "w").close()
    return np.ones(1 << 20, dtype=np.uint8)


@plait.remote
class Where:
    def node(self):
        return plait.get_runtime_context().get_node_id()


@plait.remote
class Counted:
    def __init__(self):
        self.value = 0

    def increase(self):
        self.value += 1
        return self.value

    def node(self):
        return plait.get_runtime_context().get_node_id()


@pytest.fixture
def cluster():
    """A head that runs no tasks, and this process as its driver; checked for leaks."""
    plait.shutdown()
    made = Cluster(initialize_head=True, connect=True, head_node_args={"num_cpus": 0})
    yield made
    plait.shutdown()
    made.shutdown()
    assert_gone(made.session)


@pytest.fixture(scope="module")
def shaped():
    """A head and two nodes offering different resources, shared by the placement tests."""
    plait.shutdown()
    made = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    made.add_node(num_cpus=1, resources={"left": 1})
    made.add_node(num_cpus=2, resources={"right": 2}, num_gpus=1)
    plait.init(address=made.address)
    yield made
    plait.shutdown()
    made.shutdown()
    assert_nothing_leaked()


def test_nodes_are_listed_with_their_cpus_and_resources(shaped):
    listed = {n.id: (n.workers, dict(n.resources)) for n in plait.nodes()}
    assert [n.node_id for n in shaped.list_all_nodes()] == ["node-0", "node-1", "node-2"]
    assert list(listed) == ["node-0", "node-1", "node-2"]
    assert listed["node-1"][0] == 1 and listed["node-1"][1]["left"] == 1
    assert listed["node-2"][0] == 2 and listed["node-2"][1]["right"] == 2
    assert listed["node-2"][1]["GPU"] == 1
    totals = plait.cluster_resources()
    assert (totals["CPU"], totals["left"], totals["right"], totals["GPU"]) == (3, 1, 2, 1)


def test_tasks_asking_for_a_nodes_resource_run_there(shaped):
    refs = [where.options(resources={"left": 1}).remote() for _ in range(3)]
    refs += [where.options(resources={"right": 1}).remote() for _ in range(3)]
    refs.append(where.options(num_gpus=1).remote())
    assert plait.get(refs, timeout=60) == ["node-1"] * 3 + ["node-2"] * 4


def test_a_node_affinity_pin_and_a_node_without_cpus(shaped):
    pinned = [where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        node.node_id, soft=False)).remote() for node in shaped.worker_nodes]
    assert plait.get(pinned, timeout=60) == ["node-1", "node-2"]
    here = plait.get(where.remote(), timeout=60)        # an Id, as get_node_id() gives
    again = where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(here)).remote()
    assert plait.get(again, timeout=60) == here
    anywhere = plait.get([where.remote() for _ in range(6)], timeout=60)
    assert set(anywhere) <= {"node-1", "node-2"}        # the head has no worker slot
    soft = NodeAffinitySchedulingStrategy("node-gone", soft=True)   # Ray: runs elsewhere
    assert plait.get(where.options(scheduling_strategy=soft).remote(), timeout=60) in (
        "node-1", "node-2")


def test_a_node_added_while_a_driver_runs_is_used(cluster):
    waiting = where.options(resources={"late": 1}).remote()
    assert plait.wait([waiting], timeout=0)[0] == []     # no node offers it yet
    node = cluster.add_node(num_cpus=1, resources={"late": 1})
    assert plait.get(waiting, timeout=60) == node.node_id
    assert [n.id for n in plait.nodes()] == ["node-0", node.node_id]


SECOND_DRIVER = textwrap.dedent("""
    import json, sys
    import plait

    @plait.remote
    def echo(x):
        return x

    @plait.remote
    class Tally:
        def __init__(self):
            self.n = 0

        def add(self):
            self.n += 1
            return self.n

    plait.init(address=sys.argv[1])
    mine, tally = plait.put("second"), Tally.remote()
    print(json.dumps({"put": plait.get(mine, timeout=30),
                      "task": plait.get(echo.remote("second"), timeout=30),
                      "tally": plait.get([tally.add.remote() for _ in range(3)], timeout=30),
                      "ids": [mine.hex(), tally.actor_id]}))
""")


@plait.remote
def echo(x):
    return x


@plait.remote
class Tally:
    def __init__(self):
        self.n = 0

    def add(self):
        self.n += 1
        return self.n


def test_two_drivers_of_one_cluster_never_share_an_id(cluster):
    """Every driver named its objects, calls and actors put-1, echo-2, Tally-3, ... and
    the head took equal names for the same thing: a driver got the other's result, its
    actor, or its cancel. Ray's ids are unique cluster-wide; so are plait's now."""
    cluster.add_node(num_cpus=2)
    mine, tally = plait.put("first"), Tally.remote()
    assert plait.get([tally.add.remote() for _ in range(3)], timeout=30) == [1, 2, 3]
    call = echo.remote("first")
    second = subprocess.run([sys.executable, "-c", SECOND_DRIVER, cluster.address],
                            capture_output=True, text=True, timeout=120)
    said = json.loads(second.stdout.splitlines()[-1])
    assert (said["put"], said["task"], said["tally"]) == ("second", "second", [1, 2, 3])
    assert not {mine.hex(), tally.actor_id} & set(said["ids"])
    assert plait.get([mine, call, tally.add.remote()], timeout=30) == ["first", "first", 4]


def test_a_result_waited_for_on_a_node_that_joined_then_left_is_made_again(cluster):
    """The driver learned where the result was (its wait); that node joined after the
    driver connected and has left since: the get asks the head again, which remakes it."""
    first = cluster.add_node(num_cpus=1)
    ref = where_big.options(node=first.node_id).remote()
    assert plait.wait([ref], timeout=60) == ([ref], [])
    second = cluster.add_node(num_cpus=1)
    cluster.remove_node(first)
    node, array = plait.get(ref, timeout=60)
    assert node == second.node_id and array.nbytes == 1 << 20


def test_a_get_that_asks_again_for_a_result_whose_node_left_keeps_its_timeout(cluster,
                                                                            tmp_path):
    first = cluster.add_node(num_cpus=1)
    ref = big_then_stuck.options(node=first.node_id).remote(str(tmp_path / "made"))
    assert plait.wait([ref], timeout=60) == ([ref], [])
    cluster.add_node(num_cpus=1)
    cluster.remove_node(first)
    started = time.monotonic()
    with pytest.raises(plait.GetTimeoutError):
        plait.get(ref, timeout=1)                        # its remaking takes 30 s
    assert time.monotonic() - started < 10


def test_a_removed_nodes_running_task_is_retried_on_another(cluster, tmp_path):
    first = cluster.add_node(num_cpus=1, resources={"spot": 1})
    release = tmp_path / "go"
    ref = where_after.options(resources={"spot": 0.01}).remote(str(release))
    plait.wait([ref], timeout=0)                          # submitted: it runs on `first`
    plait.memory_summary()                                # a round trip: the head has it
    second = cluster.add_node(num_cpus=1, resources={"spot": 1})
    cluster.remove_node(first, allow_graceful=False)
    cluster.wait_for_nodes()
    assert [n.id for n in plait.nodes()] == ["node-0", second.node_id]
    release.touch()
    assert plait.get(ref, timeout=60) == second.node_id


def test_with_no_node_left_to_run_them_tasks_wait_for_one_to_join(cluster, tmp_path):
    """The head runs no tasks: a lost result's rebuild and a dead node's running task wait
    for a node that does (as in Ray), and run there once it joins."""
    first = cluster.add_node(num_cpus=1)
    made = where_big.remote()
    assert plait.get(made, timeout=60)[0] == first.node_id
    release = tmp_path / "go"
    running = where_after.remote(str(release))
    plait.wait([running], timeout=0)
    plait.memory_summary()
    cluster.remove_node(first, allow_graceful=False)
    release.touch()
    assert plait.wait([running], timeout=0.5)[0] == []
    second = cluster.add_node(num_cpus=1)
    assert plait.get(running, timeout=60) == second.node_id
    assert plait.get(made, timeout=60)[0] == second.node_id      # run again, there


def test_system_config_is_taken_when_starting_and_refused_when_joining(cluster):
    plait.shutdown()
    with pytest.raises(ValueError, match="_system_config"):
        plait.init(address=cluster.address, _system_config={"object_timeout_milliseconds": 1})
    plait.init(address=cluster.address)
    assert [n.id for n in plait.nodes()] == ["node-0"]


def test_a_plain_init_joins_the_cluster_this_process_runs(cluster):
    plait.shutdown()
    plait.init()                                 # as Ray's ray.init() beside its Cluster
    assert [n.pid for n in plait.nodes()] == [cluster.head_node.pid]
    plait.shutdown()
    plait.init(address="auto")
    assert [n.pid for n in plait.nodes()] == [cluster.head_node.pid]


def test_an_actor_on_a_removed_node_restarts_on_another(cluster):
    first = cluster.add_node(num_cpus=1, resources={"spot": 1})
    keeps = Where.options(resources={"spot": 0.5}, max_restarts=1, max_task_retries=1).remote()
    ends = Where.options(resources={"spot": 0.5}).remote()
    assert plait.get([keeps.node.remote(), ends.node.remote()], timeout=60) == \
        [first.node_id] * 2
    second = cluster.add_node(num_cpus=1, resources={"spot": 1})
    cluster.remove_node(first)       # gracefully: one restart, elsewhere (before, the node
    #                                  going restarted it too, and its one restart was spent)
    assert plait.get(keeps.node.remote(), timeout=60) == second.node_id
    with pytest.raises(plait.ActorDiedError):
        plait.get(ends.node.remote(), timeout=60)


def test_an_actor_whose_node_died_waits_for_a_node_that_can_host_it(cluster):
    """As Ray's: no node has a CPU for it when its node goes (the head runs no tasks),
    so it waits, restarting, and starts on the next node that joins (before: dead)."""
    first = cluster.add_node(num_cpus=1)
    counter = Counted.options(num_cpus=1, max_restarts=1, max_task_retries=-1).remote()
    assert plait.get(counter.increase.remote(), timeout=60) == 1
    cluster.remove_node(first)
    later = counter.increase.remote()
    assert plait.wait([later], timeout=1) == ([], [later])      # it waits, not fails
    second = cluster.add_node(num_cpus=1)
    assert plait.get(later, timeout=60) == 1                    # a fresh start, there
    assert plait.get(counter.node.remote(), timeout=60) == second.node_id


def test_removing_a_node_stops_all_its_processes_and_removes_its_files(cluster):
    node = cluster.add_node(num_cpus=2)
    actor = Where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        node.node_id, soft=False)).remote()
    assert plait.get(actor.node.remote(), timeout=60) == node.node_id
    from plait.executor.wire.config import descendants

    processes = [node.pid] + descendants(node.pid)
    assert len(processes) >= 4                  # the node, its forker, 2 workers, the actor
    cluster.remove_node(node, allow_graceful=False)
    assert all(wait_exit(pid, timeout=0) for pid in processes)
    assert not os.path.exists(f"/dev/shm/{node.config.arena_name}")
    assert not node.any_processes_alive()


def test_wait_for_nodes_times_out_for_a_node_that_died_unremoved(cluster):
    node = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes(timeout=30)
    os.kill(node.pid, signal.SIGKILL)
    assert wait_exit(node.pid)
    with pytest.raises(TimeoutError, match=node.node_id):
        cluster.wait_for_nodes(timeout=1)


def test_unknown_node_arguments_are_refused_and_rays_own_are_taken():
    made = Cluster()
    with pytest.raises(TypeError, match="no_such_thing"):
        made.add_node(no_such_thing=1)
    with pytest.raises(RuntimeError, match="uninitialized"):
        Cluster(connect=True)
    made.shutdown()
    assert made.address is None and made.list_all_nodes() == []
    assert_gone(made.session)


def test_a_cluster_left_running_stops_at_exit_and_with_its_process():
    """Two programs that never call shutdown: one exits (the exit hook stops its cluster),
    one is killed (the nodes see their parent go and stop themselves)."""
    program = textwrap.dedent("""
        import os, signal, sys
        import plait
        from plait.cluster_utils import Cluster
        cluster = Cluster(initialize_head=True, connect=True)
        cluster.add_node(num_cpus=1)
        print(cluster.session, flush=True)
        if sys.argv[1] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise SystemExit(3)
    """)
    for how in ("exit", "kill"):
        run = subprocess.run([sys.executable, "-c", program, how], capture_output=True,
                             text=True, timeout=120, cwd=os.getcwd())
        session = run.stdout.strip()
        assert session, run.stderr
        assert run.returncode == (3 if how == "exit" else -signal.SIGKILL)
        assert_gone(session)


def assert_gone(session):
    """No process, segment, run or spill directory of the cluster ``session`` is left
    (processes that are on their way out are waited for, on pidfds)."""
    prefix = f"plait-{session}-"
    left = [pid for pid, state, cmdline in processes() if prefix in cmdline and state != "Z"]
    assert all(wait_exit(pid) for pid in left), f"{session}: processes outlived it"
    assert [n for n in os.listdir("/dev/shm") if n.startswith(prefix)] == []
    assert [n for n in os.listdir(tempfile.gettempdir()) if n.startswith(prefix)] == []
