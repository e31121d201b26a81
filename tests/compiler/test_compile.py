"""The compiler over hand-built plain data: graphs, cluster views, plans. No processes.

Graphs here are built from TaskNode records directly (no ObjectRefs, no runtime), which is
exactly what the compiler sees in production.
"""

from __future__ import annotations

import dataclasses
import gc
from collections import Counter

import pytest

import plait
from plait.compiler import (ClusterView, CompileOptions, NodeView, ObjectInfo, Plan, Stage,
                            Transfer, compile, validate)
from plait.graph.graph import Graph, TaskNode

MiB = 1 << 20
THREE_NODES = ClusterView((NodeView("node-0", 2), NodeView("node-1", 2), NodeView("node-2", 2)))


def task(task_id: str, *reads: str, node: str | None = None, function: str = "fn") -> TaskNode:
    """A one-result task reading ``reads`` as top-level arguments."""
    return TaskNode(task_id, function, f"{function}@0", tuple(reads), (task_id,), node=node)


def graph(*tasks: TaskNode, targets: tuple[str, ...] | None = None) -> Graph:
    """Tasks in the given (topological) order; by default the last task is the target."""
    return Graph({t.id: t for t in tasks}, targets or (tasks[-1].id,))


def view(*objects: ObjectInfo, nodes: ClusterView = THREE_NODES) -> ClusterView:
    return ClusterView(nodes.nodes, {o.id: o for o in objects})


def diamond() -> Graph:
    return graph(task("a", "p"), task("b", "a"), task("c", "a"), task("d", "b", "c"))


# -- determinism and culling ---------------------------------------------------------------


def test_a_fan_out_over_many_nodes_fills_them_in_order_then_goes_round_again():
    """Placement prices the input holders and the least-loaded node only (a heap), never
    every node: with 500 one-worker nodes, 1,000 small tasks go two to a node, in order."""
    nodes = ClusterView(tuple(NodeView(f"node-{k}", 1) for k in range(500)))
    fan = graph(*(task(f"t{i}") for i in range(1000)), targets=tuple(f"t{i}" for i in range(1000)))
    plan = compile(fan, nodes)
    assert [plan.placements[f"t{i}"].node for i in (0, 1, 499, 500, 999)] == [
        "node-0", "node-1", "node-499", "node-0", "node-499"]
    assert set(plan.tasks_per_node().values()) == {2}


def test_a_reader_goes_to_its_big_input_among_many_nodes_unless_that_node_is_swamped():
    nodes = ClusterView(tuple(NodeView(f"node-{k}", 1, queued=500 if k == 7 else 0)
                              for k in range(300)))
    near = compile(graph(task("r", "big")), view(ObjectInfo("big", 64 * MiB, ("node-9",)),
                                                 nodes=nodes))
    assert near.placements["r"].node == "node-9" and near.bytes_moved == 0
    far = compile(graph(task("r", "big")), view(ObjectInfo("big", 64 * MiB, ("node-7",)),
                                                nodes=nodes))
    assert far.placements["r"].node == "node-0" and "costs less than waiting" in \
        far.placements["r"].reason


def test_equal_inputs_give_equal_plans():
    objects = (ObjectInfo("p", 300 * MiB, ("node-2",)),)
    first = compile(diamond(), view(*objects))
    second = compile(diamond(), view(*objects))
    assert first == second
    assert first is not second
    assert first.explain() == second.explain()


def test_tasks_no_target_needs_are_culled():
    g = graph(task("a"), task("unused", "a"), task("b", "a"), task("orphan"), targets=("b",))
    plan = compile(g, THREE_NODES)
    assert set(plan.placements) == {"a", "b"}
    assert sorted(tid for stage in plan.stages for tid in stage.task_ids) == ["a", "b"]


