"""``ActorPool``: spread calls over a fixed set of actors (``ray.util.ActorPool``'s API).

Each value is handed to an idle actor through ``fn(actor, value)`` (which makes one call
and returns its ref); values wait in order while every actor is busy. Results come back in
submission order (``get_next``, ``map``) or as they finish (``get_next_unordered``,
``map_unordered``), and the actor that made a result takes the next waiting value.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from plait import api
from plait.errors import GetTimeoutError


class ActorPool:
    """A pool of actor handles, each running one of the pool's calls at a time."""

    def __init__(self, actors: Iterable[Any]) -> None:
        self._idle = list(actors)
        self._running: dict[Any, tuple[int, Any]] = {}      # ref -> (index, actor)
        self._by_index: dict[int, Any] = {}                  # submission index -> ref
        self._waiting: deque[tuple[Callable, Any]] = deque()
        self._submitted = 0
        self._returned = 0

    def submit(self, fn: Callable[[Any, Any], Any], value: Any) -> None:
        """Run ``fn(actor, value)`` on an idle actor, or as soon as one is free."""
        if not self._idle:
            self._waiting.append((fn, value))
            return
        actor = self._idle.pop()
        ref = fn(actor, value)
        self._running[ref] = (self._submitted, actor)
        self._by_index[self._submitted] = ref
        self._submitted += 1

    def has_next(self) -> bool:
        """Whether a result is still to be collected."""
        return bool(self._running)

    def get_next(self, timeout: float | None = None) -> Any:
        """The next result in submission order."""
        if not self.has_next():
            raise StopIteration("no more results to get")
        while self._returned not in self._by_index:           # taken out of order before
            self._returned += 1
        ref = self._by_index[self._returned]
        return self._collect(ref, timeout)

    def get_next_unordered(self, timeout: float | None = None) -> Any:
        """Whichever result is ready first."""
        if not self.has_next():
            raise StopIteration("no more results to get")
        ready, _ = api.wait(list(self._running), num_returns=1, timeout=timeout)
        if not ready:
            raise GetTimeoutError(f"no result of the pool was ready within {timeout} s")
        return self._collect(ready[0], None)

    def map(self, fn: Callable[[Any, Any], Any], values: Iterable[Any]) -> Iterator[Any]:
        """Results of ``fn`` over ``values``, in order."""
        for value in values:
            self.submit(fn, value)
        while self.has_next():
            yield self.get_next()

    def map_unordered(self, fn: Callable[[Any, Any], Any], values: Iterable[Any]
                      ) -> Iterator[Any]:
        """Results of ``fn`` over ``values``, as they finish."""
        for value in values:
            self.submit(fn, value)
        while self.has_next():
            yield self.get_next_unordered()

    def has_free(self) -> bool:
        return bool(self._idle) and not self._waiting

    def pop_idle(self) -> Any:
        """Take an idle actor out of the pool (None if none is idle)."""
        return self._idle.pop() if self.has_free() else None

    def push(self, actor: Any) -> None:
        """Add an actor to the pool (it takes a waiting value at once, if any)."""
        self._free(actor)

    def _collect(self, ref: Any, timeout: float | None) -> Any:
        """The result of ``ref``; its actor goes back to the pool even if the call failed."""
        if timeout is not None and not api.wait([ref], timeout=timeout)[0]:
            raise GetTimeoutError(f"the pool's next result was not ready within {timeout} s")
        index, actor = self._running.pop(ref)
        del self._by_index[index]
        self._free(actor)
        return api.get(ref)

    def _free(self, actor: Any) -> None:
        self._idle.append(actor)
        if self._waiting:
            self.submit(*self._waiting.popleft())
