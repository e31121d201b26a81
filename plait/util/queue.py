"""``ray.util.queue`` under plait: a first-in first-out queue that the driver, tasks and
actors share, as Ray programs pass work between producers and consumers.

The queue lives in an async actor of its own (``_Keeper``), as Ray's does: every put and
get is a call of that actor, so any process holding the ``Queue`` (it pickles: its actor
handle travels) reaches the same items. A blocking ``get`` waits inside the actor on
``asyncio.Queue`` without holding up other calls (an async actor runs up to 1,000 at once),
so a consumer may wait while a producer puts. ``Empty`` and ``Full`` are the standard
library's ``queue.Empty`` and ``queue.Full`` as well as plait's errors.

Items pass as a call's arguments do: a ref given as the item itself is resolved first (the
queue holds its value), one inside a container stays a ref. With several producers on a
full queue, who goes first is not promised (as in Ray).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from plait import api
from plait.errors import QueueEmpty as Empty
from plait.errors import QueueFull as Full
from plait.graph.decorator import remote

__all__ = ["Empty", "Full", "Queue"]


class Queue:
    """A queue of at most ``maxsize`` items (0: no bound); ``actor_options`` are its
    actor's (``{"num_cpus": 1}``, ``{"node": "node-1"}``, ...)."""

    def __init__(self, maxsize: int = 0, actor_options: dict[str, Any] | None = None) -> None:
        if not isinstance(maxsize, int) or isinstance(maxsize, bool):
            raise TypeError(f"Queue's maxsize must be an int, not {type(maxsize).__name__}")
        self.maxsize = maxsize
        self.actor: Any = _keeper().options(**(actor_options or {})).remote(maxsize)

    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        """How many items it holds now."""
        return api.get(self.actor.qsize.remote())

    qsize = size

    def empty(self) -> bool:
        return api.get(self.actor.empty.remote())

    def full(self) -> bool:
        return api.get(self.actor.full.remote())

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Add ``item``; on a full queue wait up to ``timeout`` seconds (None: for ever)
        for room, then raise ``Full``; with ``block=False`` raise ``Full`` at once."""
        if not block:
            return self.put_nowait(item)
        api.get(self.actor.put.remote(item, _checked(timeout)))

    async def put_async(self, item: Any, block: bool = True,
                        timeout: float | None = None) -> None:
        """``put`` for a coroutine: it awaits the actor instead of blocking its loop."""
        if not block:
            await self.actor.put_nowait.remote(item)
        else:
            await self.actor.put.remote(item, _checked(timeout))

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Take the oldest item; on an empty queue wait up to ``timeout`` seconds (None:
        for ever) for one, then raise ``Empty``; with ``block=False`` raise it at once."""
        if not block:
            return self.get_nowait()
        return api.get(self.actor.get.remote(_checked(timeout)))

    async def get_async(self, block: bool = True, timeout: float | None = None) -> Any:
        """``get`` for a coroutine."""
        if not block:
            return await self.actor.get_nowait.remote()
        return await self.actor.get.remote(_checked(timeout))

    def put_nowait(self, item: Any) -> None:
        api.get(self.actor.put_nowait.remote(item))

    def put_nowait_batch(self, items: Iterable[Any]) -> None:
        """Add all of ``items`` or, if they do not all fit now, none (``Full``)."""
        if not isinstance(items, Iterable):
            raise TypeError("put_nowait_batch takes an iterable of items")
        api.get(self.actor.put_nowait_batch.remote(list(items)))

    def get_nowait(self) -> Any:
        return api.get(self.actor.get_nowait.remote())

    def get_nowait_batch(self, num_items: int) -> list[Any]:
        """The ``num_items`` oldest items or, if it holds fewer, none (``Empty``)."""
        if not isinstance(num_items, int) or isinstance(num_items, bool):
            raise TypeError("get_nowait_batch takes an int number of items")
        if num_items < 0:
            raise ValueError("get_nowait_batch takes a number of items of 0 or more")
        return api.get(self.actor.get_nowait_batch.remote(num_items))

    def shutdown(self, force: bool = False, grace_period_s: float = 5) -> None:
        """End the queue's actor: at once with ``force``, else once the calls sent before
        have run, or ``grace_period_s`` seconds, whichever comes first. Its items go."""
        if self.actor is None:
            return
        if not force:
            last = self.actor.qsize.remote()          # runs after those sent before it
            api.wait([last], timeout=grace_period_s)
        api.kill(self.actor, no_restart=True)
        self.actor = None


def _checked(timeout: float | None) -> float | None:
    if timeout is not None and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")
    return timeout


_keeper_class: Any = None


def _keeper() -> Any:
    """The actor class, made remote at the first Queue (decorating at import would make
    every ``import plait.util`` register a class)."""
    global _keeper_class
    if _keeper_class is None:
        _keeper_class = remote(_Keeper)
    return _keeper_class


class _Keeper:
    """The queue's items, in its actor's event loop. (asyncio is imported where it is used:
    ``plait.util`` loads this module, and a node's processes load no asyncio they need not.)"""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.items: Any = None               # an asyncio.Queue, made in the loop serving calls

    def queue(self) -> Any:
        if self.items is None:
            import asyncio

            self.items = asyncio.Queue(self.maxsize)
        return self.items

    async def qsize(self) -> int:
        return self.queue().qsize()

    async def empty(self) -> bool:
        return self.queue().empty()

    async def full(self) -> bool:
        return self.queue().full()

    async def put(self, item: Any, timeout: float | None = None) -> None:
        import asyncio

        try:
            await asyncio.wait_for(self.queue().put(item), timeout)
        except asyncio.TimeoutError:
            raise Full(f"the queue stayed full for {timeout} s") from None

    async def get(self, timeout: float | None = None) -> Any:
        import asyncio

        try:
            return await asyncio.wait_for(self.queue().get(), timeout)
        except asyncio.TimeoutError:
            raise Empty(f"the queue stayed empty for {timeout} s") from None

    async def put_nowait(self, item: Any) -> None:
        import asyncio

        try:
            self.queue().put_nowait(item)
        except asyncio.QueueFull:
            raise Full(f"the queue is full ({self.maxsize} items)") from None

    async def put_nowait_batch(self, items: list[Any]) -> None:
        queue = self.queue()
        if self.maxsize > 0 and len(items) + queue.qsize() > self.maxsize:
            raise Full(f"{len(items)} items do not fit: the queue holds {queue.qsize()} of "
                       f"at most {self.maxsize}")
        for item in items:
            queue.put_nowait(item)

    async def get_nowait(self) -> Any:
        import asyncio

        try:
            return self.queue().get_nowait()
        except asyncio.QueueEmpty:
            raise Empty("the queue is empty") from None

    async def get_nowait_batch(self, num_items: int) -> list[Any]:
        queue = self.queue()
        if num_items > queue.qsize():
            raise Empty(f"{num_items} items asked for, the queue holds {queue.qsize()}")
        return [queue.get_nowait() for _ in range(num_items)]