def test_culling_keeps_the_producers_of_any_result_a_needed_task_reads_in_graph_order():
    split = TaskNode("split", "split", "split@0", (), ("split.0", "split.1"))
    g = graph(task("a"), split, task("left", "split.0"), task("b", "a", "split.1"),
              task("late", "b"), task("c", "b"), targets=("c",))
    assert list(compile(g, THREE_NODES).placements) == ["a", "split", "b", "c"]


def test_compiling_pauses_the_cyclic_collector_and_leaves_it_as_it_was():
    """A compile makes no reference cycles: the collector has nothing to find in it (and
    would rescan the whole heap now and then), so it does not run while a plan is built
    (once at most, as it resumes: the young objects the compile made are scanned once)."""
    fan = graph(*(task(f"t{i}") for i in range(20_000)),
                targets=tuple(f"t{i}" for i in range(20_000)))
    collections: list[str] = []
    gc.callbacks.append(lambda phase, info: collections.append(phase))
    try:
        compile(fan, THREE_NODES)
        assert collections.count("start") <= 1 and gc.isenabled()
        gc.disable()
        compile(fan, THREE_NODES)
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.callbacks.pop()


def test_target_that_is_an_input_needs_no_task():
    plan = compile(Graph({}, ("p",)), view(ObjectInfo("p", 10, ("node-1",))))
    assert plan.placements == {} and plan.stages == () and plan.transfers == ()


# -- placement -----------------------------------------------------------------------------

def test_task_runs_where_its_large_input_already_is():
    g = graph(task("t", "big"))
    plan = compile(g, view(ObjectInfo("big", 200 * MiB, ("node-1",))))
    placement = plan.placements["t"]
    assert placement.node == "node-1"
    assert placement.bytes_moved == 0
    assert plan.bytes_moved == 0 and plan.transfers == ()
    assert "200.0 MiB" in placement.reason and "already there" in placement.reason
    assert placement.inputs == (("big", 200 * MiB, ("node-1",)),)


def test_task_follows_the_larger_share_of_its_inputs():
    g = graph(task("t", "x", "y"))
    plan = compile(g, view(ObjectInfo("x", 50 * MiB, ("node-0",)),
                           ObjectInfo("y", 80 * MiB, ("node-2",))))
    assert plan.placements["t"].node == "node-2"
    assert plan.placements["t"].bytes_moved == 50 * MiB
    assert plan.transfers == (Transfer("x", "node-0", "node-2", 50 * MiB),)


def test_consumers_of_a_large_input_follow_it_down_a_chain():
    g = graph(task("a", "big"), task("b", "a", "big"), task("c", "b", "big"))
    plan = compile(g, view(ObjectInfo("big", 64 * MiB, ("node-2",))))
    assert {p.node for p in plan.placements.values()} == {"node-2"}
    assert len(plan.stages) == 1


def test_small_independent_tasks_spread_in_proportion_to_workers():
    nodes = ClusterView((NodeView("node-0", 1), NodeView("node-1", 3)))
    g = graph(*(task(f"t{i}") for i in range(40)), targets=tuple(f"t{i}" for i in range(40)))
    plan = compile(g, nodes)
    assert plan.tasks_per_node() == {"node-0": 10, "node-1": 30}
    assert all(p.reason == "small inputs: least-loaded node" for p in plan.placements.values())


def test_queued_work_counts_as_load():
    nodes = ClusterView((NodeView("node-0", 1, queued=5), NodeView("node-1", 1)))
    g = graph(*(task(f"t{i}") for i in range(3)), targets=("t0", "t1", "t2"))
    assert compile(g, nodes).tasks_per_node() == {"node-1": 3}


def test_small_input_does_not_attract_its_readers():
    g = graph(*(task(f"t{i}", "small") for i in range(6)),
              targets=tuple(f"t{i}" for i in range(6)))
    plan = compile(g, view(ObjectInfo("small", 100, ("node-2",))))
    assert plan.tasks_per_node() == {"node-0": 2, "node-1": 2, "node-2": 2}


