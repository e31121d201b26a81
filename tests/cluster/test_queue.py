"""plait.util.queue.Queue, Ray's ray.util.queue.Queue: one queue shared by the driver,
tasks and actors, kept by an async actor of its own."""

from __future__ import annotations

import asyncio
import queue

import pytest

import plait
from plait.util.queue import Empty, Full, Queue

pytestmark = pytest.mark.cluster


@plait.remote
def consume(items: Queue, count: int) -> list:
    """Takes ``count`` items, waiting for each (the driver puts them after the call)."""
    return [items.get(timeout=30) for _ in range(count)]


@plait.remote
def produce(items: Queue, values: list) -> int:
    for value in values:
        items.put(value)
    return len(values)


def test_items_come_out_in_order_and_the_queue_says_what_it_holds(cluster):
    items = Queue()
    assert items.empty() and len(items) == 0 and not items.full()
    for value in ("a", {"b": 2}, [3]):
        items.put(value)
    assert items.qsize() == items.size() == 3
    assert [items.get(), items.get_nowait(), items.get(block=False)] == ["a", {"b": 2}, [3]]
    items.shutdown()
    assert items.actor is None


def test_an_empty_or_full_queue_raises_rays_errors_which_are_the_standard_librarys(cluster):
    items = Queue(maxsize=1)
    with pytest.raises(Empty):
        items.get(block=False)
    with pytest.raises(queue.Empty):
        items.get(timeout=0.2)
    items.put("only")
    assert items.full()
    with pytest.raises(Full):
        items.put_nowait("more")
    with pytest.raises(queue.Full):
        items.put("more", timeout=0.2)
    with pytest.raises(ValueError, match="non-negative"):
        items.get(timeout=-1)
    assert items.get() == "only"
    items.shutdown(force=True)


def test_batches_go_in_or_come_out_whole_or_not_at_all(cluster):
    items = Queue(maxsize=3)
    items.put_nowait_batch([1, 2])
    with pytest.raises(Full):
        items.put_nowait_batch([3, 4])             # one would fit: none goes in
    assert items.size() == 2
    with pytest.raises(Empty):
        items.get_nowait_batch(3)
    assert items.get_nowait_batch(2) == [1, 2] and items.empty()
    with pytest.raises(TypeError):
        items.get_nowait_batch("2")
    items.shutdown()


def test_a_task_waits_on_the_queue_while_the_driver_and_another_task_fill_it(cluster):
    """The consumer blocks in get (an async actor: the puts are not held up behind it)."""
    items = Queue()
    consumed = consume.remote(items, 4)
    assert plait.wait([consumed], timeout=0.3) == ([], [consumed])   # nothing to take yet
    items.put("driver")
    assert plait.get(produce.remote(items, ["task", "task", "task"]), timeout=30) == 3
    assert plait.get(consumed, timeout=30) == ["driver", "task", "task", "task"]
    items.shutdown()


def test_coroutines_await_puts_and_gets(cluster):
    items = Queue()

    async def round_trip():
        await items.put_async(7)
        await items.put_async(8, block=False)
        return [await items.get_async(), await items.get_async(timeout=5)]

    assert asyncio.run(round_trip()) == [7, 8]
    items.shutdown()


def test_import_plait_as_ray_finds_it_where_ray_has_it(cluster):
    import plait as ray

    items = ray.util.queue.Queue(actor_options={"num_cpus": 0})
    items.put(1)
    assert items.get() == 1
    items.shutdown()
