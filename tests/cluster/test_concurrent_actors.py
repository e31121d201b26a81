"""Async and threaded actors run their calls at once; an ObjectRef is awaitable.

No test here waits on a timer: calls that must overlap wait for each other (an asyncio
Event, a threading Barrier), so running them one at a time fails the test at its timeout.
"""

from __future__ import annotations

import asyncio
import os
import select
import threading
import time

import numpy as np
import pytest

import plait
from tests.cluster.gates import wait_exit, wait_for_file

pytestmark = pytest.mark.cluster


@plait.remote
def double(x):
    return 2 * x


@plait.remote
def fail():
    raise ValueError("bad input")


@plait.remote
class Rendezvous:
    """Two calls that end only together: the first waits until the second arrives."""

    def __init__(self):
        self.arrived = asyncio.Event()

    async def wait_for_partner(self):
        await self.arrived.wait()
        return "met"

    async def arrive(self):
        self.arrived.set()
        return "arrived"

    def sync_thread(self):
        return threading.get_ident()

    async def async_thread(self):
        return threading.get_ident()


@plait.remote
class Relay:
    """Calls that wait for other calls of the same actor, and for tasks."""

    async def outer(self, me):
        return 1 + await me.inner.remote()

    async def inner(self):
        return 41

    async def fan_out(self, me, n):
        return sum(await asyncio.gather(*[me.inner.remote() for _ in range(n)]))

    async def total(self, refs):
        """``refs`` arrive with their values: awaiting them is immediate."""
        return sum([await ref for ref in refs]) + await double.remote(1)

    async def blocking_get(self, x):
        return plait.get(double.remote(x))          # blocks the loop, as Ray allows

    async def put_big(self, n):
        return [plait.put(np.ones(n))]


@plait.remote
class Pair:
    """A sync actor whose calls meet at a barrier: only two at once get past it."""

    def __init__(self):
        self.barrier = threading.Barrier(2, timeout=20)

    def meet(self):
        return self.barrier.wait()

    def meet_and_double(self, x):
        self.barrier.wait()
        return plait.get(double.remote(x)), plait.get(plait.put(x))

    def thread_name(self):
        return threading.current_thread().name

    def ask_myself(self):
        """Waits, in one thread, for a call of this actor that another thread runs."""
        me = plait.get_runtime_context().current_actor
        return plait.get(me.answer.remote(), timeout=20) + 1

    def answer(self):
        return 41


# -- async actors ------------------------------------------------------------------------

@plait.remote
class OpensOnItsLoop:
    """An ``async def __init__`` (Ray awaits it): what it makes belongs to the actor's loop."""

    async def __init__(self, x):
        self.event = asyncio.Event()
        await asyncio.sleep(0)
        self.x = x

    async def value(self):
        self.event.set()               # an Event made on another loop would fail here
        return self.x


def test_an_async_init_is_awaited_on_the_actors_loop(cluster):
    assert plait.get(OpensOnItsLoop.remote(5).value.remote(), timeout=30) == 5


@plait.remote
class TicksInBackground:
    """A plain ``__init__`` of an async actor runs on its loop, running (as Ray's): a task
    it starts there runs between the calls."""

    def __init__(self):
        self.ticks = asyncio.Event()
        self.ticker = asyncio.create_task(self.tick())

    async def tick(self):
        self.ticks.set()

    async def ticked(self):
        await asyncio.wait_for(self.ticks.wait(), timeout=20)
        return asyncio.get_running_loop() is self.ticker.get_loop()


def test_a_plain_init_of_an_async_actor_runs_on_its_running_loop(cluster):
    assert plait.get(TicksInBackground.remote().ticked.remote(), timeout=30) is True


def test_two_async_calls_of_one_actor_run_at_once(cluster):
    actor = Rendezvous.remote()
    waiting = actor.wait_for_partner.remote()        # alone, this call would never end
    arriving = actor.arrive.remote()
    assert plait.get([waiting, arriving], timeout=30) == ["met", "arrived"]


