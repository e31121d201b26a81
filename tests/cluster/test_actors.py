"""Actors: one process per instance, calls in order, state kept, restarts and death."""

from __future__ import annotations

import os
import select

import numpy as np
import pytest

import plait
from tests.cluster.gates import wait_exit, wait_for_file
from tests.netns import wait_until

pytestmark = pytest.mark.cluster


@plait.remote
class Counter:
    def __init__(self, start=0):
        self.n = start
        self.log = []

    def incr(self, by=1):
        self.n += by
        self.log.append(by)
        return self.n

    def read(self):
        return self.n

    def size(self, items):
        return len(items)

    def history(self):
        return list(self.log)

    def pid(self):
        return os.getpid()

    def where(self):
        context = plait.get_runtime_context()
        return context.get_node_id(), context.get_actor_id()

    def fail(self):
        raise ValueError("bad input")

    def crash_once(self, flag):
        if not os.path.exists(flag):
            open(flag, "w").close()
            os._exit(3)
        self.n += 100
        return self.n

    def crash(self):
        os._exit(3)

    @plait.method(num_returns=2)
    def pair(self):
        return self.n, -self.n

    def big(self, n):
        return np.full(n, self.n, dtype=np.int64)


@plait.remote
class Broken:
    def __init__(self):
        raise RuntimeError("no database")

    def ping(self):
        return "pong"


@plait.remote
def call_through(counter, times):
    """A task holding a handle calls the actor itself and waits for the answers."""
    return plait.get([counter.incr.remote() for _ in range(times)])


@plait.remote
def total(array):
    return int(array.sum()), plait.get_runtime_context().get_node_id()


# -- state and order ---------------------------------------------------------------------

