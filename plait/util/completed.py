"""``plait.util.as_completed`` and ``map_unordered``: Ray's ``ray.util`` helpers that hand
back results as their tasks finish, a few at a time, instead of all at the end as ``get``.

Both are loops of ``wait`` then ``get`` (Ray's are too): a batch is ``chunk_size`` refs, in
the order ``wait`` reports them ready, which is the order they were given among those ready.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Sequence

CHUNK_SIZE = 10                # Ray's defaults: ready refs read per wait ...
BACKPRESSURE_SIZE = 100        # ... and map_unordered's calls in flight before it waits


def as_completed(refs: Sequence[Any], *, chunk_size: int = CHUNK_SIZE,
                 yield_obj_refs: bool = False, **wait_options: Any) -> Iterator[Any]:
    """Yield the values of ``refs`` (their refs with ``yield_obj_refs``) as they are ready,
    ``chunk_size`` at a time; ``wait_options`` go to ``wait`` (``timeout``, ``fetch_local``)."""
    _check_chunk_size(chunk_size, wait_options)
    pending = list(refs)
    while pending:
        ready, pending = _next_batch(pending, chunk_size, yield_obj_refs, wait_options)
        yield from ready


def map_unordered(function: Any, items: Iterable[Any], *,
                  backpressure_size: int | None = BACKPRESSURE_SIZE,
                  chunk_size: int = CHUNK_SIZE, yield_obj_refs: bool = False,
                  **wait_options: Any) -> Iterator[Any]:
    """Call ``function.remote(item)`` for each item and yield results as they finish; with
    more than ``backpressure_size`` calls in flight (None: no limit), read a batch before
    calling more, so a long ``items`` never floods the cluster."""
    if backpressure_size is not None and backpressure_size <= 0:
        raise ValueError(f"backpressure_size must be positive (or None), got "
                         f"{backpressure_size!r}")
    _check_chunk_size(chunk_size, wait_options)
    remote: Callable[[Any], Any] = function.remote
    limit = float("inf") if backpressure_size is None else backpressure_size
    pending: list[Any] = []
    for item in items:
        pending.append(remote(item))
        if len(pending) >= limit:
            ready, pending = _next_batch(pending, chunk_size, yield_obj_refs, wait_options)
            yield from ready
    yield from as_completed(pending, chunk_size=chunk_size, yield_obj_refs=yield_obj_refs,
                            **wait_options)


def _check_chunk_size(chunk_size: Any, wait_options: dict[str, Any]) -> None:
    if not (isinstance(chunk_size, int) and chunk_size >= 1):
        raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
    if "num_returns" in wait_options:
        raise ValueError("use chunk_size, not num_returns: it is the batch read per wait")


def _next_batch(pending: list[Any], chunk_size: int, yield_obj_refs: bool,
                wait_options: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """Wait for the next batch; (its values or refs, the refs still pending)."""
    from plait import api

    ready, pending = api.wait(pending, num_returns=min(chunk_size, len(pending)),
                              **wait_options)
    return (ready if yield_obj_refs else api.get(ready)), pending