def test_pin_is_obeyed_even_against_locality():
    g = graph(task("t", "big", node="node-2"))
    plan = compile(g, view(ObjectInfo("big", 200 * MiB, ("node-1",))))
    assert plan.placements["t"].node == "node-2"
    assert "pinned" in plan.placements["t"].reason
    assert plan.transfers == (Transfer("big", "node-1", "node-2", 200 * MiB),)


def test_pin_to_unknown_node_is_a_plan_error_naming_it():
    with pytest.raises(plait.PlanError, match="'node-9'") as info:
        compile(graph(task("t", node="node-9")), THREE_NODES)
    assert "t (fn)" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_a_soft_pin_that_cannot_be_held_places_the_task_as_if_unpinned():
    """Ray's NodeAffinitySchedulingStrategy(soft=True): a node not in the cluster, or one
    without what the task asks for, sends the task elsewhere; a pin that can hold, holds."""
    soft = dataclasses.replace(task("t", "big", node="node-9"), soft=True)
    plan = compile(graph(soft), view(ObjectInfo("big", 200 * MiB, ("node-1",))))
    assert plan.placements["t"].node == "node-1"               # where its input is
    assert "soft pin to node-9, which is not in the cluster, not held" in \
        plan.placements["t"].reason
    wants_gpu = dataclasses.replace(task("t", node="node-0"), soft=True, needs=(("GPU", 1),))
    offered = ClusterView((NodeView("node-0", 2), NodeView("node-1", 2, resources=(("GPU", 1),))))
    assert compile(graph(wants_gpu), offered).placements["t"].node == "node-1"
    held = dataclasses.replace(soft, node="node-2")
    assert compile(graph(held), view(ObjectInfo("big", 200 * MiB, ("node-1",)))
                   ).placements["t"].node == "node-2"


def test_input_missing_from_the_view_is_a_plan_error_naming_it():
    with pytest.raises(plait.PlanError, match="object gone-7"):
        compile(graph(task("t", "gone-7")), THREE_NODES)


def test_a_call_of_an_actor_whose_node_left_goes_to_the_head_which_answers_it():
    """The head restarts the actor elsewhere or fails the call (ActorDiedError): the plan
    must not refuse it; an actor the cluster never knew is still a PlanError."""
    call = dataclasses.replace(task("call"), actor="A-1")
    gone = ClusterView(THREE_NODES.nodes, actors={"A-1": "node-7"})
    assert compile(graph(call), gone).placements["call"].node == "node-0"
    lives = ClusterView(THREE_NODES.nodes, actors={"A-1": "node-2"})
    assert compile(graph(call), lives).placements["call"].node == "node-2"
    with pytest.raises(plait.PlanError, match="A-1, which the cluster does not know"):
        compile(graph(call), THREE_NODES)


def test_an_actor_asking_for_no_cpu_may_live_on_a_node_without_workers():
    """Ray's head started with num_cpus=0 and a custom resource hosts such actors; a task
    asking for the same resource still needs a worker, so no node can run it."""
    nodes = ClusterView((NodeView("node-0", 0, resources=(("head", 1.0),)),
                         NodeView("node-1", 1)))
    needs = (("head", 1.0),)
    actor = dataclasses.replace(task("A-1"), actor="A-1", num_cpus=0, needs=needs)
    assert compile(graph(actor), nodes).placements["A-1"].node == "node-0"
    with pytest.raises(plait.PlanError, match="which no node offers"):
        compile(graph(dataclasses.replace(task("t"), needs=needs)), nodes)