def test_state_persists_and_calls_run_in_the_order_they_were_made(cluster):
    counter = Counter.remote(10)
    refs = [counter.incr.remote(i) for i in range(1, 201)]
    values = plait.get(refs, timeout=60)
    assert values == [10 + i * (i + 1) // 2 for i in range(1, 201)]
    assert plait.get(counter.history.remote(), timeout=30) == list(range(1, 201))


def test_calls_never_requested_still_run_before_the_next_read(cluster):
    counter = Counter.remote()
    counter.incr.remote()
    counter.incr.remote(5)
    assert plait.get(counter.read.remote(), timeout=30) == 6


def test_a_call_waiting_for_its_input_holds_back_the_calls_behind_it(cluster, tmp_path):
    gate = tmp_path / "go"
    counter = Counter.remote()
    first = counter.incr.remote(wait_for_file.remote(str(gate), 7))
    second = counter.incr.remote(1)
    ready, _ = plait.wait([second], timeout=0.5)
    assert ready == []                            # second waits behind first
    gate.touch()
    assert plait.get([first, second], timeout=30) == [7, 8]


def test_another_callers_ready_call_passes_a_call_waiting_for_its_input(cluster, tmp_path):
    """Calls are ordered per caller, as in Ray: a task's call (another caller) runs while
    the driver's call waits for its argument."""
    gate = tmp_path / "go"
    counter = Counter.remote()
    first = counter.incr.remote(wait_for_file.remote(str(gate), 7))
    assert plait.get(call_through.remote(counter, 1), timeout=30) == [1]
    gate.touch()
    assert plait.get(first, timeout=30) == 8


def test_an_actor_is_a_process_of_its_own_that_runs_every_call(cluster):
    counter = Counter.remote()
    pids = set(plait.get([counter.pid.remote() for _ in range(20)], timeout=30))
    assert len(pids) == 1 and os.getpid() not in pids
    node, actor = plait.get(counter.where.remote(), timeout=30)
    assert node == "node-0" and actor == counter.actor_id


def test_num_returns_from_plait_method(cluster):
    counter = Counter.remote(4)
    plus, minus = counter.pair.remote()
    assert plait.get([plus, minus], timeout=30) == [4, -4]


def test_handles_pass_to_tasks_and_their_calls_join_the_same_order(cluster):
    counter = Counter.remote()
    assert plait.get(call_through.remote(counter, 3), timeout=60) == [1, 2, 3]
    assert plait.get(counter.incr.remote(), timeout=30) == 4


def test_a_handle_passed_to_another_actor_works_there(cluster):
    @plait.remote
    class Relay:
        def __init__(self, target):
            self.target = target

        def push(self):
            return plait.get(self.target.incr.remote(10))

    counter = Counter.remote()
    relay = Relay.remote(counter)
    assert plait.get(relay.push.remote(), timeout=60) == 10
    assert plait.get(counter.read.remote(), timeout=30) == 10


# -- errors ------------------------------------------------------------------------------

def test_a_method_that_raises_fails_that_call_only(cluster):
    counter = Counter.remote()
    with pytest.raises(ValueError, match="bad input") as caught:
        plait.get(counter.fail.remote(), timeout=30)
    assert isinstance(caught.value, plait.TaskError)
    assert isinstance(caught.value, plait.exceptions.RayTaskError)
    assert plait.get(counter.incr.remote(), timeout=30) == 1


def test_a_constructor_that_raises_kills_the_actor_with_the_cause(cluster):
    broken = Broken.remote()
    with pytest.raises(plait.ActorDiedError, match="constructor") as caught:
        plait.get(broken.ping.remote(), timeout=30)
    assert isinstance(caught.value.cause, RuntimeError)
    with pytest.raises(plait.exceptions.RayActorError):
        plait.get(broken.ping.remote(), timeout=30)


def test_unknown_method_and_direct_calls_are_clear_errors(cluster):
    counter = Counter.remote()
    with pytest.raises(AttributeError, match="no method 'nope'"):
        counter.nope.remote()
    with pytest.raises(TypeError, match=r"incr\.remote"):
        counter.incr()


def test_kill_fails_pending_and_later_calls_and_stops_the_process(cluster):
    counter = Counter.remote()
    pid = plait.get(counter.pid.remote(), timeout=30)
    plait.kill(counter)
    assert wait_exit(pid)
    with pytest.raises(plait.ActorDiedError, match="plait.kill") as caught:
        plait.get(counter.read.remote(), timeout=30)
    # Ray's words, which Ray code and tests look for, with plait's own detail
    assert str(caught.value).startswith(f"actor {counter.actor_id}: The actor is dead because "
                                        f"it was killed by `ray.kill` (plait.kill)")
    with pytest.raises(TypeError, match="actor handle"):
        plait.kill("counter")


def test_kill_without_no_restart_restarts_within_max_restarts(cluster):
    counter = Counter.options(max_restarts=1).remote(5)
    assert plait.get(counter.incr.remote(), timeout=30) == 6
    pid = plait.get(counter.pid.remote(), timeout=30)
    plait.kill(counter, no_restart=False)
    assert wait_exit(pid)
    assert plait.get(counter.read.remote(), timeout=60) == 5       # constructor ran again
    assert plait.get(counter.pid.remote(), timeout=30) != pid


@plait.remote
def hundred():
    return 100


@plait.remote(max_restarts=2)
class MadeFromRefs:
    def __init__(self, base, block, nested):
        self.total = base + int(block.sum()) + plait.get(nested[0])

    def read(self):
        return self.total, os.getpid()


def test_a_restarted_actor_runs_its_constructor_again_on_the_refs_it_was_made_with(cluster):
    """As Ray keeps a restartable actor's constructor arguments while it lives: here a
    task's result, a stored array and a nested ref, none of them held by the driver."""
    from tests.cluster.test_state import gone_within

    base, block = hundred.remote(), plait.put(np.ones(1 << 20, dtype=np.uint8))
    made = MadeFromRefs.remote(base, block, [plait.put(1)])
    ids = [base.hex(), block.hex()]
    del base, block
    total, pid = plait.get(made.read.remote(), timeout=30)
    assert total == 100 + (1 << 20) + 1
    for _ in range(2):
        plait.kill(made, no_restart=False)
        assert wait_exit(pid)
        again, pid = plait.get(made.read.remote(), timeout=60)
        assert again == total
    plait.kill(made)
    assert all(gone_within(object_id, 10) for object_id in ids)   # released once dead


@plait.remote
def put_in_a_task(gate):
    inner = wait_for_file.remote(gate, 7)
    return plait.put([inner]), inner.hex()


def holders(object_id: str) -> int:
    """How many holders the head counts for ``object_id`` once it is listed (the listing
    is a request: the head has taken in all this session sent before it)."""
    import time

    from plait.util.state import list_objects

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:       # a call is listed once it is submitted
        rows = list_objects(filters=[("object_id", "=", object_id)])
        if rows:
            return rows[0].holders
    raise AssertionError(f"{object_id} never listed")


def test_calls_not_submitted_yet_held_only_by_a_put_stay_held(cluster, tmp_path):
    """A put holding the only ref of a call not submitted yet (an actor's creation too):
    the head did not know of them when the put reached it, so it counted no holder, and
    once the call ended its result was reclaimed (the actor: "never created here"). Ray
    keeps them."""
    gate = tmp_path / "go"
    inner = wait_for_file.remote(str(gate), 7)
    inner_id = inner.hex()
    listed = plait.put([inner])
    counter = Counter.remote(5)
    counter_id = counter.actor_id
    boxed = plait.put({"counter": counter})
    del inner, counter
    in_task, in_task_id = plait.get(put_in_a_task.remote(str(gate)), timeout=30)
    assert holders(inner_id) >= 1 and holders(counter_id) >= 1 and holders(in_task_id) >= 1
    gate.touch()
    assert plait.get(plait.get(listed, timeout=30)[0], timeout=30) == 7
    assert plait.get(plait.get(in_task, timeout=30)[0], timeout=30) == 7
    assert plait.get(plait.get(boxed, timeout=30)["counter"].incr.remote(), timeout=30) == 6


@plait.remote
def refuses():
    raise ValueError("no input for you")


def test_an_actor_whose_constructor_argument_failed_is_dead_and_the_node_runs_on(cluster):
    """As Ray: ActorDiedError at once, its cause the argument's error. Before, the node
    looked for the argument again at every turn, for ever: every later get timed out."""
    made = MadeFromRefs.remote(refuses.remote(), None, [])
    with pytest.raises(plait.ActorDiedError, match="no input for you"):
        plait.get(made.read.remote(), timeout=30)
    assert plait.get(hundred.remote(), timeout=30) == 100


def test_a_dead_process_without_restarts_raises_actor_died(cluster):
    counter = Counter.remote()
    with pytest.raises(plait.ActorDiedError, match="died"):
        plait.get(counter.crash.remote(), timeout=30)
    with pytest.raises(plait.ActorDiedError):
        plait.get(counter.read.remote(), timeout=30)


def test_restart_fails_the_calls_sent_to_it_without_task_retries(cluster):
    """The calls lost with the process (the one running, and any sent behind it, which may
    have run too) raise Ray's ActorUnavailableError while the actor restarts, and none runs
    again; a call that ended before keeps its result (unless it was lost on its way out
    of the dying process, as Ray loses ~1 in 5 such here); ActorDiedError once out of
    restarts."""
    counter = Counter.options(max_restarts=3).remote()
    kept = 0
    for _ in range(3):
        before, crashed, behind = (counter.incr.remote(), counter.crash.remote(),
                                   counter.incr.remote())
        try:
            assert plait.get(before, timeout=30) in (1, 2)   # (2: behind ran last round)
            kept += 1
        except plait.exceptions.ActorUnavailableError:
            pass
        with pytest.raises(plait.exceptions.ActorUnavailableError, match="max_task_retries=0"):
            plait.get(crashed, timeout=60)
        try:                                 # sent before the crash, or after (then it ran)
            assert plait.get(behind, timeout=60) == 1     # on the restarted process
        except plait.exceptions.ActorUnavailableError:
            pass
    assert kept >= 1
    assert plait.get(counter.incr.remote(), timeout=60) >= 1   # 3 crashes, 3 restarts: alive
    with pytest.raises(plait.ActorDiedError, match="max_task_retries=0") as caught:
        plait.get(counter.crash.remote(), timeout=60)
    assert not isinstance(caught.value, plait.exceptions.ActorUnavailableError)


def test_task_retries_rerun_the_crashed_call_on_the_restarted_actor(cluster, tmp_path):
    counter = Counter.options(max_restarts=1, max_task_retries=1).remote()
    assert plait.get(counter.crash_once.remote(str(tmp_path / "flag")), timeout=60) == 100


def test_an_actor_without_handles_stops_with_no_further_call_into_plait(cluster):
    counter = Counter.remote()
    pid = plait.get(counter.pid.remote(), timeout=30)
    del counter                      # and nothing else: the session frees it when quiet
    assert wait_exit(pid, timeout=10)


def test_an_actor_whose_last_handle_goes_runs_its_pending_calls_first(cluster, tmp_path):
    gate = tmp_path / "go"
    counter = Counter.remote()
    pid = plait.get(counter.pid.remote(), timeout=30)
    late = counter.incr.remote(wait_for_file.remote(str(gate), 5))
    del counter
    assert not wait_exit(pid, timeout=0.2)        # its call still waits for its input
    gate.touch()
    assert plait.get(late, timeout=30) == 5
    assert wait_exit(pid, timeout=10)


@plait.remote
def drop_inside():
    """Start an actor, use it, drop it: the actor is this task's to end."""
    counter = Counter.remote()
    pid = plait.get(counter.pid.remote())
    del counter
    return pid


def test_an_actor_dropped_inside_a_task_stops(cluster):
    pid = plait.get(drop_inside.remote(), timeout=30)
    assert wait_exit(pid, timeout=10)


@plait.remote
class Keeper:
    """Holds a handle it was given: the actor behind it lives as long as this one."""

    def __init__(self, kept):
        self.kept = kept

    def ask(self):
        return plait.get(self.kept.read.remote())


def test_a_handle_kept_in_an_actors_state_keeps_its_actor_alive(cluster):
    counter = Counter.remote(3)
    keeper = Keeper.remote(counter)
    pid = plait.get(counter.pid.remote(), timeout=30)
    plait.get(keeper.ask.remote(), timeout=30)
    del counter                                   # the keeper's handle is the last one
    assert not wait_exit(pid, timeout=0.5)
    assert plait.get(keeper.ask.remote(), timeout=30) == 3
    del keeper
    assert wait_exit(pid, timeout=10)


@plait.remote
class Goodbye:
    """Writes ``path`` from an atexit handler, and ``path`` + ".del" from ``__del__``:
    whether its process left gracefully, and its instance went."""

    def __init__(self, path):
        import atexit

        self.path = path
        atexit.register(lambda: open(path, "w").write("bye"))

    def pid(self):
        return os.getpid()

    def __del__(self):
        with open(self.path + ".del", "w") as f:
            f.write("del")


def test_an_actor_leaving_with_its_last_handle_runs_atexit_and_a_killed_one_does_not(
        cluster, tmp_path):
    left, killed = tmp_path / "left", tmp_path / "killed"
    leaving, dying = Goodbye.remote(str(left)), Goodbye.remote(str(killed))
    pids = plait.get([leaving.pid.remote(), dying.pid.remote()], timeout=30)
    del leaving
    plait.kill(dying)                             # as ray.kill: no exit handlers
    assert all(wait_exit(pid, timeout=10) for pid in pids)
    assert left.read_text() == "bye" and not killed.exists()
    assert (tmp_path / "left.del").exists()               # __del__ ran, as in Ray
    assert not (tmp_path / "killed.del").exists()


def test_a_call_whose_nested_ref_is_pending_does_not_hold_back_the_calls_behind_it(
        cluster, tmp_path):
    gate = tmp_path / "go"
    counter = Counter.remote()
    first = counter.size.remote([wait_for_file.remote(str(gate), 7)])   # nested: not awaited
    second = counter.incr.remote(1)
    assert plait.get([first, second], timeout=30) == [1, 1]            # the gate still shut
    gate.touch()


def test_a_detached_actor_outlives_its_handle(cluster):
    counter = Counter.options(lifetime="detached").remote()
    pid = plait.get(counter.pid.remote(), timeout=30)
    del counter
    plait.put(0)
    assert not wait_exit(pid, timeout=0.5)


# -- placement -----------------------------------------------------------------------------

def test_calls_run_on_the_actors_node_and_readers_go_to_its_results(fresh):
    plait.init(num_nodes=2, num_workers=1)
    counter = Counter.options(node="node-1").remote(1)
    big = counter.big.remote(1 << 20)                    # 8 MiB, made on node-1
    summed = total.remote(big)
    plan = plait.compile(summed)
    assert plan.placements[big.id].node == "node-1"
    assert plan.placements[big.id].reason == "runs in its actor"
    assert plan.placements[summed.id].node == "node-1"
    assert "Counter.big" in plan.explain()
    with plait.trace() as trace:
        assert plait.get(summed, timeout=60) == (1 << 20, "node-1")
    assert trace.bytes_moved == 0
    assert {t.function_name for t in trace.tasks} >= {"Counter.big", "total"}
    assert plait.get(counter.where.remote(), timeout=30)[0] == "node-1"


def test_an_actor_restarts_on_another_node_when_its_node_dies(fresh):
    plait.init(num_nodes=2, num_workers=1)
    counter = Counter.options(node="node-1", max_restarts=1).remote(3)
    assert plait.get(counter.incr.remote(), timeout=30) == 4
    node_1 = next(n for n in plait.nodes() if n.id == "node-1")
    os.kill(node_1.pid, 9)
    assert wait_exit(node_1.pid)
    for _ in range(1000):                 # until the head has seen it go (a round trip each)
        if all(n.id != "node-1" for n in plait.nodes()):
            break
    assert plait.get(counter.read.remote(), timeout=60) == 3
    assert plait.get(counter.where.remote(), timeout=30)[0] == "node-0"


def test_an_actor_made_right_after_a_kill_goes_where_the_killed_one_held_its_cpus(fresh):
    """Ray places a new actor on the CPUs a killed one gives back; before, the kill had not
    reached the plan's view yet, so the new actor went to the other node, whose CPUs a
    live actor holds, and waited there for ever."""
    plait.init(num_nodes=2, num_workers=1)
    first = Counter.options(num_cpus=1, node="node-0").remote()
    second = Counter.options(num_cpus=1, node="node-1").remote()
    assert plait.get(second.where.remote(), timeout=30)[0] == "node-1"
    plait.kill(second)
    third = Counter.options(num_cpus=1).remote()         # at once: no pause after the kill
    assert plait.get(third.where.remote(), timeout=30)[0] == "node-1"
    assert plait.get(first.where.remote(), timeout=30)[0] == "node-0"


def test_an_actor_waiting_for_cpus_starts_on_the_node_where_they_come_free_first(fresh):
    """Ray starts a pending actor on the first node with CPUs free. Before, an actor made
    while actors held every CPU waited on the node its plan chose, even once another
    node's CPUs were free: here, for ever."""
    plait.init(num_nodes=2, num_workers=1)
    first = Counter.options(num_cpus=1, node="node-0").remote()
    second = Counter.options(num_cpus=1, node="node-1").remote(5)
    assert plait.get([first.where.remote(), second.where.remote()], timeout=30)
    third = Counter.options(num_cpus=1).remote(10)
    called = third.incr.remote()                          # waits with it
    assert plait.wait([called], timeout=0.5) == ([], [called])
    plait.kill(second)
    assert plait.get(called, timeout=30) == 11
    assert plait.get(third.where.remote(), timeout=30)[0] == "node-1"
    assert plait.get(first.where.remote(), timeout=30)[0] == "node-0"


@plait.remote
def double(x):
    return 2 * x


def test_an_actor_that_asks_for_cpus_holds_task_slots_while_it_lives(cluster):
    counter = Counter.options(num_cpus=1).remote()
    assert plait.get(counter.read.remote(), timeout=30) == 0
    wide = double.options(num_cpus=2).remote(21)
    ready, _ = plait.wait([wide], timeout=1.0)
    assert ready == []                  # one of the two slots is the actor's
    plait.kill(counter)
    assert plait.get(wide, timeout=30) == 42


def test_a_named_actor_is_found_by_name_from_a_task_and_names_are_unique(cluster):
    counter = Counter.options(name="bank").remote(7)
    assert plait.get(counter.incr.remote(), timeout=30) == 8

    @plait.remote
    def deposit_by_name():
        return plait.get(plait.get_actor("bank").incr.remote(10))

    assert plait.get(deposit_by_name.remote(), timeout=60) == 18
    assert plait.get(plait.get_actor("bank").read.remote(), timeout=30) == 18
    with pytest.raises(plait.exceptions.ActorAlreadyExistsError, match="'bank' is taken"):
        Counter.options(name="bank").remote()           # at the call, as Ray refuses it
    with pytest.raises(plait.ActorNotFoundError, match="no actor named 'nobody'"):
        plait.get_actor("nobody")
    same = Counter.options(name="bank", get_if_exists=True).remote()
    assert same == counter and plait.get(same.read.remote(), timeout=30) == 18
    assert Counter.options(name="bank").get_or_create(0) == counter
    fresh = Counter.options(name="vault").get_or_create(3)
    assert plait.get(fresh.read.remote(), timeout=30) == 3


def test_a_name_is_refused_at_once_when_empty_or_taken_and_free_once_its_actor_is_killed(
        cluster):
    with pytest.raises(plait.InvalidOptionError, match="name cannot be empty"):
        Counter.options(name="").remote()
    with pytest.raises(plait.InvalidOptionError, match="get_if_exists needs a name"):
        Counter.options(get_if_exists=True).remote()
    first = Counter.options(name="desk").remote(1)
    with pytest.raises(plait.InvalidOptionError, match="taken"):   # not submitted yet, even
        Counter.options(name="desk").remote(2)
    plait.kill(first)
    second = Counter.options(name="desk").remote(2)               # the name is free at once
    assert plait.get(plait.get_actor("desk").read.remote(), timeout=30) == 2
    with pytest.raises(plait.ActorDiedError):
        plait.get(first.read.remote(), timeout=30)
    plait.kill(second)


def test_a_namespace_scopes_actor_names(cluster):
    counter = Counter.options(name="till", namespace="shop").remote(5)
    assert plait.get(plait.get_actor("till", namespace="shop").read.remote(), timeout=30) == 5
    with pytest.raises(plait.ActorNotFoundError,
                       match="no actor named 'till' in namespace 'bank' is alive"):
        plait.get_actor("till", namespace="bank")
    with pytest.raises(plait.ActorNotFoundError):
        plait.get_actor("till")
    other = Counter.options(name="till").remote(9)     # the same name with no namespace
    assert plait.get(plait.get_actor("till").read.remote(), timeout=30) == 9
    same = Counter.options(name="till", namespace="shop", get_if_exists=True).remote()
    assert same == counter
    slash = Counter.options(name="shop/till").remote(1)   # was "till" in "shop" as registered
    assert plait.get(plait.get_actor("shop/till").read.remote(), timeout=30) == 1
    assert sorted(plait.util.list_named_actors()) == ["shop/till", "till"]
    assert sorted(plait.util.list_named_actors(all_namespaces=True), key=str) == [
        {"name": "shop/till", "namespace": ""}, {"name": "till", "namespace": ""},
        {"name": "till", "namespace": "shop"}]
    for actor in (other, counter, slash):
        plait.kill(actor)
    assert plait.util.list_named_actors(all_namespaces=True) == []    # killed: names free


def test_a_cancelled_sync_call_can_see_it_and_an_async_one_is_interrupted(cluster, tmp_path):
    import asyncio
    import time

    def announce(fifo):
        with open(fifo, "wb") as f:              # the test waits for this byte
            f.write(b"!")

    @plait.remote
    class Worker:
        def __init__(self):
            self.saw_cancel = False

        def loop_until_cancelled(self, fifo):
            announce(fifo)
            for _ in range(3000):
                if plait.get_runtime_context().is_canceled():
                    self.saw_cancel = True
                    return "stopped"
                time.sleep(0.01)                 # the work being done, not synchronisation
            return "finished"

        async def sleep_long(self, fifo):
            announce(fifo)
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                self.saw_cancel = True
                raise

        def saw(self):
            return self.saw_cancel

    for method in ("loop_until_cancelled", "sleep_long"):
        fifo = tmp_path / method
        os.mkfifo(fifo)
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            worker = Worker.remote()
            ref = getattr(worker, method).remote(str(fifo))
            assert select.select([reader], [], [], 30)[0]     # the call is running
        finally:
            os.close(reader)
        plait.cancel(ref)
        with pytest.raises(plait.TaskCancelledError):
            plait.get(ref, timeout=30)
        assert plait.get(worker.saw.remote(), timeout=30) is True


def test_an_actor_pool_spreads_calls_and_returns_results_in_order_or_as_ready(cluster):
    from plait.util import ActorPool

    counters = [Counter.remote(100 * k) for k in range(2)]
    pool = ActorPool(counters)
    doubled = list(pool.map(lambda actor, v: actor.pair.remote()[0], range(4)))
    assert len(doubled) == 4 and set(doubled) <= {0, 100}
    pool = ActorPool(counters)
    values = sorted(pool.map_unordered(lambda actor, v: actor.incr.remote(v), [1, 2, 3, 4]))
    assert sum(values) > 0 and len(values) == 4 and not pool.has_next()
    pool.submit(lambda actor, v: actor.fail.remote(), None)
    with pytest.raises(ValueError):
        pool.get_next()
    assert pool.has_free()                       # the actor came back despite the error


@plait.remote
class Callable:
    def _double(self, value):
        return 2 * value

    def __call__(self, value):
        return self._double(value) + 1


def test_private_methods_call_and_ray_ready_are_callable_as_in_ray(cluster):
    actor = Callable.remote()
    assert plait.get(actor.__ray_ready__.remote(), timeout=30) is True
    assert plait.get([actor._double.remote(3), actor.__call__.remote(3)], timeout=30) == [6, 7]
    assert not hasattr(actor, "__deepcopy__")      # Python's protocols stay the handle's
    plait.kill(actor)


class Sized:
    def __len__(self):
        return len(self.rows)


@plait.remote
class Rows(Sized):
    def __init__(self, *rows):
        self.rows = list(rows)

    def __getitem__(self, index):
        return self.rows[index]

    def __contains__(self, row):
        return row in self.rows

    def __repr__(self):
        return "Rows(...)"


def test_dunder_methods_the_class_defines_are_called_through_the_handle_as_in_ray(cluster):
    rows = Rows.remote("a", "b")
    assert plait.get([rows.__len__.remote(), rows.__getitem__.remote(1),
                      rows.__contains__.remote("a")], timeout=30) == [2, "b", True]
    assert repr(rows).startswith("Actor(Rows")     # the handle's own, as in Ray
    with pytest.raises(AttributeError, match="'__iter__'"):
        rows.__iter__.remote()
    plait.kill(rows)


@plait.remote
class Holder:
    def __init__(self):
        self.value = 7


async def scaled_async(instance, factor):
    return instance.value * factor


def test_ray_call_runs_a_function_on_the_actors_instance(cluster):
    """Ray's ``handle.__ray_call__.remote(fn, *args)``: fn(instance, *args) in the actor."""
    holder = Holder.remote()
    assert plait.get(holder.__ray_call__.remote(lambda self, n: self.value + n, 3),
                     timeout=30) == 10
    assert plait.get(holder.__ray_call__.remote(lambda self: setattr(self, "value", 1)),
                     timeout=30) is None
    assert plait.get(holder.__ray_call__.remote(scaled_async, factor=5), timeout=30) == 5


@plait.remote
class ArrayKeeper:
    def __init__(self):
        self.arrays = []

    def keep(self, array):
        self.arrays.append(array)

    def keep_nested(self, box):
        self.arrays.append(plait.get(box[0]))

    def firsts(self):
        return [float(array[0]) for array in self.arrays]

    def drop(self):
        self.arrays = []


@plait.remote
def minus_two():
    return np.full(1 << 17, -2.0)


def stored_objects() -> int:
    from plait.api import session

    return sum(summary.objects for summary in session().memory_summary())


def test_arrays_an_actor_keeps_stay_its_own_after_every_ref_is_dropped(cluster):
    """Zero-copy arguments an actor keeps in its state (as Ray's stay, pinned by the
    worker's reference): before, once no ref was left their blocks were reused under
    them and the actor read other objects' bytes. They go once the actor drops them."""
    keeper = ArrayKeeper.remote()
    for i in range(3):
        ref = plait.put(np.full(1 << 17, float(i)))           # 1 MiB: stored, not inline
        plait.get(keeper.keep.remote(ref), timeout=30)
        del ref
    ref = plait.put(np.full(1 << 17, 3.0))
    plait.get(keeper.keep_nested.remote([ref]), timeout=30)
    del ref
    for _ in range(6):                        # blocks freed and made again, over the same
        churn = plait.put(np.full(1 << 17, -1.0))      # bytes if the kept ones were free
        del churn
    made = plait.get([minus_two.remote() for _ in range(6)], timeout=30)
    del made
    assert plait.get(keeper.firsts.remote(), timeout=30) == [0.0, 1.0, 2.0, 3.0]
    plait.get(keeper.drop.remote(), timeout=30)
    wait_until(lambda: stored_objects() == 0, 10, "the dropped arrays' blocks to go")
    assert plait.util.validate_state() == []
