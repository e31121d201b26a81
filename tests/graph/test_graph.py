"""The graph layer without a cluster: ids, options, call encoding, collect, remote functions.

A FakeRuntime (tests/fakes.py) stands in for the session, so every ObjectRef and Task here
is built from plain dicts and nothing starts a process.
"""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest

import plait
from plait.graph import context
from plait.graph.graph import Graph, collect
from plait.graph.ids import IdGenerator, output_id
from plait.graph.options import TaskOptions
from plait.graph.refs import ObjectRef
from plait.graph.remote_function import RemoteFunction
from plait.graph.task import LARGE_ARGUMENT_BYTES, ArgRef, decode_call, encode_call
from tests.fakes import FakeRuntime, installed_runtime


@pytest.fixture
def runtime():
    with installed_runtime() as fake:
        yield fake


@plait.remote
def source():
    return 1


@plait.remote
def inc(x):
    return x + 1


@plait.remote
def add(x, y):
    return x + y


@plait.remote(num_returns=2)
def split(x):
    return x, x


def _topological(graph: Graph) -> bool:
    """True when every task comes after the producers of everything it reads."""
    position = {tid: i for i, tid in enumerate(graph.tasks)}
    return all(graph.made_at[oid] < position[tid]
               for tid, task in graph.tasks.items()
               for oid in task.reads if oid in graph.made_at)


# -- ids -----------------------------------------------------------------------------------

def test_ids_count_up_in_hex_across_stems():
    ids = IdGenerator()
    made = [ids.new("inc") for _ in range(10)] + [ids.new("add")]
    assert made[:3] == ["inc-1", "inc-2", "inc-3"]
    assert made[9] == "inc-a"
    assert made[10] == "add-b"


def test_ids_are_deterministic_per_generator():
    assert [IdGenerator().new("f") for _ in range(2)] == ["f-1", "f-1"]


def test_ids_replace_unsafe_characters_and_keep_the_prefix():
    ids = IdGenerator(prefix="w3.")
    assert ids.new("my func/x") == "w3.my_func_x-1"
    assert ids.new("<lambda>") == "w3.<lambda>-2"


def test_output_ids_suffix_only_when_several_results():
    assert output_id("inc-1", 0, 1) == "inc-1"
    assert [output_id("split-2", i, 3) for i in range(3)] == ["split-2.0", "split-2.1",
                                                              "split-2.2"]


# -- options -------------------------------------------------------------------------------

def test_merged_applies_changes_and_leaves_the_original_alone():
    base = TaskOptions()
    changed = base.merged(num_returns=2, max_retries=0, node="node-1", name="f", num_cpus=0.5)
    assert (changed.num_returns, changed.max_retries, changed.node, changed.name,
            changed.num_cpus) == (2, 0, "node-1", "f", 0.5)
    assert base == TaskOptions()


def test_max_retries_minus_one_means_forever():
    assert TaskOptions().merged(max_retries=-1).max_retries == -1


def test_unknown_option_is_named_with_the_valid_ones():
    with pytest.raises(plait.InvalidOptionError, match="unknown option 'num_return'") as info:
        TaskOptions().merged(num_return=2)
    assert "num_returns" in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("key, value", [
    ("num_returns", -1), ("num_returns", True), ("num_returns", 1.0), ("num_returns", "2"),
    ("max_retries", -2), ("max_retries", False), ("max_retries", 1.5),
    ("node", 1), ("name", 3), ("num_cpus", -1), ("num_cpus", "1"), ("num_gpus", -0.5),
    ("retry_exceptions", [int]), ("retry_exceptions", [ValueError, "KeyError"]),
    ("retry_exceptions", 1),
])
def test_ill_typed_option_values_are_refused(key, value):
    with pytest.raises(plait.InvalidOptionError, match=key):
        TaskOptions().merged(**{key: value})


def test_remote_decorator_and_options_check_at_once():
    with pytest.raises(plait.InvalidOptionError):
        plait.remote(num_returns=-1)
    with pytest.raises(plait.InvalidOptionError, match="unknown option 'nod'"):
        inc.options(nod="node-1")


def test_options_copy_keeps_the_function_and_the_defaults():
    pinned = inc.options(node="node-2")
    assert isinstance(pinned, RemoteFunction)
    assert pinned.default_options.node == "node-2"
    assert inc.default_options.node is None
    assert pinned.name == "inc"
    assert inc.options(name="renamed").name == "renamed"


