"""Generator tasks on a real cluster: values stream to the caller while the task runs,
errors come where they happened, nothing is lost twice or kept once dropped.

Tasks that must not end before the test says so wait for a file the test creates (a gate,
bounded by a timeout in the task), never for a timer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time

import numpy as np
import pytest

import plait
from plait.api import session

pytestmark = pytest.mark.cluster

MIB = 1 << 20
GATE_SECONDS = 30            # a gate never opened fails its task instead of hanging the test


def wait_for_gate(path: str) -> None:
    deadline = time.monotonic() + GATE_SECONDS
    while not os.path.exists(path):              # opened by the test, not by a timer
        if time.monotonic() > deadline:
            raise TimeoutError(f"the test never opened {path}")
        time.sleep(0.005)


def open_gate(path) -> None:
    open(path, "w").close()


@plait.remote
def numbers(n, gate=None, big=False):
    """0, 1, ... n-1 (as MiB arrays with ``big``); after the first, waits for ``gate``."""
    for i in range(n):
        yield np.full(MIB // 8, i) if big else i
        if gate is not None and i == 0:
            wait_for_gate(gate)


@plait.remote
def fails_after(k):
    yield from range(k)
    raise ValueError(f"bad value after {k}")


@plait.remote
def crashes_once(n, flag):
    """Dies (the worker exits) after two values on its first run; its re-run yields all."""
    for i in range(n):
        yield np.full(MIB // 8, i)                 # stored: a re-run finds them sealed here
        if i == 1 and not os.path.exists(flag):
            open(flag, "w").close()
            os._exit(3)


@plait.remote(retry_exceptions=[ValueError], max_retries=1)
def raises_once(n, flag):
    for i in range(n):
        if i == 2 and not os.path.exists(flag):
            open(flag, "w").close()
            raise ValueError("first run")
        yield i


@plait.remote
def plain(n):
    return list(range(n))


@plait.remote
def total_of_stream(n):
    """A task that reads another task's stream (through its worker's own session)."""
    return sum(plait.get(ref, timeout=30) for ref in numbers.remote(n))


@plait.remote
class Source:
    def values(self, n, gate=None):
        for i in range(n):
            yield i * 10
            if gate is not None and i == 0:
                wait_for_gate(gate)

    async def ticks(self, n, gate):
        for i in range(n):
            yield i
            if i == 0:
                while not os.path.exists(gate):      # awaits, so a cancel could reach it
                    await asyncio.sleep(0.005)

    async def broken(self):
        yield 1
        raise KeyError("async")


def values_of(generator) -> list:
    return [plait.get(ref, timeout=30) for ref in generator]


def first_ready(generator) -> None:
    """Fail fast, rather than hang, if the first value does not come while the task runs."""
    ready, _ = plait.wait([generator], num_returns=1, timeout=GATE_SECONDS)
    assert ready == [generator], "no value came while the task ran"


# -- streaming -----------------------------------------------------------------------------

def test_a_generator_function_streams_its_values_in_order(cluster):
    generator = numbers.remote(4)
    assert isinstance(generator, plait.ObjectRefGenerator)
    assert plait.get(generator) is generator                # as Ray's get gives it back
    assert values_of(generator) == [0, 1, 2, 3]
    with pytest.raises(StopIteration):
        next(generator)


def test_the_first_value_is_read_while_the_task_still_runs(cluster, tmp_path):
    gate = str(tmp_path / "gate")
    generator = numbers.remote(3, gate)              # it waits after 0 until we read it
    first_ready(generator)
    assert plait.get(next(generator), timeout=30) == 0
    _, running = plait.wait([generator.completed()], timeout=0)
    assert running == [generator.completed()]          # it waits for us: not over yet
    open_gate(gate)
    assert values_of(generator) == [1, 2]


def test_large_values_stream_from_the_store(cluster, tmp_path):
    gate = str(tmp_path / "gate")
    generator = numbers.remote(2, gate, big=True)
    first_ready(generator)
    first = plait.get(next(generator), timeout=30)
    assert first.shape == (MIB // 8,) and first[0] == 0 and not first.flags.writeable
    open_gate(gate)
    assert plait.get(next(generator), timeout=30)[0] == 1


def test_an_actor_method_that_yields_streams(cluster, tmp_path):
    gate = str(tmp_path / "gate")
    source = Source.remote()
    generator = source.values.remote(3, gate)
    first_ready(generator)
    assert plait.get(next(generator), timeout=30) == 0
    open_gate(gate)
    assert values_of(generator) == [10, 20]


def test_an_async_method_streams_to_async_for(cluster, tmp_path):
    gate = str(tmp_path / "gate")
    source = Source.remote()

    async def consume():
        seen = []
        async for ref in source.ticks.remote(3, gate):
            seen.append(plait.get(ref, timeout=30))
            open_gate(gate)                          # only after the first value came
        return seen

    assert asyncio.run(asyncio.wait_for(consume(), GATE_SECONDS)) == [0, 1, 2]


def test_a_task_reads_a_stream_of_its_own(cluster):
    assert plait.get(total_of_stream.remote(5), timeout=30) == 10


def test_wait_takes_generators_beside_refs(cluster):
    generator = numbers.remote(1)
    ref = plain.remote(2)
    ready, pending = plait.wait([generator, ref], num_returns=2, timeout=30)
    assert ready == [generator, ref] and pending == []
    assert plait.get(next(generator), timeout=30) == 0
    ready, _ = plait.wait([generator], timeout=30)       # over: next will not block
    assert ready == [generator] and generator.is_finished()
    with pytest.raises(StopIteration):
        next(generator)


# -- errors --------------------------------------------------------------------------------

def test_an_exception_after_k_values_gives_k_values_then_the_error(cluster):
    generator = fails_after.remote(2)
    refs = list(generator)                               # the error's ref is the last
    assert len(refs) == 3 and refs[-1] != generator.completed()
    assert [plait.get(ref, timeout=30) for ref in refs[:2]] == [0, 1]
    with pytest.raises(ValueError, match="bad value after 2") as caught:
        plait.get(refs[2], timeout=30)
    assert isinstance(caught.value, plait.TaskError)
    with pytest.raises(StopIteration):
        next(generator)
    assert plait.get(generator.completed(), timeout=30) is None     # it ended, as in Ray


class Logged(logging.Handler):
    """Sets ``heard`` once an error naming ``words`` is logged."""

    def __init__(self, words):
        super().__init__(logging.ERROR)
        self.words, self.heard = words, threading.Event()

    def emit(self, record):
        if self.words in record.getMessage():
            self.heard.set()


def test_an_exception_nobody_got_is_logged_as_unhandled(cluster):
    logged = Logged("bad value after 1")
    logger = logging.getLogger("plait.session")
    logger.addHandler(logged)
    try:
        generator = fails_after.remote(1)
        refs = list(generator)
        assert plait.get(refs[0], timeout=30) == 0
        del refs, generator                              # the error's ref went unread
        assert logged.heard.wait(timeout=GATE_SECONDS)   # the session looks in when quiet
    finally:
        logger.removeHandler(logged)


def test_an_async_method_that_raises_gives_its_value_then_the_error(cluster):
    source = Source.remote()
    refs = list(source.broken.remote())
    assert plait.get(refs[0], timeout=30) == 1
    with pytest.raises(KeyError):
        plait.get(refs[1], timeout=30)


class HoldsALock(Exception):
    def __init__(self):
        super().__init__("it holds a lock")
        self.lock = threading.Lock()              # cannot be pickled


@plait.remote
def raises_unpicklable():
    yield 1
    raise HoldsALock()


def test_an_error_that_cannot_be_pickled_still_ends_the_stream_as_a_task_error(cluster):
    refs = list(raises_unpicklable.remote())
    assert plait.get(refs[0], timeout=30) == 1
    with pytest.raises(plait.TaskError, match="HoldsALock: it holds a lock"):
        plait.get(refs[1], timeout=30)


def test_a_crashed_run_is_run_again_and_no_value_comes_twice(cluster, tmp_path):
    generator = crashes_once.options(max_retries=1).remote(4, str(tmp_path / "crashed"))
    assert [int(array[0]) for array in values_of(generator)] == [0, 1, 2, 3]


def test_a_retried_exception_goes_on_from_where_the_stream_was(cluster, tmp_path):
    generator = raises_once.remote(4, str(tmp_path / "raised"))
    assert values_of(generator) == [0, 1, 2, 3]


def test_a_cancelled_stream_ends_with_the_cancel(cluster, tmp_path):
    generator = numbers.remote(3, str(tmp_path / "never"))
    first_ready(generator)
    assert plait.get(next(generator), timeout=30) == 0
    plait.cancel(generator)
    with pytest.raises(plait.TaskCancelledError):
        plait.get(next(generator), timeout=30)
    with pytest.raises(StopIteration):
        next(generator)


# -- num_returns given: a fixed count, or "dynamic" ---------------------------------------

def test_a_generator_with_num_returns_gives_that_many_values(cluster):
    assert plait.get(numbers.options(num_returns=3).remote(3), timeout=30) == [0, 1, 2]
    assert plait.get(numbers.options(num_returns=1).remote(1), timeout=30) == 0
    with pytest.raises(ValueError, match="yielded 1 value"):
        plait.get(numbers.options(num_returns=2).remote(1), timeout=30)
    first, second, third = fails_after.options(num_returns=3).remote(1)
    assert plait.get(first, timeout=30) == 0
    for ref in (second, third):
        with pytest.raises(ValueError, match="bad value after 1"):
            plait.get(ref, timeout=30)


def test_a_dynamic_generator_gives_the_list_of_its_values(cluster):
    refs = plait.get(numbers.options(num_returns="dynamic").remote(3), timeout=30)
    assert [plait.get(ref, timeout=30) for ref in refs] == [0, 1, 2]
    first, error = plait.get(fails_after.options(num_returns="dynamic").remote(1), timeout=30)
    assert plait.get(first, timeout=30) == 0
    with pytest.raises(ValueError, match="bad value after 1"):
        plait.get(error, timeout=30)
    with pytest.raises(ValueError, match="needs a generator function"):   # as Ray's
        plain.options(num_returns="dynamic").remote(3)


# -- lifetimes ------------------------------------------------------------------------------

def stored_objects() -> int:
    return sum(summary.objects for summary in session().memory_summary())


def test_a_generator_dropped_early_frees_its_values(fresh):
    plait.init(num_workers=1)
    generator = numbers.remote(4, big=True)
    end = generator.completed()
    first = next(generator)
    del generator
    plait.get(end, timeout=30)                        # the task ran on, to its end
    assert stored_objects() >= 1                      # the value we still hold
    del first, end
    deadline = time.monotonic() + GATE_SECONDS
    while stored_objects():                           # each look is a round trip
        assert time.monotonic() < deadline, "values of a dropped generator were kept"


@plait.remote
class Relay:
    """A link of a chain: the last one yields large values, each other one reads its
    child's stream and yields every value again (a copy of its own, in the store)."""

    def __init__(self, child=None):
        self.child = child

    def values(self, n, nbytes):
        if self.child is None:
            for i in range(n):
                yield np.full(nbytes // 8, i)
            return
        for ref in self.child.values.remote(n, nbytes):
            yield plait.get(ref, timeout=GATE_SECONDS)


def test_a_chain_of_generator_actors_streams_more_than_the_store_holds(small_store):
    """Four links on one node, each holding one value at a time: 4 x 8 values of 12 MiB
    pass through a 64 MiB store. A view a link has stored again must give its pin back
    before the next value comes (else the links' pins fill the store and each waits for
    room the others hold)."""
    chain = [Relay.remote()]
    for _ in range(3):
        chain.append(Relay.remote(chain[-1]))
    generator = chain[-1].values.remote(8, 12 * MIB)
    seen = []
    while True:
        ready, _ = plait.wait([generator], num_returns=1, timeout=GATE_SECONDS)
        assert ready == [generator], f"the chain stopped after {len(seen)} values"
        try:
            ref = next(generator)
        except StopIteration:
            break
        seen.append(int(plait.get(ref, timeout=GATE_SECONDS)[0]))
        del ref
    assert seen == list(range(8))


def test_values_live_on_their_node_and_are_made_again_when_it_dies(fresh):
    plait.init(num_nodes=2, num_workers=1)
    victim = plait.nodes()[1]
    refs = list(numbers.options(node="node-1", max_retries=2).remote(2, big=True))
    holders = {s.node for s in session().memory_summary() for o in s.largest
               if o.id in {ref.id for ref in refs}}
    assert holders == {"node-1"}                      # stored where they were yielded
    os.kill(victim.pid, signal.SIGKILL)
    assert [int(plait.get(ref, timeout=30)[0]) for ref in refs] == [0, 1]   # re-run