def test_actors_asking_for_nothing_spread_over_the_nodes_with_workers():
    """As Ray spreads default actors: by load alone (they hold no slot) all would go to
    the first node. Actors the cluster already has count; a node without workers gets
    none; an actor reading a large object still goes where the object is."""
    nodes = ClusterView((NodeView("node-0", 0), NodeView("node-1", 1), NodeView("node-2", 1),
                         NodeView("node-3", 1)), actors={"old-1": "node-1"})
    actors = [dataclasses.replace(task(f"A-{i}"), actor=f"A-{i}", num_cpus=0) for i in range(4)]
    plan = compile(graph(*actors, targets=tuple(f"A-{i}" for i in range(4))), nodes)
    placed = Counter(plan.placements[f"A-{i}"].node for i in range(4))
    placed["node-1"] += 1                                   # old-1
    assert sorted(placed.values()) == [1, 2, 2] and "node-0" not in placed
    alone = ClusterView(nodes.nodes)          # made and dropped in turn: ties take turns
    assert len({compile(graph(actor), alone).placements[actor.id].node
                for actor in actors}) > 1
    reader = dataclasses.replace(task("A-9", "big"), actor="A-9", num_cpus=0)
    held = ClusterView(nodes.nodes, {"big": ObjectInfo("big", 64 << 20, ("node-1",))},
                       actors={"old-1": "node-1"})
    assert compile(graph(reader), held).placements["A-9"].node == "node-1"


def test_tasks_avoid_worker_slots_that_actors_hold_but_may_still_wait_for_them():
    """A node whose one worker an actor holds for its life gets no task while another node
    has a free one; a task only it can hold still goes there (to run once the actor ends)."""
    nodes = ClusterView((NodeView("node-0", 1, held=1), NodeView("node-1", 1)))
    plan = compile(graph(*(task(f"t{i}") for i in range(4)),
                         targets=tuple(f"t{i}" for i in range(4))), nodes)
    assert {plan.placements[f"t{i}"].node for i in range(4)} == {"node-1"}
    holder = dataclasses.replace(task("A-1"), actor="A-1", num_cpus=1)
    same_plan = compile(graph(holder, task("t"), targets=("A-1", "t")),
                        ClusterView((NodeView("node-0", 1), NodeView("node-1", 1))))
    assert same_plan.placements["A-1"].node != same_plan.placements["t"].node
    wide = ClusterView((NodeView("node-0", 2, held=1), NodeView("node-1", 1)))
    two = dataclasses.replace(task("wide"), num_cpus=2)
    assert compile(graph(two), wide).placements["wide"].node == "node-0"


def test_a_fraction_of_a_cpu_weighs_as_that_fraction_of_a_worker():
    """As a node runs two num_cpus=0.5 tasks at once on one CPU (and num_cpus=0 ones beside
    all others), the plan counts them so: two halves share the node the whole task left;
    before, each weighed a whole worker and the third went back beside the whole one."""
    nodes = ClusterView((NodeView("node-0", 1), NodeView("node-1", 1)))
    whole, halves = task("whole"), [dataclasses.replace(task(f"h{i}"), num_cpus=0.5)
                                    for i in range(2)]
    plan = compile(graph(whole, *halves, targets=("whole", "h0", "h1")), nodes)
    assert [plan.placements[t].node for t in ("whole", "h0", "h1")] == [
        "node-0", "node-1", "node-1"]
    free = [dataclasses.replace(task(f"z{i}"), num_cpus=0) for i in range(3)]
    loaded = compile(graph(whole, *free, targets=("whole", "z0", "z1", "z2")), nodes)
    assert {loaded.placements[f"z{i}"].node for i in range(3)} == {"node-1"}


def test_a_cluster_without_nodes_is_a_plan_error():
    with pytest.raises(plait.PlanError, match="no nodes"):
        compile(graph(task("t")), ClusterView(()))


def test_a_task_asking_for_resources_goes_only_where_they_are_offered():
    offered = ClusterView((NodeView("node-0", 2), NodeView("node-1", 2),
                           NodeView("node-2", 2, resources=(("GPU", 2.0), ("disk", 1.0)))))
    gpu = dataclasses.replace(task("t", "big"), needs=(("GPU", 1),))
    plan = compile(graph(gpu), view(ObjectInfo("big", 200 * MiB, ("node-0",)), nodes=offered))
    assert plan.placements["t"].node == "node-2"            # against locality