# -- remote functions ----------------------------------------------------------------------

def test_calling_a_remote_function_directly_says_to_use_remote():
    with pytest.raises(TypeError, match=r"\.remote"):
        inc(1)


def test_remote_on_a_class_makes_an_actor_class_and_a_positional_value_is_a_type_error():
    @plait.remote
    class Counter:
        def incr(self):
            pass

    assert type(Counter).__name__ == "ActorClass"
    with pytest.raises(TypeError, match=r"Counter\.remote"):
        Counter()
    with pytest.raises(plait.InvalidOptionError, match="max_restarts"):
        Counter.options(max_restarts="3")
    with pytest.raises(plait.InvalidOptionError, match="max_concurrency"):
        plait.remote(max_concurrency=0)(Counter._cls)
    with pytest.raises(TypeError):
        plait.remote(1, 2)


def test_dir_of_an_actor_class_handle_and_method_offers_what_one_may_call():
    from plait.graph.actor import handle_of

    @plait.remote
    class Counter:
        LIMIT = 3

        def incr(self):
            pass

    assert [n for n in dir(Counter) if not n.startswith("_")] == ["incr", "options", "remote"]
    assert Counter.LIMIT == 3                      # attributes still reach the class
    handle = handle_of("Counter-1", Counter._cls)
    assert dir(handle) == ["__init__", "__ray_call__", "__ray_ready__", "__ray_terminate__",
                           "incr"]
    assert dir(handle.incr) == ["options", "remote"]


def test_an_async_actor_runs_a_thousand_calls_at_once_and_any_other_one_unless_told():
    from plait.graph.actor import concurrency_of, is_async_class

    class Plain:
        def f(self):
            pass

    class Mixed(Plain):
        async def g(self):
            pass

    class Streams(Plain):
        async def h(self):
            yield 1

    assert [is_async_class(c) for c in (Plain, Mixed, Streams)] == [False, True, True]
    assert concurrency_of(Plain, None) == 1 and concurrency_of(Mixed, None) == 1000
    assert concurrency_of(Plain, 4) == 4 and concurrency_of(Mixed, 1) == 1
    assert plait.remote(max_concurrency=8)(Plain)._options.max_concurrency == 8


def test_remote_uses_the_installed_runtime_and_builds_nothing_else(runtime):
    ref = inc.remote(1)
    assert isinstance(ref, ObjectRef)
    assert ref.id == "inc-1"
    assert ref.task.id == "inc-1" and not ref.task.submitted
    assert ref.task.deps == () and ref.task.nested == ()
    assert runtime.refs["inc-1"] == 1
    assert runtime.values == {}


def test_num_returns_gives_one_ref_per_result(runtime):
    first, second = split.remote(1)
    assert (first.id, second.id) == ("split-1.0", "split-1.1")
    assert first.task is second.task


def test_refs_report_birth_and_death_to_the_runtime(runtime):
    ref = source.remote()
    assert runtime.refs[ref.id] == 1
    copy = ObjectRef(ref.id)
    assert runtime.refs[ref.id] == 2
    del copy
    assert runtime.refs[ref.id] == 1


def test_ref_equality_repr_and_pickle_carry_only_the_id(runtime):
    ref = source.remote()
    clone = pickle.loads(pickle.dumps(ref))
    assert clone == ref and hash(clone) == hash(ref)
    assert clone.task is None
    assert repr(ref) == f"ObjectRef({ref.id}, lazy)"
    stored = runtime.put(3)
    assert repr(stored) == f"ObjectRef({stored.id}, ready)"
    assert stored.compute() == 3   # compute asks the runtime's get


def test_repr_without_a_session_does_not_start_one():
    previous = context.active()
    context.install(None)
    try:
        assert repr(ObjectRef("put-1")) == "ObjectRef(put-1, no session)"
    finally:
        context.install(previous)


# -- encode_call / decode_call --------------------------------------------------------------

def test_top_level_refs_become_placeholders_nested_refs_stay_refs(runtime):
    a, b, c = runtime.put("A"), runtime.put("B"), runtime.put("C")
    payload, deps, nested = encode_call("f", (a, 1, [b]), {"k": c, "plain": "v"}, runtime.put,
                                        runtime.dumps)
    assert deps == (a, c)
    assert nested == (b,)
    args, kwargs = decode_call(payload, ["value-a", "value-c"])
    assert args[0] == "value-a" and args[1] == 1
    assert isinstance(args[2][0], ObjectRef) and args[2][0].id == b.id
    assert kwargs == {"k": "value-c", "plain": "v"}


