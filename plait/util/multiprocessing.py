"""``ray.util.multiprocessing`` under plait: ``multiprocessing.Pool``'s interface over a pool
of plait actors, so code written for a Pool runs on the cluster unchanged.

Each of ``processes`` actors runs the ``initializer`` once, then batches of calls: ``map``
cuts its items into chunks (about four per actor, as the standard library and Ray do) and
hands them to the actors in turn; a chunk is one actor call, its items run one after
another, and an item that raises fails alone (its exception is raised by ``get``, after
the items before it). ``maxtasksperchild`` replaces an actor after that many chunks.
``close`` takes no more calls and ``join`` then waits for those given and lets the actors
go; ``terminate`` (and leaving a ``with`` block) kills them at once.

Iterables are read in full when a call is made (``imap`` too: its results still come one
by one, as they are ready); the function is put once per call and read by every chunk.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from plait import api
from plait.graph.decorator import remote

__all__ = ["AsyncResult", "Pool"]


class Pool:
    """``processes`` actors (None: one per CPU of the cluster) that run calls in batches.

    ``ray_address`` is ``init``'s address when plait is not running yet (``None``: a local
    cluster); ``ray_remote_args`` are the actors' options (``{"num_cpus": 1}``, ...);
    ``context`` is taken and not used (processes are the cluster's)."""

    def __init__(self, processes: int | None = None, initializer: Callable | None = None,
                 initargs: Iterable[Any] | None = None, maxtasksperchild: int | None = None,
                 context: Any = None, ray_address: str | None = None,
                 ray_remote_args: dict[str, Any] | None = None) -> None:
        if not api.is_initialized():
            api.init(address=ray_address)
        if processes is None:
            processes = max(1, int(api.cluster_resources().get("CPU", 1)))
        if not isinstance(processes, int) or processes < 1:
            raise ValueError(f"Pool needs at least one process, not {processes!r}")
        if maxtasksperchild is not None and maxtasksperchild < 1:
            raise ValueError(f"maxtasksperchild must be at least 1, not {maxtasksperchild!r}")
        self.setup = (initializer, tuple(initargs or ()))
        self.options = dict(ray_remote_args or {})
        self.limit = maxtasksperchild
        self.actors = [self.new_actor() for _ in range(processes)]   # (handle, chunks sent)
        self.turn = itertools.cycle(range(processes))
        self.sent: list[Any] = []          # every chunk's ref, for join
        self.running = True

    # -- one call ----------------------------------------------------------------------------

    def apply(self, func: Callable, args: tuple = (), kwds: dict | None = None) -> Any:
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func: Callable, args: tuple = (), kwds: dict | None = None,
                    callback: Callable[[Any], Any] | None = None,
                    error_callback: Callable[[BaseException], Any] | None = None
                    ) -> AsyncResult:
        self.check_running()
        chunk = self.send(api.put(func), [(tuple(args or ()), dict(kwds or {}))])
        return AsyncResult([chunk], callback, error_callback, single=True)

    # -- many calls --------------------------------------------------------------------------

    def map(self, func: Callable, iterable: Iterable[Any], chunksize: int | None = None
            ) -> list[Any]:
        return self.map_async(func, iterable, chunksize).get()

    def map_async(self, func: Callable, iterable: Iterable[Any], chunksize: int | None = None,
                  callback: Callable[[Any], Any] | None = None,
                  error_callback: Callable[[BaseException], Any] | None = None
                  ) -> AsyncResult:
        return AsyncResult(self.chunks(func, [(item,) for item in iterable], chunksize),
                           callback, error_callback)

    def starmap(self, func: Callable, iterable: Iterable[Iterable[Any]],
                chunksize: int | None = None) -> list[Any]:
        return self.starmap_async(func, iterable, chunksize).get()

    def starmap_async(self, func: Callable, iterable: Iterable[Iterable[Any]],
                      chunksize: int | None = None,
                      callback: Callable[[Any], Any] | None = None,
                      error_callback: Callable[[BaseException], Any] | None = None
                      ) -> AsyncResult:
        return AsyncResult(self.chunks(func, [tuple(args) for args in iterable], chunksize),
                           callback, error_callback)

    def imap(self, func: Callable, iterable: Iterable[Any], chunksize: int = 1
             ) -> Iterator[Any]:
        """The results in the items' order, each as soon as it and those before are in."""
        chunks = self.chunks(func, [(item,) for item in iterable], chunksize)
        return (value for chunk in chunks for value in _values(api.get(chunk)))

    def imap_unordered(self, func: Callable, iterable: Iterable[Any], chunksize: int = 1
                       ) -> Iterator[Any]:
        """The results as their chunks finish, in no set order."""
        chunks = self.chunks(func, [(item,) for item in iterable], chunksize)

        def finished() -> Iterator[Any]:
            left = list(chunks)
            while left:
                done, left = api.wait(left, num_returns=1)
                yield from _values(api.get(done[0]))

        return finished()

    # -- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        """No more calls; those given still run (``join`` waits for them)."""
        self.running = False

    def terminate(self) -> None:
        """No more calls, and the actors are killed now (their unfinished calls fail)."""
        self.running = False
        for actor, _ in self.actors:
            api.kill(actor)
        self.actors, self.sent = [], []

    def join(self) -> None:
        """Wait until every call given to a closed pool has finished; the actors go."""
        if self.running:
            raise ValueError("Pool is still running: close() or terminate() it first")
        if self.sent:
            api.wait(self.sent, num_returns=len(self.sent))
        self.actors, self.sent = [], []

    def __enter__(self) -> Pool:
        self.check_running()
        return self

    def __exit__(self, *exc: object) -> None:
        self.terminate()

    # -- the actors --------------------------------------------------------------------------

    def check_running(self) -> None:
        if not self.running:
            raise ValueError("Pool not running")

    def new_actor(self) -> tuple[Any, int]:
        return _runner().options(**self.options).remote(*self.setup), 0

    def chunks(self, func: Callable, calls: list[tuple], chunksize: int | None) -> list[Any]:
        """Send the calls in chunks, in turn to each actor; the chunks' refs, in order."""
        self.check_running()
        if chunksize is None:
            chunksize = -(-len(calls) // (4 * len(self.actors))) or 1
        if chunksize < 1:
            raise ValueError(f"chunksize must be at least 1, not {chunksize!r}")
        shared = api.put(func)
        return [self.send(shared, [(args, {}) for args in calls[start:start + chunksize]])
                for start in range(0, len(calls), chunksize)]

    def send(self, func: Any, batch: list[tuple[tuple, dict]]) -> Any:
        """One chunk to the next actor (replaced first if it ran ``maxtasksperchild``)."""
        index = next(self.turn)
        actor, count = self.actors[index]
        if self.limit is not None and count >= self.limit:
            actor, count = self.actors[index] = self.new_actor()
        chunk = actor.run_batch.remote(func, batch)
        self.actors[index] = (actor, count + 1)
        self.sent.append(chunk)
        return chunk


class AsyncResult:
    """The result of an ``*_async`` call (``multiprocessing.pool.AsyncResult``'s interface)."""

    def __init__(self, chunks: list[Any], callback: Callable[[Any], Any] | None,
                 error_callback: Callable[[BaseException], Any] | None,
                 single: bool = False) -> None:
        self.chunks = chunks
        self.single = single
        if callback is not None or error_callback is not None:
            threading.Thread(target=self.call_back, args=(callback, error_callback),
                             name="plait-pool-callback", daemon=True).start()

    def get(self, timeout: float | None = None) -> Any:
        """The results (one, for ``apply_async``); an item's exception is raised here;
        GetTimeoutError (a TimeoutError) when they are not all in within ``timeout``."""
        values = [value for chunk in api.get(self.chunks, timeout=timeout)
                  for value in _values(chunk)]
        return values[0] if self.single else values

    def wait(self, timeout: float | None = None) -> None:
        """Return once the results are in, or ``timeout`` seconds have passed."""
        api.wait(self.chunks, num_returns=len(self.chunks), timeout=timeout)

    def ready(self) -> bool:
        done, _ = api.wait(self.chunks, num_returns=len(self.chunks), timeout=0)
        return len(done) == len(self.chunks)

    def successful(self) -> bool:
        """Whether no item raised (ValueError while the results are not all in)."""
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        try:
            self.get(timeout=0)
        except Exception:
            return False
        return True

    def call_back(self, callback: Callable[[Any], Any] | None,
                  error_callback: Callable[[BaseException], Any] | None) -> None:
        try:
            value = self.get()
        except Exception as error:
            if error_callback is not None:
                error_callback(error)
            return
        if callback is not None:
            callback(value)


def _values(chunk: list[tuple[bool, Any]]) -> Iterator[Any]:
    """A chunk's values in order; an item's exception is raised where it stands."""
    for ok, value in chunk:
        if not ok:
            raise value
        yield value


_runner_class: Any = None


def _runner() -> Any:
    """The actor class, made remote at the first Pool."""
    global _runner_class
    if _runner_class is None:
        _runner_class = remote(_Runner)
    return _runner_class


class _Runner:
    """One process of the pool."""

    def __init__(self, initializer: Callable | None = None, initargs: tuple = ()) -> None:
        if initializer is not None:
            initializer(*initargs)

    def run_batch(self, func: Callable, batch: list[tuple[tuple, dict]]) -> list[tuple]:
        """(True, value) or (False, exception) per call, in order."""
        done = []
        for args, kwargs in batch:
            try:
                done.append((True, func(*args, **kwargs)))
            except Exception as error:
                done.append((False, error))
        return done