def test_tasks_asking_for_resources_spread_over_the_nodes_offering_them_among_cpu_tasks():
    offered = ClusterView((NodeView("node-0", 2), NodeView("node-1", 2, resources=(("GPU", 1.0),)),
                           NodeView("node-2", 2, resources=(("GPU", 1.0),))))
    tasks = [dataclasses.replace(task(f"t{i}"), needs=(("GPU", 1),) if i % 2 else ())
             for i in range(12)]
    plan = compile(graph(*tasks, targets=tuple(t.id for t in tasks)), offered)
    on = {t.id: plan.placements[t.id].node for t in tasks}
    assert {on[t.id] for t in tasks if t.needs} == {"node-1", "node-2"}
    assert sorted(on.values()) == ["node-0"] * 4 + ["node-1"] * 4 + ["node-2"] * 4  # even load


def test_resources_no_node_offers_are_an_infeasible_plan_error_naming_them():
    wants = dataclasses.replace(task("t"), needs=(("GPU", 1), ("disk", 0.5)))
    with pytest.raises(plait.PlanError, match=r"asks for 1 GPU, 0.5 disk.*node-0: CPUs only"
                       ) as info:
        compile(graph(wants), THREE_NODES)
    assert info.value.infeasible and info.value.task_id == "t"
    pinned = dataclasses.replace(wants, node="node-1", needs=(("GPU", 1),))
    offered = ClusterView((NodeView("node-0", 2, resources=(("GPU", 1.0),)), NodeView("node-1", 2)))
    with pytest.raises(plait.PlanError, match="pinned to node-1") as info:
        compile(graph(pinned), offered)
    assert not info.value.infeasible                         # no joining node changes a pin


# -- transfers, releases, stages -----------------------------------------------------------

def test_an_object_is_copied_once_per_node_however_many_tasks_read_it():
    readers = [task(f"r{i}", "big", node="node-0") for i in range(5)]
    g = graph(*readers, targets=tuple(r.id for r in readers))
    plan = compile(g, view(ObjectInfo("big", 200 * MiB, ("node-1",))))
    assert plan.transfers == (Transfer("big", "node-1", "node-0", 200 * MiB),)
    assert plan.bytes_moved == 200 * MiB


def test_a_stored_object_read_everywhere_goes_once_to_each_other_node():
    readers = [task(f"r{i}", "s") for i in range(30)]
    g = graph(*readers, targets=tuple(r.id for r in readers))
    plan = compile(g, view(ObjectInfo("s", MiB, ("node-0",))))
    assert sorted((t.object_id, t.src, t.dst) for t in plan.transfers) == [
        ("s", "node-0", "node-1"), ("s", "node-0", "node-2")]
    assert len(plan.tasks_per_node()) == 3


def test_a_small_object_read_everywhere_travels_inline_not_as_transfers():
    readers = [task(f"r{i}", "s") for i in range(30)]
    g = graph(*readers, targets=tuple(r.id for r in readers))
    plan = compile(g, view(ObjectInfo("s", 1024, ("node-0",))))
    assert plan.transfers == () and len(plan.tasks_per_node()) == 3


def test_intermediates_are_released_after_their_last_reader():
    g = graph(task("a", "p"), task("b", "a"), task("c", "b"), task("d", "a", "c"))
    plan = compile(g, view(ObjectInfo("p", 10, ("node-0",))))
    assert plan.releases == {"a": "d", "b": "c", "c": "d"}


def test_targets_and_inputs_are_never_released():
    g = graph(task("a", "p"), task("b", "a"), targets=("a", "b"))
    plan = compile(g, view(ObjectInfo("p", 10, ("node-0",))))
    assert plan.releases == {}