def test_payload_holds_placeholders_not_values(runtime):
    a = runtime.put("A")
    payload, _, _ = encode_call("f", (a,), {}, runtime.put, runtime.dumps)
    args, _ = pickle.loads(payload)
    assert isinstance(args[0], ArgRef) and args[0].index == 0


def test_large_arrays_are_put_once_and_passed_as_dependencies(runtime):
    big = np.zeros(LARGE_ARGUMENT_BYTES // 8 + 1)
    small = np.zeros(4)
    payload, deps, _ = encode_call("f", (big, small), {}, runtime.put, runtime.dumps)
    assert [ref.id for ref in deps] == runtime.puts
    assert len(payload) < LARGE_ARGUMENT_BYTES
    args, _ = decode_call(payload, [runtime.values[deps[0].id]])
    assert args[0] is big
    np.testing.assert_array_equal(args[1], small)
    assert not args[1].flags.writeable           # as if it had been put, like ``big``


def test_large_bytes_are_put_too(runtime):
    _, deps, _ = encode_call("f", (b"x" * (LARGE_ARGUMENT_BYTES + 1), b"small"), {},
                             runtime.put, runtime.dumps)
    assert len(deps) == 1 and len(runtime.puts) == 1


def test_task_records_dependency_and_nested_ids(runtime):
    a = runtime.put(1)
    b = runtime.put(2)
    ref = add.remote(a, y=[b, b])
    assert ref.task.dep_ids == (a.id,)
    assert ref.task.nested_ids == (b.id,)   # repeated nested refs are listed once


def test_unpicklable_argument_is_named_with_its_position_and_type(runtime):
    with pytest.raises(plait.SerializationError) as info:
        add.remote(1, threading.Lock())
    message = str(info.value)
    assert isinstance(info.value, TypeError)
    assert "argument 1 of add()" in message
    assert "type lock" in message
    assert "Nothing was sent" in message


class _Holder:
    def __init__(self, held):
        self.held = held


@pytest.mark.parametrize("argument, where", [
    ([1, {"k": (2, threading.Lock())}], "at [1]['k'][1]"),
    (_Holder([threading.Lock()]), "at .held[0]"),
    ({"f": (lambda lock=None: lambda: lock)(threading.Lock())}, "at ['f'] (its variable 'lock')"),
])
def test_an_unpicklable_part_deep_in_an_argument_is_named_by_its_path(runtime, argument, where):
    with pytest.raises(plait.SerializationError) as info:
        add.remote(argument, 1)
    assert f"argument 0 of add() holds a lock {where}, which cannot be serialised" in \
        str(info.value)


def test_unpicklable_keyword_argument_is_named(runtime):
    with pytest.raises(plait.SerializationError, match="keyword argument 'y' .*type lock"):
        encode_call("add", (1,), {"y": threading.Lock()}, runtime.put, runtime.dumps)


# -- collect -------------------------------------------------------------------------------

def test_collect_diamond_is_topological_and_shares_the_source(runtime):
    top = source.remote()
    left, right = inc.remote(top), inc.remote(top)
    bottom = add.remote(left, right)
    graph, tasks = collect([bottom])
    assert list(graph.tasks)[0] == top.id and list(graph.tasks)[-1] == bottom.id
    assert set(graph.tasks) == {top.id, left.id, right.id, bottom.id}
    assert _topological(graph)
    assert graph.targets == (bottom.id,)
    assert graph.tasks[bottom.id].deps == (left.id, right.id)
    assert graph.inputs() == []
    assert set(tasks) == set(graph.tasks) and tasks[top.id] is top.task
    assert sorted(graph.to_networkx().edges) == sorted(
        [(top.id, left.id), (top.id, right.id), (left.id, bottom.id), (right.id, bottom.id)])


def test_collect_records_function_options_and_nested_reads(runtime):
    a = source.remote()
    ref = inc.options(node="node-1", max_retries=0).remote([a])
    graph, _ = collect([ref])
    node = graph.tasks[ref.id]
    assert (node.function_name, node.node, node.max_retries) == ("inc", "node-1", 0)
    assert node.function_id.startswith("inc@")
    assert node.deps == () and node.nested == (a.id,) and node.reads == (a.id,)
    assert list(graph.tasks) == [a.id, ref.id]


def test_collect_of_several_refs_lists_shared_tasks_once(runtime):
    first, second = split.remote(source.remote())
    graph, _ = collect([first, second, first])
    assert len(graph.tasks) == 2
    assert graph.targets == (first.id, second.id, first.id)


def test_collect_a_chain_of_20000_tasks_without_recursion(runtime):
    ref = runtime.put(0)
    start = ref
    for _ in range(20_000):
        ref = inc.remote(ref)
    graph, _ = collect([ref])
    assert len(graph.tasks) == 20_000
    assert _topological(graph)
    assert graph.inputs() == [start.id]
    assert list(graph.tasks)[-1] == ref.id


def test_submitted_tasks_are_boundaries_read_as_inputs(runtime):
    done = inc.remote(source.remote())
    done.task.submitted = True
    ref = add.remote(done, source.remote())
    graph, _ = collect([ref])
    assert done.id not in graph.tasks
    assert len(graph.tasks) == 2
    assert graph.inputs() == [done.id]


def test_collect_of_a_submitted_or_put_ref_is_empty_with_the_ref_as_input(runtime):
    stored = runtime.put(1)
    graph, tasks = collect([stored])
    assert graph.tasks == {} and tasks == {}
    assert graph.inputs() == [stored.id]


def test_graph_consumers_lists_every_reader(runtime):
    top = source.remote()
    readers = [inc.remote(top) for _ in range(3)]
    graph, _ = collect(readers)
    assert graph.consumers()[top.id] == [r.id for r in readers]


def test_graph_names_the_task_making_each_read_by_its_position(runtime):
    top = source.remote()
    pair = split.remote(top)
    total = add.remote(pair[0], pair[1])
    nested = inc.remote([total])                  # nested: read too, as a ref
    stored = runtime.put(1)
    last = add.remote(stored, top)
    graph, _ = collect([nested, last])
    at = {tid: i for i, tid in enumerate(graph.tasks)}
    assert graph.ids == list(graph.tasks)
    assert graph.made_at == {oid: at[t.id] for t in graph.tasks.values() for oid in t.outputs}
    assert graph.sources[at[total.id]] == (at[pair[0].task.id], at[pair[0].task.id])
    assert graph.sources[at[nested.id]] == (at[total.id],)
    assert graph.sources[at[last.id]] == (-1, at[top.id])       # -1: made outside the graph


def test_graph_upstream_lists_each_producer_once_in_reading_order(runtime):
    top, other = source.remote(), source.remote()
    pair = split.remote(top)
    both = add.remote(pair[0], pair[1])
    mixed = add.remote(other, both)
    graph, _ = collect([mixed])
    at = {tid: i for i, tid in enumerate(graph.tasks)}
    assert graph.upstream[at[both.id]] == (at[pair[0].task.id],)
    assert graph.upstream[at[mixed.id]] == (at[other.id], at[both.id])
    assert graph.upstream[at[top.id]] == ()


def test_fake_runtime_is_uninstalled_after_the_fixture():
    with installed_runtime() as fake:
        assert context.active() is fake
    assert not isinstance(context.active(), FakeRuntime)


def test_node_affinity_strategy_is_a_node_pin_and_other_strategies_are_refused():
    from plait.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    pinned = inc.options(scheduling_strategy=NodeAffinitySchedulingStrategy("node-2", soft=True))
    assert pinned.default_options.node == "node-2"
    assert inc.options(scheduling_strategy="SPREAD").default_options.node is None
    assert pinned.options(scheduling_strategy="DEFAULT").default_options.node is None  # last wins
    assert inc.options(node="node-1").options(scheduling_strategy="SPREAD"
                                              ).default_options.node == "node-1"
    with pytest.raises(plait.InvalidOptionError, match="not supported"):
        inc.options(scheduling_strategy="PLACEMENT_GROUP")


def test_a_pin_to_the_id_get_node_id_gives_is_a_plain_str_the_wire_carries():
    """get_node_id() gives an Id (a str with Ray's .hex()); the head admits no such class,
    so a pin that kept it was dropped as malformed and its get waited for ever."""
    from plait.graph.context import Id
    from plait.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    for pinned in (inc.options(node=Id("node-1")), inc.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(Id("node-1"), soft=False))):
        assert type(pinned.default_options.node) is str