def test_an_async_actor_runs_its_sync_methods_on_its_loop_too(cluster):
    actor = Rendezvous.remote()
    sync_id, async_id = plait.get([actor.sync_thread.remote(), actor.async_thread.remote()],
                                  timeout=30)
    assert sync_id == async_id


def test_an_async_call_awaiting_calls_of_its_own_actor_finishes(cluster):
    relay = Relay.remote()
    assert plait.get(relay.outer.remote(relay), timeout=30) == 42
    assert plait.get(relay.fan_out.remote(relay, 20), timeout=30) == 20 * 41


def test_an_async_call_awaits_its_arguments_refs_and_tasks_and_may_block_on_get(cluster):
    relay = Relay.remote()
    refs = [plait.put(5), double.remote(10)]
    assert plait.get(relay.total.remote(refs), timeout=30) == 5 + 20 + 2
    assert plait.get(relay.blocking_get.remote(4), timeout=30) == 8
    (ref,) = plait.get(relay.put_big.remote(200_000), timeout=30)   # stored, not inline
    assert plait.get(ref, timeout=30).sum() == 200_000


def test_max_concurrency_bounds_the_async_calls_running_at_once(cluster):
    @plait.remote
    class Gauge:
        def __init__(self):
            self.running = self.peak = 0
            self.second = asyncio.Event()

        async def enter(self):
            self.running += 1
            self.peak = max(self.peak, self.running)
            if self.running == 2:
                self.second.set()
            await self.second.wait()                  # the first waits for a second
            await asyncio.sleep(0)                    # let every call that may start, start
            self.running -= 1
            return self.peak

    gauge = Gauge.options(max_concurrency=2).remote()
    assert max(plait.get([gauge.enter.remote() for _ in range(8)], timeout=30)) == 2


def test_an_async_actor_with_max_concurrency_one_runs_calls_to_completion_in_order(cluster):
    @plait.remote
    class Pinger:
        def __init__(self):
            self.seen = []

        async def ping(self, i):
            await asyncio.sleep(0.001 * (5 - i))      # later calls would finish first
            self.seen.append(i)
            return list(self.seen)

    pinger = Pinger.options(max_concurrency=1).remote()
    assert plait.get([pinger.ping.remote(i) for i in range(5)], timeout=30)[-1] == [0, 1, 2, 3, 4]


def test_a_cancelled_async_call_waiting_for_its_turn_never_runs(cluster, tmp_path):
    @plait.remote
    class Single:
        def __init__(self):
            self.ran = []

        async def hold(self, fifo, gate):
            with open(fifo, "wb") as f:                # the test waits for this byte
                f.write(b"!")
            while not os.path.exists(gate):            # released by the test
                await asyncio.sleep(0.005)
            self.ran.append("hold")

        async def later(self):
            self.ran.append("later")

        def history(self):
            return self.ran

    fifo, gate = tmp_path / "started", tmp_path / "go"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        single = Single.options(max_concurrency=1).remote()
        held = single.hold.remote(str(fifo), str(gate))
        later = single.later.remote()
        plait.wait([later], timeout=0)                 # submitted: it reaches the actor
        assert select.select([reader], [], [], 30)[0]  # hold runs; later waits its turn
    finally:
        os.close(reader)
    plait.cancel(later)
    with pytest.raises(plait.TaskCancelledError):
        plait.get(later, timeout=30)
    gate.touch()
    plait.get(held, timeout=30)
    assert plait.get(single.history.remote(), timeout=30) == ["hold"]


def test_exit_actor_ends_an_async_actor_but_a_call_running_runs_on_as_in_ray(cluster):
    @plait.remote
    class Leaving:
        def __init__(self):
            self.never = asyncio.Event()

        async def wait_forever(self):
            await self.never.wait()

        async def leave(self):
            plait.actor.exit_actor()

        async def ping(self):
            return "pong"

    actor = Leaving.remote()
    forever = actor.wait_forever.remote()
    for ref in (actor.leave.remote(), actor.ping.remote()):
        with pytest.raises(plait.ActorDiedError):
            plait.get(ref, timeout=30)
    assert plait.wait([forever], timeout=0) == ([], [forever])   # it runs on, as in Ray
    plait.kill(actor)
    with pytest.raises(plait.ActorDiedError):
        plait.get(forever, timeout=30)