def test_stages_list_tasks_in_topological_order():
    g = graph(task("a", "big0"), task("b", "big1"), task("c", "a", "b"),
              task("d", "c", "big0"), task("e", "d", "big1"), task("f", "e", "c"))
    plan = compile(g, view(ObjectInfo("big0", 10 * MiB, ("node-0",)),
                           ObjectInfo("big1", 20 * MiB, ("node-1",))))
    position = {tid: i for i, tid in enumerate(g.tasks)}
    assert len(plan.stages) >= 2
    for stage in plan.stages:
        assert [position[t] for t in stage.task_ids] == sorted(position[t] for t in stage.task_ids)
        for tid in stage.task_ids:
            assert plan.placements[tid].stage == stage.index
    assert [stage.index for stage in plan.stages] == list(range(len(plan.stages)))


def test_stages_follow_view_order_one_per_busy_node():
    g = graph(task("a", node="node-2"), task("b", node="node-0"), targets=("a", "b"))
    plan = compile(g, THREE_NODES)
    assert plan.stages == (Stage(0, "node-0", ("b",)), Stage(1, "node-2", ("a",)))


# -- validate ------------------------------------------------------------------------------

def _valid():
    g = graph(task("a", "big"), task("b", "a", node="node-0"))
    v = view(ObjectInfo("big", 100 * MiB, ("node-1",)))
    return compile(g, v, CompileOptions(result_bytes_guess=MiB)), g, v


def test_validate_returns_a_good_plan_unchanged():
    plan, g, v = _valid()
    assert validate(plan, g, v) is plan


def _broken_plans():
    """(what is broken, plan builder) pairs; each builder breaks one invariant of _valid()."""
    def moved_placement(plan: Plan) -> Plan:
        a = dataclasses.replace(plan.placements["a"], node="node-2")
        return dataclasses.replace(plan, placements={**plan.placements, "a": a})

    def dropped_from_stages(plan: Plan) -> Plan:
        stages = tuple(dataclasses.replace(s, task_ids=tuple(t for t in s.task_ids if t != "a"))
                       for s in plan.stages)
        return dataclasses.replace(plan, stages=stages)

    def unknown_node(plan: Plan) -> Plan:
        stages = tuple(dataclasses.replace(s, node="node-7") for s in plan.stages)
        return dataclasses.replace(plan, stages=stages)

    def copied_twice(plan: Plan) -> Plan:
        return dataclasses.replace(plan, transfers=plan.transfers * 2)

    def copied_to_itself(plan: Plan) -> Plan:
        return dataclasses.replace(plan, transfers=(Transfer("a", "node-1", "node-1", 1024),))

    def unplaced(plan: Plan) -> Plan:
        return dataclasses.replace(plan, placements={"a": plan.placements["a"]})

    def wrong_stage_number(plan: Plan) -> Plan:
        b = dataclasses.replace(plan.placements["b"], stage=5)
        return dataclasses.replace(plan, placements={**plan.placements, "b": b})

    return [("exactly one stage", dropped_from_stages), ("placed on node-2", moved_placement),
            ("unknown node node-7", unknown_node), ("more than once", copied_twice),
            ("to its own node", copied_to_itself), ("every task must be placed", unplaced),
            ("names stage 5", wrong_stage_number)]


@pytest.mark.parametrize("message, breaks", _broken_plans(),
                         ids=[breaks.__name__ for _, breaks in _broken_plans()])
def test_validate_names_the_broken_invariant(message, breaks):
    plan, g, v = _valid()
    with pytest.raises(AssertionError, match=message):
        validate(breaks(plan), g, v)


def test_validate_catches_a_broken_pin():
    plan, g, v = _valid()
    pinned = Graph({**g.tasks, "a": dataclasses.replace(g.tasks["a"], node="node-2")}, g.targets)
    with pytest.raises(AssertionError, match="pinned to node-2"):
        validate(plan, pinned, v)


def test_validate_catches_a_graph_out_of_order():
    plan, g, v = _valid()
    backwards = Graph({"b": g.tasks["b"], "a": g.tasks["a"]}, g.targets)
    with pytest.raises(AssertionError, match="reads a before a produces it"):
        validate(plan, backwards, v)


