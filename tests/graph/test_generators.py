"""Generator tasks in the graph layer, without a cluster: which calls stream, and what an
ObjectRefGenerator hands out as the session announces values and the end (FakeRuntime)."""

from __future__ import annotations

import asyncio
import pickle

import pytest

import plait
from plait.errors import SerializationError
from tests.fakes import installed_runtime


@pytest.fixture
def runtime():
    with installed_runtime() as fake:
        yield fake


@plait.remote
def numbers(n):
    yield from range(n)


@plait.remote
async def ticks(n):
    for i in range(n):
        yield i


@plait.remote
def plain():
    return 1


@plait.remote
class Source:
    def values(self):
        yield 1

    def one(self):
        return 1


def test_a_generator_function_streams_unless_told_otherwise(runtime):
    assert isinstance(numbers.remote(3), plait.ObjectRefGenerator)
    assert isinstance(ticks.remote(3), plait.ObjectRefGenerator)
    assert isinstance(plain.remote(), plait.ObjectRef)
    assert len(numbers.options(num_returns=2).remote(2)) == 2
    fixed = numbers.options(num_returns=1).remote(1)                # one value: one ref
    assert isinstance(fixed, plait.ObjectRef) and fixed.task.options.num_returns == 1
    assert isinstance(numbers.options(num_returns="dynamic").remote(3), plait.ObjectRef)


def test_an_actors_generator_method_streams_unless_told_otherwise(runtime):
    source = Source.remote()
    assert isinstance(source.values.remote(), plait.ObjectRefGenerator)
    assert isinstance(source.one.remote(), plait.ObjectRef)
    assert isinstance(source.values.options(num_returns=1).remote(), plait.ObjectRef)


def test_refs_come_in_order_then_the_stream_stops(runtime):
    generator = numbers.remote(2)
    runtime.yielded(generator.task_id, "numbers-1.0")
    assert next(generator).id == "numbers-1.0" and not generator.is_finished()
    runtime.yielded(generator.task_id, "numbers-1.1")
    runtime.ended[generator.task_id] = False
    assert generator.next_ready()
    assert [ref.id for ref in generator] == ["numbers-1.1"]
    assert generator.is_finished() and not generator.next_ready()
    with pytest.raises(StopIteration):
        next(generator)


def test_a_failed_task_gives_its_values_then_one_ref_to_its_error_then_stops(runtime):
    generator = numbers.remote(5)
    runtime.yielded(generator.task_id, "numbers-1.0")
    runtime.ended[generator.task_id] = True
    assert next(generator).id == "numbers-1.0"
    assert not generator.is_finished()
    assert next(generator) is generator.completed()                 # get raises the error
    assert generator.is_finished()
    for _ in range(2):
        with pytest.raises(StopIteration):
            next(generator)


def test_async_for_takes_the_same_refs(runtime):
    generator = numbers.remote(2)
    runtime.yielded(generator.task_id, "numbers-1.0")
    runtime.yielded(generator.task_id, "numbers-1.1")
    runtime.ended[generator.task_id] = False

    async def taken():
        return [ref.id async for ref in generator]

    assert asyncio.run(taken()) == ["numbers-1.0", "numbers-1.1"]


def test_a_generator_cannot_travel_to_a_task(runtime):
    generator = numbers.remote(1)
    with pytest.raises(SerializationError, match="cannot be passed to a task"):
        pickle.dumps(generator)
    with pytest.raises(SerializationError, match="ObjectRefGenerator"):
        numbers.remote(generator)


def test_streaming_on_a_function_that_returns_is_refused_where_it_is_asked_for():
    """As Ray's decorator refuses it, not at the get (where the task would fail)."""
    with pytest.raises(plait.InvalidOptionError, match="needs a generator function"):
        plait.remote(num_returns="streaming")(lambda: 1)
    with pytest.raises(ValueError, match="returns its result"):
        plain.options(num_returns="streaming")
    assert numbers.options(num_returns="streaming")     # a generator takes it
    with pytest.raises(plait.InvalidOptionError, match="num_returns='dynamic' needs a gen"):
        plain.options(num_returns="dynamic")              # (Ray's ValueError at .remote())