# -- threaded actors ---------------------------------------------------------------------

def test_a_threaded_actor_runs_max_concurrency_calls_at_once(cluster):
    pair = Pair.options(max_concurrency=2).remote()
    assert sorted(plait.get([pair.meet.remote() for _ in range(2)], timeout=30)) == [0, 1]


def test_threads_of_one_actor_submit_get_and_put_at_the_same_time(cluster):
    pair = Pair.options(max_concurrency=2).remote()
    refs = [pair.meet_and_double.remote(x) for x in (3, 4, 5, 6)]
    assert plait.get(refs, timeout=60) == [(6, 3), (8, 4), (10, 5), (12, 6)]


def test_a_threaded_call_waiting_for_another_call_of_its_actor_gets_its_result(cluster):
    """The call's get held the session's lock while it waited, and the other call could not
    end without it: GetTimeoutError here (a hang without a timeout), 42 in Ray."""
    pair = Pair.options(max_concurrency=2).remote()
    assert plait.get(pair.ask_myself.remote(), timeout=60) == 42


def test_a_sync_actor_still_runs_its_calls_one_by_one_in_its_main_thread(cluster):
    serial, threaded = Pair.remote(), Pair.options(max_concurrency=3).remote()
    names = plait.get([serial.thread_name.remote() for _ in range(10)], timeout=30)
    assert set(names) == {"MainThread"}           # where calls run one by one, in order
    names = plait.get([threaded.thread_name.remote() for _ in range(10)], timeout=30)
    assert all(name.startswith("plait-call") for name in names)


# -- lifetimes and refs, with calls running at once -----------------------------------------

@plait.remote
class Target:
    def pid(self):
        return os.getpid()


@plait.remote
class ThreadedHolder:
    """Keeps the handles its calls are given (its calls run in threads, at once)."""

    def __init__(self, path):
        import atexit

        self.kept = []
        atexit.register(lambda: open(path, "w").write("bye"))

    def pid(self):
        return os.getpid()

    def keep(self, handle):
        self.kept.append(handle)
        return len(self.kept)

    def ask(self):
        return plait.get([handle.pid.remote() for handle in self.kept])

    def made(self, x):
        return [plait.put(x), plait.put(2 * x)]       # refs riding in its result


@plait.remote
class AsyncHolder:
    """As ThreadedHolder, with calls on an event loop."""

    def __init__(self, path):
        import atexit

        self.kept = []
        atexit.register(lambda: open(path, "w").write("bye"))

    async def pid(self):
        return os.getpid()

    async def keep(self, handle):
        self.kept.append(handle)
        return len(self.kept)

    async def ask(self):
        return [await handle.pid.remote() for handle in self.kept]

    async def made(self, x):
        return [plait.put(x), plait.put(2 * x)]


def holder(kind, path):
    if kind == "sync":
        return ThreadedHolder.remote(path)
    if kind == "threaded":
        return ThreadedHolder.options(max_concurrency=4).remote(path)
    return AsyncHolder.remote(path)


@pytest.mark.parametrize("kind", ["threaded", "async"])
def test_a_handle_kept_by_a_concurrent_actors_call_keeps_its_actor_until_the_keeper_goes(
        cluster, tmp_path, kind):
    target, keeper = Target.remote(), holder(kind, str(tmp_path / "bye"))
    pid, keeper_pid = plait.get([target.pid.remote(), keeper.pid.remote()], timeout=30)
    assert plait.get(keeper.keep.remote(target), timeout=30) == 1
    del target                                     # the keeper's handle is the last one
    assert not wait_exit(pid, timeout=0.5)
    assert plait.get(keeper.ask.remote(), timeout=30) == [pid]
    del keeper                                     # it leaves, and its handle with it
    assert wait_exit(keeper_pid, timeout=10) and wait_exit(pid, timeout=10)
    assert (tmp_path / "bye").read_text() == "bye"  # it left gracefully: atexit ran