# -- explain -------------------------------------------------------------------------------

def test_explain_names_every_task_node_and_the_totals():
    g = graph(task("load-1", "big"), task("mean-2", "load-1"), task("pin-3", "mean-2",
                                                                    node="node-2"))
    plan = compile(g, view(ObjectInfo("big", 200 * MiB, ("node-1",))))
    text = plan.explain()
    for placement in plan.placements.values():
        assert placement.task_id in text
        assert placement.node in text
    # load-1 follows big to node-1; mean-2 reads only load-1's result, guessed small
    # (CompileOptions.result_bytes_guess), so it goes to the quiet node-0; pin-3 is pinned.
    # Small results travel inside messages, so nothing is copied between stores.
    assert [plan.placements[t].node for t in g.tasks] == ["node-1", "node-0", "node-2"]
    assert "3 tasks in 3 stage(s); tasks per node: node-0: 1, node-1: 1, node-2: 1" in text
    assert "predicted bytes moved: 0 B in 0 transfer(s)" in text
    assert "already there" in text and "pinned" in text


def test_repr_summarises_the_plan():
    plan = compile(graph(task("t", "big")), view(ObjectInfo("big", 2 * MiB, ("node-1",))))
    assert repr(plan) == "Plan(1 tasks, 1 stages, 0 transfers, 0 bytes moved)"


# -- size ----------------------------------------------------------------------------------

def test_a_fan_out_of_10000_tasks_compiles():
    readers = [task(f"r{i}", "src") for i in range(10_000)]
    g = graph(task("src"), *readers, targets=tuple(r.id for r in readers))
    plan = compile(g, THREE_NODES, CompileOptions(result_bytes_guess=MiB))
    assert len(plan.placements) == 10_001
    assert sum(plan.tasks_per_node().values()) == 10_001
    # node-0 holds src's result, so it keeps the few tasks a copy would cost (1.5 ms)
    assert max(plan.tasks_per_node().values()) - min(plan.tasks_per_node().values()) <= 4
    assert len(plan.transfers) == 2   # src's result goes once to each other node


def test_inputs_and_results_larger_than_the_store_compile():
    """What a store cannot hold at once is read from, or written to, disk (Ray's fallback
    allocation): the plan places such tasks as any other."""
    small = ClusterView((NodeView("node-0", 2, store_capacity=64 * MiB),
                         NodeView("node-1", 2, store_capacity=64 * MiB)))
    plan = compile(graph(task("sum", "huge")),
                   view(ObjectInfo("huge", 100 * MiB, ("node-0",)), nodes=small))
    assert plan.placements["sum"].node == "node-0"
    learned = ClusterView(small.nodes, {}, {}, {"make": 100 * MiB})
    assert len(compile(graph(task("m", function="make")), learned).placements) == 1


def test_critical_path_gives_the_long_branch_priority():
    g = graph(task("a", "p"), task("long-1", "a"), task("long-2", "long-1"),
              task("short", "a"), task("end", "long-2", "short"))
    plan = compile(g, view(ObjectInfo("p", 10, ("node-0",))))
    priority = {tid: p.priority for tid, p in plan.placements.items()}
    assert priority["a"] > priority["long-1"] > priority["short"]
    assert priority["long-1"] > priority["end"] > 0
    assert plan.critical_path == priority["a"]
    assert "critical path" in plan.explain()


def test_learned_result_sizes_make_consumers_follow_their_producer():
    learned = ClusterView(THREE_NODES.nodes, {}, {"make": 0.001}, {"make": 50 * MiB})
    g = graph(task("m", function="make"), task("use", "m"))
    plan = compile(g, learned)
    assert plan.placements["use"].node == plan.placements["m"].node
    pinned = graph(task("m", function="make"), task("use", "m", node="node-2"))
    moved = compile(pinned, learned)
    if moved.placements["m"].node != "node-2":
        assert moved.bytes_moved == 50 * MiB
