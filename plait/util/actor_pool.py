"""``ActorPool``: spread calls over a fixed set of actors (``ray.util.ActorPool``'s API).

Each value is handed to an idle actor through ``fn(actor, value)`` (which makes one call
and returns its ref, or its list of refs for a method with ``num_returns`` > 1); values
wait in order while every actor is busy. Results come back in submission order
(``get_next``, ``map``) or as they finish (``get_next_unordered``, ``map_unordered``), and
the actor that made a result takes the next waiting value; an actor whose call raised
ActorDiedError leaves the pool. ``map`` and ``map_unordered`` first drop the results of
earlier ``submit`` calls nobody read (their calls still run), so they return only their
own values, as Ray's do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from plait import api
from plait.errors import ActorDiedError, GetTimeoutError


class ActorPool:
    """A pool of actor handles, each running one of the pool's calls at a time."""

    def __init__(self, actors: Iterable[Any]) -> None:
        self._idle = list(actors)
        self._running: dict[Any, tuple[int, Any]] = {}   # result's key -> (index, actor)
        self._by_index: dict[int, Any] = {}              # submission index -> result
        # values waiting for an idle actor (Ray's attribute name: Ray's tests read it)
        self._pending_submits: list[tuple[Callable, Any]] = []
        self._submitted = 0
        self._returned = 0                               # the index get_next returns next

    def submit(self, fn: Callable[[Any, Any], Any], value: Any) -> None:
        """Run ``fn(actor, value)`` on an idle actor, or as soon as one is free."""
        if not self._idle:
            self._pending_submits.append((fn, value))
            return
        actor = self._idle.pop()
        result = fn(actor, value)
        self._running[_key(result)] = (self._submitted, actor)
        self._by_index[self._submitted] = result
        self._submitted += 1

    def has_next(self) -> bool:
        """Whether a result is still to be collected."""
        return bool(self._running)

    def get_next(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """The next result in submission order (GetTimeoutError, a TimeoutError, past
        ``timeout``; with ``ignore_if_timedout`` that result is dropped too)."""
        if not self.has_next():
            raise StopIteration("no more results to get")
        while self._returned not in self._by_index:           # taken out of order before
            self._returned += 1
        return self._collect(self._by_index[self._returned], timeout, ignore_if_timedout)

    def get_next_unordered(self, timeout: float | None = None,
                           ignore_if_timedout: bool = False) -> Any:
        """Whichever result is ready first."""
        if not self.has_next():
            raise StopIteration("no more results to get")
        # a call's results are stored together: its first ref stands for all of them
        firsts = {_refs(result)[0]: result for result in self._by_index.values()}
        ready, _ = api.wait(list(firsts), num_returns=1, timeout=timeout)
        if not ready:
            oldest = next(iter(self._by_index.values()))
            return self._timed_out(oldest, timeout, ignore_if_timedout)
        return self._collect(firsts[ready[0]], None, False)

    def map(self, fn: Callable[[Any, Any], Any], values: Iterable[Any]) -> Iterator[Any]:
        """Results of ``fn`` over ``values``, in order (every value is submitted now)."""
        self._forget_unread()
        for value in values:
            self.submit(fn, value)
        return self._drain(self.get_next)

    def map_unordered(self, fn: Callable[[Any, Any], Any], values: Iterable[Any]
                      ) -> Iterator[Any]:
        """Results of ``fn`` over ``values``, as they finish (every value submitted now)."""
        self._forget_unread()
        for value in values:
            self.submit(fn, value)
        return self._drain(self.get_next_unordered)

    def has_free(self) -> bool:
        return bool(self._idle) and not self._pending_submits

    def pop_idle(self) -> Any:
        """Take an idle actor out of the pool (None if none is idle)."""
        return self._idle.pop() if self.has_free() else None

    def push(self, actor: Any) -> None:
        """Add an actor to the pool (it takes a waiting value at once, if any); ValueError
        if it is in the pool already, idle or busy."""
        busy = [owner for _, owner in self._running.values()]
        if actor in self._idle or actor in busy:
            raise ValueError(f"{actor!r} is in this ActorPool already")
        self._free(actor)

    def _drain(self, take: Callable[[], Any]) -> Iterator[Any]:
        while self.has_next():
            yield take()

    def _collect(self, result: Any, timeout: float | None, ignore_if_timedout: bool) -> Any:
        """The value(s) of ``result``; its actor goes back to the pool even if the call
        failed, unless the actor died."""
        if timeout is not None and not api.wait(_refs(result)[:1], timeout=timeout)[0]:
            return self._timed_out(result, timeout, ignore_if_timedout)
        actor = self._forget(result)
        alive = True
        try:
            return api.get(result)
        except ActorDiedError:
            alive = False
            raise
        finally:
            self._free(actor, alive)

    def _timed_out(self, result: Any, timeout: float | None, ignore: bool) -> Any:
        """A result not ready in time: raise, and with ``ignore`` drop it first (its
        actor takes new values; the call still runs)."""
        if ignore:
            self._free(self._forget(result))
            raise GetTimeoutError(f"the pool's next result was not ready within {timeout} s; "
                                  f"it was dropped (ignore_if_timedout)")
        raise GetTimeoutError(f"the pool's next result was not ready within {timeout} s")

    def _forget(self, result: Any) -> Any:
        """Stop tracking ``result``; returns the actor that makes it."""
        index, actor = self._running.pop(_key(result))
        del self._by_index[index]
        return actor

    def _forget_unread(self) -> None:
        """Drop the results of earlier submits (values still waiting are submitted first,
        then dropped too): a map returns only its own values."""
        while self._running:
            self._free(self._forget(next(iter(self._by_index.values()))))

    def _free(self, actor: Any, alive: bool = True) -> None:
        if alive:
            self._idle.append(actor)
        if self._pending_submits and self._idle:
            self.submit(*self._pending_submits.pop(0))


def _refs(result: Any) -> list[Any]:
    """The refs of one call: one, or a list for a method with several results."""
    return list(result) if isinstance(result, (list, tuple)) else [result]


def _key(result: Any) -> Any:
    """A call's result as a dict key (a list of refs is not hashable)."""
    return tuple(result) if isinstance(result, list) else result