@pytest.mark.parametrize("kind", ["sync", "threaded", "async"])
def test_refs_in_the_results_of_calls_running_at_once_stay_readable(cluster, tmp_path, kind):
    keeper = holder(kind, str(tmp_path / "bye"))
    results = plait.get([keeper.made.remote(x) for x in range(8)], timeout=60)
    assert [plait.get(refs, timeout=30) for refs in results] == [[x, 2 * x] for x in range(8)]


# -- ObjectRefs in asyncio code --------------------------------------------------------------

def test_the_driver_awaits_object_refs(cluster, tmp_path):
    async def main():
        ref = double.remote(21)
        assert await ref == 42 and await ref == 42           # awaited twice
        assert await asyncio.wait_for(double.remote(1).as_future(), timeout=30) == 2
        assert ref.future().result(timeout=30) == 42          # a concurrent.futures.Future
        with pytest.raises(ValueError, match="bad input"):
            await fail.remote()
        gated = wait_for_file.remote(str(tmp_path / "go"))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(gated.as_future(), timeout=0.2)
        assert plait.get(double.remote(3), timeout=30) == 6  # beside a future still waiting
        (tmp_path / "go").touch()
        assert await gated == "done"
        return await asyncio.gather(*[double.remote(i) for i in range(5)])

    assert asyncio.run(main()) == [0, 2, 4, 6, 8]


@plait.remote(max_concurrency=3)
class EndsWhileBusy:
    """Threaded: calls that run until the test releases them, and one that ends the actor."""

    def hold(self, started, release):
        open(started, "w").close()
        deadline = time.monotonic() + 30
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.005)                    # (released by the test, not by a timer)
        return "held"

    def quit(self):
        plait.actor.exit_actor()


@plait.remote(max_concurrency=3)
class EndsWhileBusyAsync:
    """The same as an async actor (an async def method makes its calls run on one loop)."""

    async def hold(self, started, release):
        open(started, "w").close()
        deadline = time.monotonic() + 30
        while not os.path.exists(release) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        return "held"

    async def quit(self):
        plait.actor.exit_actor()


@pytest.mark.parametrize("kind", [EndsWhileBusy, EndsWhileBusyAsync], ids=["threaded", "async"])
def test_exit_actor_lets_the_calls_already_running_end_as_in_ray(cluster, tmp_path, kind):
    """Ray: "for concurrent and async actors, tasks currently executing will run to
    completion before the actor exits". Before, exit_actor() in one call failed the calls
    running beside it with ActorDiedError: their work was lost."""
    actor = kind.remote()
    release = tmp_path / "release"
    started = [tmp_path / f"started-{i}" for i in range(2)]
    running = [actor.hold.remote(str(path), str(release)) for path in started]
    for path in started:
        plait.get(wait_for_file.remote(str(path)), timeout=30)
    quitting = actor.quit.remote()
    with pytest.raises(plait.ActorDiedError, match="ended itself"):
        plait.get(quitting, timeout=30)
    release.touch()
    assert plait.get(running, timeout=30) == ["held", "held"]
    with pytest.raises(plait.ActorDiedError):
        plait.get(actor.hold.remote(str(started[0]), str(release)), timeout=30)


@plait.remote
class Signal:
    """Async: ``wait`` returns once ``send`` ran; ``echo`` returns its argument."""

    def __init__(self):
        self.sent = asyncio.Event()

    async def send(self):
        self.sent.set()
        return "sent"

    async def wait(self):
        await self.sent.wait()
        return "got"

    async def echo(self, value):
        return ("echo", value)


@plait.remote
def waits_on(signal):
    return plait.get(signal.wait.remote(), timeout=30)


def test_an_async_actors_call_waiting_for_its_argument_holds_back_no_later_call(cluster):
    """Ray runs an async or threaded actor's calls as their inputs come, not in the
    caller's order: ``echo`` waits for an argument that only ``send`` (called after it)
    makes. Before, send waited behind echo: both waited for ever."""
    signal = Signal.remote()
    echoed = signal.echo.remote(waits_on.remote(signal))
    assert plait.get(signal.send.remote(), timeout=30) == "sent"
    assert plait.get(echoed, timeout=30) == ("echo", "got")
