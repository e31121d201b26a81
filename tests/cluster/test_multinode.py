"""Several nodes on this machine: placement by the compiler, transfers, node failures."""

from __future__ import annotations

import os
from collections import Counter
import signal

import numpy as np
import pytest

import plait

pytestmark = pytest.mark.cluster

MIB = 1 << 20


@pytest.fixture(scope="module")
def three_nodes():
    plait.shutdown()
    plait.init(num_nodes=3, num_workers=1)
    yield plait.nodes()
    plait.shutdown()
    from tests.conftest import assert_nothing_leaked

    assert_nothing_leaked()


@plait.remote
def total(x):
    return float(x.sum())


@plait.remote
def make(n, value):
    return np.full(n, value)


@plait.remote
def node_pid(_=None):
    return os.getpid()


def stored_on(node: str) -> list[str]:
    summary = plait.memory_summary()
    section = summary.split(f"{node}:")[1].split("\nnode-")[0]
    return [line.split()[0] for line in section.splitlines()[2:]]


def test_nodes_are_listed_head_first(three_nodes):
    assert [n.id for n in three_nodes] == ["node-0", "node-1", "node-2"]
    assert three_nodes[0].is_head and not three_nodes[1].is_head
    assert len({n.pid for n in three_nodes}) == 3


def test_pinned_tasks_run_on_their_node_and_pull_inputs_once(three_nodes):
    big = plait.put(np.ones(4 * MIB))                       # 32 MiB on node-0
    refs = [total.options(node=f"node-{i % 3}").remote(big) for i in range(9)]
    assert plait.get(refs) == [float(4 * MIB)] * 9
    copies = [node for node in ("node-0", "node-1", "node-2") if big.id in stored_on(node)]
    assert copies == ["node-0", "node-1", "node-2"]        # one copy per node, no more


def test_results_move_between_nodes(three_nodes):
    made = make.options(node="node-2").remote(2 * MIB, 3.0)
    assert plait.get(total.options(node="node-1").remote(made)) == 3.0 * 2 * MIB
    assert plait.get(made)[0] == 3.0                          # the driver reads node-2's copy


def test_compiler_keeps_large_inputs_where_they_are(three_nodes):
    made = make.options(node="node-1").remote(4 * MIB, 1.0)
    plait.persist(made)
    plan = plait.compile(total.remote(made))
    (placement,) = plan.placements.values()
    assert placement.node == "node-1" and plan.bytes_moved == 0


def test_small_tasks_spread_over_all_nodes(three_nodes):
    """The plan spreads them; where they end up running may differ (the head moves queued
    tasks off a node that a loaded machine starves: 2 of 3 ran them at load 16), so the
    plan is what is checked. Evenly within a few: the plan counts what each node still
    has queued, and a loaded machine may not have finished the last test's tasks
    ([9, 10, 11] seen at load 12)."""
    refs = [node_pid.remote(i) for i in range(30)]
    plan = plait.compile(*refs)
    per_node = Counter(p.node for p in plan.placements.values())
    assert len(per_node) == 3 and max(per_node.values()) - min(per_node.values()) <= 3, per_node
    assert len(plait.get(refs, timeout=60)) == 30


def test_unknown_node_is_an_error_at_submission(three_nodes):
    with pytest.raises(plait.PlanError, match="node-9"):
        plait.get(total.options(node="node-9").remote(1))


@plait.remote
def wait_for(path):
    import time

    deadline = time.monotonic() + 30
    while not os.path.exists(path):          # released by the test, not by a timer
        assert time.monotonic() < deadline
        time.sleep(0.005)
    return os.getpid()


@plait.remote
def put_inside(n):
    return [plait.put(np.full(n, 5.0))]          # a put has no lineage to rebuild it from


def test_a_dead_node_is_noticed_its_tasks_retried_and_its_objects_lost(fresh, tmp_path):
    plait.init(num_nodes=2, num_workers=1)
    victim = plait.nodes()[1]
    (only_there,) = plait.get(put_inside.options(node="node-1").remote(MIB))
    release = tmp_path / "go"
    stuck = wait_for.options(node="node-1", max_retries=1).remote(str(release))
    plait.wait([stuck], timeout=0)                 # submitted: queued or running there
    plait.memory_summary()                             # a round trip: the head has it now
    os.kill(victim.pid, signal.SIGKILL)
    with pytest.raises(plait.ObjectLostError, match="node-1"):
        plait.get(only_there, timeout=30)
    release.touch()
    assert plait.get(stuck, timeout=30) != victim.pid      # retried on node-0
    assert not os.path.exists(f"/dev/shm/{victim.arena}")


def test_a_task_out_of_retries_on_dying_nodes_fails(fresh, tmp_path):
    plait.init(num_nodes=2, num_workers=1)
    victim = plait.nodes()[1]
    stuck = wait_for.options(node="node-1", max_retries=0).remote(str(tmp_path / "never"))
    plait.wait([stuck], timeout=0)
    plait.memory_summary()
    os.kill(victim.pid, signal.SIGKILL)
    with pytest.raises(plait.WorkerCrashedError, match="node-1 died"):
        plait.get(stuck, timeout=30)


def test_a_dead_head_is_reported_promptly_and_its_nodes_stop(fresh):
    plait.init(num_nodes=2, num_workers=1)
    head, other = plait.nodes()
    ref = plait.put(np.ones(MIB))
    os.kill(head.pid, signal.SIGKILL)
    with pytest.raises(plait.HeadUnavailableError):
        plait.get(total.remote(ref), timeout=30)
    _wait_gone(other.pid, timeout=15)          # node-1 notices the silent head and stops
    assert not os.path.exists(f"/dev/shm/{other.arena}")


