"""Ray's resources on a running cluster: GPUs and custom resources a node offers, held by
the tasks and actors that ask for them; max_calls; what no node offers; Ray's init and
call spellings (object_store_memory, _remote, num_returns=0); an oversized function."""

from __future__ import annotations

import os

import numpy as np
import pytest

import plait
from tests.cluster.gates import wait_for_file
from tests.conftest import shut_down_checked

pytestmark = pytest.mark.cluster

MIB = 1 << 20


@pytest.fixture(scope="module")
def offered():
    plait.shutdown()
    plait.init(num_workers=2, num_gpus=1, resources={"disk": 1}, object_store_memory=64 * MIB)
    yield
    shut_down_checked()


@plait.remote
def seen():
    """What a task holds and sees, and its process."""
    return (plait.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES"),
            plait.get_runtime_context().get_assigned_resources(), plait.available_resources(),
            os.getpid())


@plait.remote(num_gpus=1)
class OnGpu:
    def ids(self):
        return plait.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")


def test_a_node_offers_what_init_names_and_tasks_hold_it_while_they_run(offered):
    total = plait.cluster_resources()
    assert {k: total[k] for k in ("CPU", "GPU", "disk", "object_store_memory")} == {
        "CPU": 2.0, "GPU": 1.0, "disk": 1.0, "object_store_memory": 64.0 * MIB}
    gpus, visible, held, free, _ = plait.get(
        seen.options(num_gpus=1, resources={"disk": 0.5}).remote(), timeout=30)
    assert (gpus, visible) == ([0], "0")
    assert held == {"CPU": 1.0, "GPU": 1.0, "disk": 0.5}
    assert free["CPU"] == 1.0 and free["disk"] == 0.5 and "GPU" not in free
    assert plait.available_resources()["disk"] == 1.0          # given back at its end
    assert plait.get(seen.remote(), timeout=30)[:2] == ([], None)


def test_each_node_offers_rays_node_resource_and_the_head_its_own(offered):
    """Ray's way to run a task on a given node: a sliver of ``node:<its IP>``."""
    ip = plait.util.get_node_ip_address()
    total = plait.cluster_resources()
    assert total[f"node:{ip}"] == 1.0 and total["node:__internal_head__"] == 1.0
    here = seen.options(resources={f"node:{ip}": 0.01}).remote()
    head = seen.options(resources={"node:__internal_head__": 0.001}).remote()
    assert plait.get(here, timeout=30)[2][f"node:{ip}"] == 0.01
    assert plait.get(head, timeout=30)[2]["node:__internal_head__"] == 0.001


def test_a_task_waits_while_others_hold_its_resources(offered, tmp_path):
    gate = tmp_path / "go"
    holder = wait_for_file.options(resources={"disk": 1}).remote(str(gate), "first")
    waiter = wait_for_file.options(resources={"disk": 1}).remote(str(tmp_path), "second")
    assert plait.get(seen.remote(), timeout=30)          # a plain task passes them by
    assert plait.wait([waiter], timeout=0.5) == ([], [waiter])
    gate.touch()
    assert plait.get([holder, waiter], timeout=30) == ["first", "second"]


def test_an_actor_holds_its_gpu_for_its_life(offered):
    actor = OnGpu.remote()
    assert plait.get(actor.ids.remote(), timeout=30) == ([0], "0")
    gpu_task = seen.options(num_gpus=1).remote()
    assert plait.wait([gpu_task], timeout=0.5)[0] == []
    plait.kill(actor)
    assert plait.get(gpu_task, timeout=30)[0] == [0]


@plait.remote(num_cpus=1)
class OnCpu:
    def pid(self):
        return os.getpid()


def test_actors_hold_their_cpus_and_one_more_waits_for_one_to_end(offered):
    """Ray keeps an actor pending until its num_cpus are free (the way to limit how many
    run at once); before, plait started it on CPUs other actors held."""
    first, second = OnCpu.remote(), OnCpu.remote()
    assert len(set(plait.get([first.pid.remote(), second.pid.remote()], timeout=30))) == 2
    third = OnCpu.remote()
    waiting = third.pid.remote()
    assert plait.wait([waiting], timeout=0.5) == ([], [waiting])
    plait.kill(first)
    assert plait.get(waiting, timeout=30) > 0
    plait.kill(second)
    plait.kill(third)


def test_gpu_tasks_and_max_calls_get_processes_of_their_own(offered):
    cpu_pid = plait.get(seen.remote(), timeout=30)[-1]
    gpu_pid = plait.get(seen.options(num_gpus=1).remote(), timeout=30)[-1]
    assert gpu_pid != cpu_pid
    once = seen.options(max_calls=1)
    pids = [plait.get(once.remote(), timeout=30)[-1] for _ in range(3)]
    assert len(set(pids)) == 3


def test_what_no_node_offers_waits_and_its_get_says_why(offered):
    wanted = seen.options(resources={"tape": 1}).remote()
    reader = seen.options().remote()
    assert plait.get(reader, timeout=30)                     # the rest runs
    assert plait.wait([wanted], timeout=0.1) == ([], [wanted])
    for asked in (lambda: plait.get(wanted, timeout=30), lambda: plait.wait([wanted]),
                  lambda: wanted.future().result(timeout=30)):
        with pytest.raises(plait.PlanError, match="1 tape, which no node offers") as caught:
            asked()
        assert caught.value.infeasible


@plait.remote
class Taper:
    def ok(self):
        return 1


def test_an_actor_no_node_can_host_killed_fails_its_calls_with_actor_died(offered):
    """As Ray's calls of an actor killed while it waits to be placed."""
    taper = Taper.options(resources={"tape": 1}).remote()
    before = taper.ok.remote()
    plait.kill(taper)
    for call in (before, taper.ok.remote()):
        with pytest.raises(plait.ActorDiedError, match="before any node could host it"):
            plait.get(call, timeout=30)


@plait.remote
def listed(n):
    return list(range(n))


def test_rays_older_call_spellings(offered):
    assert listed._remote([0], num_returns=0) is None
    first, second = listed._remote(args=[2], num_returns=2)
    assert plait.get([first, second], timeout=30) == [0, 1]
    actor = OnGpu._remote(num_gpus=0)
    assert plait.get(actor.ids._remote(), timeout=30) == ([], None)


def test_a_function_capturing_too_much_is_refused_at_remote(offered):
    big = np.zeros(100 * 1024 * 125)                   # 100 MB, as Ray's test has it

    @plait.remote
    def uses():
        return len(big)

    with pytest.raises(ValueError, match="The remote function .*uses is too large"):
        uses.remote()