def _wait_gone(pid: int, timeout: float) -> None:
    import select

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        assert select.select([fd], [], [], timeout)[0], f"{pid} still running"
    finally:
        os.close(fd)


def test_trace_records_tasks_and_transfers_and_matches_the_plan(fresh, tmp_path):
    import json

    plait.init(num_nodes=2, num_workers=1)
    made = make.options(node="node-1").remote(2 * MIB, 1.0)
    plait.persist(made)
    consumer = total.options(node="node-0").remote(made)
    plan = plait.compile(consumer)
    with plait.trace() as t:
        assert plait.get(consumer) == 2.0 * MIB
    assert [(e.function_name, e.node) for e in t.tasks] == [("total", "node-0")]
    (transfer,) = t.transfers
    assert (transfer.object_id, transfer.src, transfer.dst) == (made.id, "node-1", "node-0")
    assert t.bytes_moved == plan.bytes_moved == transfer.nbytes
    t.save(str(tmp_path / "run.json"))
    events = json.loads((tmp_path / "run.json").read_text())["traceEvents"]
    assert {e["cat"] for e in events if e["ph"] == "X"} == {"task", "transfer"}
    everything = plait.timeline(str(tmp_path / "all.json"))
    assert sum(e.get("cat") == "task" for e in everything) == 2


@plait.remote
def produce_unknown_size(n):
    return np.ones(n)


@plait.remote
def first_element(x):
    return float(x[0])


def test_readers_of_a_result_that_came_out_big_move_to_it_instead_of_copying(fresh):
    plait.init(num_nodes=2, num_workers=1)
    made = produce_unknown_size.options(node="node-1").remote(4 * MIB)   # 32 MiB, unguessed
    reader = first_element.remote(made)
    plan = plait.compile(reader)
    assert plan.placements[reader.id.split(".")[0]].node == "node-0"   # guessed small: spread
    with plait.trace() as t:
        assert plait.get(reader) == 1.0
    ran_on = {e.task_id: e.node for e in t.tasks}
    assert ran_on[reader.id] == "node-1" and t.bytes_moved == 0


def test_a_lost_task_result_is_rebuilt_from_its_lineage(fresh):
    plait.init(num_nodes=2, num_workers=1)
    victim = plait.nodes()[1]
    made = make.options(node="node-1").remote(2 * MIB, 7.0)
    plait.persist(made)
    doubled = total.remote(made)                       # placed on node-1, next to its input
    os.kill(victim.pid, signal.SIGKILL)
    plait.memory_summary()                             # the head has seen node-1 go
    assert plait.get(made, timeout=60)[0] == 7.0       # re-run on node-0
    assert plait.get(doubled, timeout=60) == 7.0 * 2 * MIB


def test_rebuilding_stops_after_max_retries(fresh):
    plait.init(num_nodes=2, num_workers=1)
    victim = plait.nodes()[1]
    made = make.options(node="node-1", max_retries=0).remote(MIB, 1.0)
    plait.persist(made)
    os.kill(victim.pid, signal.SIGKILL)
    plait.memory_summary()                             # the head has seen node-1 go
    with pytest.raises(plait.ReconstructionFailedError):
        plait.get(made, timeout=60)


def test_a_replica_survives_its_primarys_node_and_nothing_is_re_run(fresh):
    plait.init(num_nodes=3, num_workers=1)
    victim = next(n for n in plait.nodes() if n.id == "node-1")
    made = make.options(node="node-1").remote(2 * MIB, 5.0)
    copied = total.options(node="node-2").remote(made)     # pulls a replica to node-2
    assert plait.get(copied, timeout=60) == 5.0 * 2 * MIB
    os.kill(victim.pid, signal.SIGKILL)
    for _ in range(1000):                 # until the head has seen it go (a round trip each)
        if all(n.id != "node-1" for n in plait.nodes()):
            break
    with plait.trace() as trace:
        again = total.options(node="node-2").remote(made)
        assert plait.get(again, timeout=60) == 5.0 * 2 * MIB
        assert plait.get(made, timeout=60)[0] == 5.0
    assert [t.function_name for t in trace.tasks] == ["total"]     # make was not re-run


@plait.remote
def add_arrays(a, b):
    return a + b


def test_a_lost_result_whose_inputs_were_dropped_is_rebuilt_with_them(fresh):
    """The chaos soak's tree: leaves the driver no longer holds were reclaimed once their
    sum was made; when the sum's only copy dies with its node, the leaves are made again
    from their lineage, then the sum (it raised ObjectLostError for a leaf before)."""
    plait.init(num_nodes=2, num_workers=1)
    victim = plait.nodes()[1]
    leaves = [make.options(node="node-1").remote(MIB, float(i)) for i in (1, 2)]
    summed = add_arrays.options(node="node-1").remote(*leaves)
    plait.persist(summed)
    plait.wait([summed], timeout=60)                   # made, with its leaves, on node-1
    del leaves                                         # only the sum is held now
    plait.memory_summary()                             # the drop has reached the head
    with plait.trace() as trace:          # from before the loss: the re-runs start with it
        os.kill(victim.pid, signal.SIGKILL)
        assert plait.get(summed, timeout=60)[0] == 3.0
    assert sorted(t.function_name for t in trace.tasks) == ["add_arrays", "make", "make"]
