"""The Dask engine: plait's plans run on a Dask cluster (``plait.init(engine="dask")``).

The compiler places the whole graph against the scheduler's workers and where the graph's
inputs live (``who_has``, ``nbytes``); each task is then submitted pinned to its worker
(``workers=[...]``, ``allow_other_workers=False``) with the plan's critical-path priority
(Dask's ``priority``: higher first). Fused chains run as separate tasks on the same worker.
A task with ``num_returns=k`` is one Dask task and k ``getitem`` tasks beside it. Each task
logs its report (worker, times, input sizes) as a ``plait-trace`` event for ``plait.trace``.

A plait "node" is one Dask worker. A pin names a worker's address, so a worker that dies
would leave the tasks pinned to it waiting forever: a scheduler plugin (dask_scheduler.py)
moves them to a live worker, and a task that kills every worker it meets fails as in Dask
(``KilledWorker``, raised as plait's WorkerCrashedError). ``address``: the scheduler's, or
a ``distributed.Client``; None starts a ``LocalCluster`` of ``num_nodes`` worker processes
on 127.0.0.1.

Imported only when chosen: ``pip install -e ".[dask]"``.
"""

from __future__ import annotations

import contextlib
import operator
import time
from concurrent.futures import CancelledError
from collections.abc import Iterator, Sequence
from typing import Any

import distributed
from distributed import KilledWorker

from plait.engines import names
from plait.engines.base import ForeignEngine
from plait.engines.dask_scheduler import RepinLost
from plait.engines.task import Spec, read_only, run_task
from plait.errors import (ClusterError, GetTimeoutError, ObjectLostError, TaskCancelledError,
                          WorkerCrashedError)
from plait.graph.ids import stem_of

EVENT = "plait-trace"
POLL_SECONDS = 0.05            # how often wait(num_returns=k) looks again
NAMES = "plait-node-names"     # the scheduler's metadata key (and lock) of the node names
CANCELLED = "plait.cancel"     # Dask's reason for a future plait.cancel cancelled


def _local_cluster(workers: int, threads: int) -> distributed.LocalCluster:
    """Dask's own LocalCluster of ``workers`` processes, on loopback. Dask starts them with
    multiprocessing's spawn, which runs the main script again in each: a script that calls
    ``plait.init(engine="dask")`` outside ``if __name__ == "__main__":`` (as Ray's allow)
    fails there, and Dask's error says only that a nanny did not start."""
    try:
        return distributed.LocalCluster(n_workers=workers, threads_per_worker=threads,
                                        processes=True, host="127.0.0.1",
                                        dashboard_address=None)
    except Exception as error:
        raise ClusterError(f"the dask engine could not start a LocalCluster ({error}); Dask "
                           f"starts its workers with multiprocessing's spawn, which runs the "
                           f"main script again in each, so a script must call plait.init("
                           f"engine='dask') under `if __name__ == '__main__':`, as with "
                           f"Dask's own LocalCluster") from error


class DaskEngine(ForeignEngine):
    name = "dask"
    nested_refs = False        # a Future rebuilt from its key in a task never resolves

    def __init__(self, address: Any = None, num_cpus: int | None = None, num_nodes: int = 1,
                 submit_after_idle: float | None = 0.01, in_task: bool = False) -> None:
        self.cluster = None
        self.owns_client = False
        if in_task:
            self.client = distributed.get_client()
        elif isinstance(address, distributed.Client):
            self.client = address
        elif address is not None:
            self.client = distributed.Client(address)
            self.owns_client = True
        else:
            self.cluster = _local_cluster(num_nodes, num_cpus or 1)
            self.client = distributed.Client(self.cluster)
            self.owns_client = True
        if not in_task:
            self.client.register_plugin(RepinLost())      # (by name: once per cluster)
        super().__init__(submit_after_idle, in_task)
        self.events_read = (0.0, 0)            # (time, events at that time) read last
        self.keep: list[tuple[int, Any]] = []  # (launch number, future) until done
        self.read_from = 0                     # unread_from as of the last read

    def engine_nodes(self) -> list[tuple[str, int, str]]:
        workers = self.workers()
        return [(address, workers[address].get("nthreads", 1), address)
                for address in sorted(workers)]

    def workers(self) -> dict[str, dict[str, Any]]:
        """The scheduler's record of every worker, by address, asked of it now.

        Not ``Client.scheduler_info``: it refreshes the client's cached identity and returns
        the cache, which the client's own periodic refresh (every 2 s) overwrites with an
        identity listing no worker (it asks for ``n_workers=0``); a call that lost that race
        saw a cluster without workers, and a plan failed with "the cluster has no nodes"
        (W3 of benchmarks/engines.py, once in a few runs)."""
        identity = self.client.scheduler.identity
        try:
            info = self.client.sync(identity, n_workers=-1)
        except TypeError:                      # older distributed: every worker anyway
            info = self.client.sync(identity)
        return info["workers"]

    def engine_resources(self) -> tuple[dict[str, float], dict[str, float]]:
        """Threads as CPUs (free: those running no task now) and the workers' memory
        limits (free: less what each process uses)."""
        total = {"CPU": 0.0, "memory": 0.0}
        free = {"CPU": 0.0, "memory": 0.0}
        for worker in self.workers().values():
            metrics = worker.get("metrics", {})
            running = metrics.get("task_counts", {}).get("executing", 0)
            limit = worker.get("memory_limit") or 0
            total["CPU"] += worker.get("nthreads", 1)
            total["memory"] += limit
            free["CPU"] += max(0, worker.get("nthreads", 1) - running)
            free["memory"] += max(0, limit - metrics.get("memory", 0))
        return total, free

    def engine_objects(self, handles: dict[str, Any]) -> dict[str, tuple[int, tuple[str, ...]]]:
        if not handles:
            return {}
        keys = [future.key for future in handles.values()]
        try:
            who_has = self.client.who_has(list(handles.values()))     # futures, not keys
        except CancelledError as error:       # (a lost object, or plait.cancel's)
            named = {future.key: oid for oid, future in handles.items()}
            raise _cancelled(error, named) from None
        sizes = self.client.nbytes(keys, summary=False)
        return {oid: (sizes.get(future.key, 0), tuple(who_has.get(future.key, ())))
                for oid, future in handles.items()}

    def engine_here(self) -> tuple[str, str, str | None]:
        worker = distributed.get_worker()
        return worker.address, worker.id, worker.get_current_task()   # its key: plait's id

    @contextlib.contextmanager
    def engine_names(self) -> Iterator[tuple[names.Read, names.Add]]:
        """The scheduler's metadata holds the names as one table, read and written back
        under a Dask lock (Dask has no atomic add of its own): a read, a write if a name
        was claimed, and the lock's two round trips, only when a session meets nodes it
        does not know yet. (A Dask lock whose holder stalls past its lease timeout, 30 s by
        default, can be taken by another: Dask's own caveat.)"""
        lock = distributed.Lock(NAMES, self.client.scheduler, self.client.loop)
        with lock:
            table = self.client.get_metadata([NAMES], default={})
            added = len(table)
            yield table.get, names.table_add(table)
            if len(table) > added:
                self.client.set_metadata([NAMES], table)

    def engine_put(self, value: Any) -> tuple[Any, str]:
        future = self.client.scatter(value, hash=False)
        where = self.client.who_has([future]).get(future.key, ())
        return future, (where[0] if where else self.engine_nodes()[0][0])

    def launch(self, task: Any, node: Any, placement: Any, inputs: list[Any],
               nested: dict[str, Any], anchored: bool) -> list[Any]:
        """Every task pinned, anchored or not: a restriction costs Dask little (W3 on plait
        on Dask runs at Dask's own rate) and keeps the plan's priorities in one order."""
        function_id, pickled = task.function.pickled()
        spec = Spec(task.id, function_id, pickled, node.function_name, placement.node,
                    node.deps, node.outputs, task.payload)
        pin = {"workers": [self.node_ids[placement.node]], "allow_other_workers": False,
               "priority": int(placement.priority * 1e6)}
        retries = task.options.max_retries if task.options.retry_exceptions else 0
        future = self.client.submit(_run, spec, _Nested(nested), *inputs, key=task.id,
                                    pure=False, retries=retries, **pin)
        if len(node.outputs) == 1:
            outputs = [future]
        else:
            outputs = [self.client.submit(operator.getitem, future, i, key=oid, pure=False,
                                          **pin) for i, oid in enumerate(node.outputs)]
        # a dropped future would be forgotten unrun
        self.keep += [(self.launched, future) for future in outputs]
        return outputs

    def before_run(self) -> tuple[str, ...]:
        self.keep = [kept for kept in self.keep if not kept[1].done()]
        return super().before_run()

    def portable(self, handle: Any) -> Any:
        return handle.key                 # a Future travels as its key

    def restore(self, token: Any) -> Any:
        return distributed.Future(token, self.client)

    def engine_get(self, handles: list[Any], timeout: float | None) -> list[Any]:
        seceded = self.in_task and _secede()
        try:
            _until_done_or_failed(handles, timeout)
            return [read_only(value) for value in self.client.gather(handles)]
        except distributed.TimeoutError:
            raise GetTimeoutError(f"get timed out after {timeout} s on the dask engine; the "
                                  f"tasks keep running") from None
        except CancelledError as error:
            raise _cancelled(error) from None
        except KilledWorker as error:
            raise _crashed(error) from None
        finally:
            if seceded:
                distributed.rejoin()

    def engine_ready(self, handles: list[Any], count: int, timeout: float | None) -> set[int]:
        """Which handles are done, once ``count`` are or ``timeout`` passes. A task that
        must wait gives its thread back to the worker meanwhile, as ``engine_get`` does:
        the tasks it waits for may be pinned to its own worker."""
        ready = {i for i, future in enumerate(handles) if future.done()}
        if len(ready) >= count or timeout == 0:
            return ready
        seceded = self.in_task and _secede()
        try:
            return self.ready_within(handles, count, timeout)
        finally:
            if seceded:
                distributed.rejoin()

    def ready_within(self, handles: list[Any], count: int, timeout: float | None) -> set[int]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ready = {i for i, future in enumerate(handles) if future.done()}
            left = None if deadline is None else deadline - time.monotonic()
            if len(ready) >= count or (left is not None and left <= 0):
                return ready
            pending = [future for future in handles if not future.done()]
            try:
                distributed.wait(pending, timeout=POLL_SECONDS if left is None
                                 else min(left, POLL_SECONDS), return_when="FIRST_COMPLETED")
            except distributed.TimeoutError:
                pass

    def engine_free(self, handles: list[Any]) -> None:
        freed = {id(future) for future in handles}    # released once no plait ref nor
        self.keep = [kept for kept in self.keep      # reader needs it
                     if id(kept[1]) not in freed]

    def engine_cancel(self, handles: list[Any], recursive: bool, force: bool) -> None:
        if handles:                             # (a running Dask task finishes in its thread)
            self.client.cancel(handles, force=True, reason=CANCELLED)

    def engine_events(self) -> list[tuple[tuple, tuple]]:
        """The new reports in the scheduler's log. A task done before the log is read has
        its report there (the worker sends it before the task's result), so the oldest
        task not done then is the oldest whose report may be unread after."""
        self.keep = [kept for kept in self.keep if not kept[1].done()]
        read_from = self.keep[0][0] if self.keep else self.launched
        new, self.events_read = _unread(self.client.get_events(EVENT), self.events_read)
        self.read_from = read_from
        return [_about_ran(report) for report in new]

    def unread_from(self) -> int:
        return self.read_from

    def engine_close(self) -> None:
        self.keep.clear()
        if self.owns_client:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


class _Nested:
    """Keys of a task's nested plait refs' futures, out of Dask's argument resolution (Dask
    replaces futures inside lists and dicts too)."""

    __slots__ = ("handles",)

    def __init__(self, handles: dict[str, Any]) -> None:
        self.handles = handles

    def __reduce__(self):
        return (_Nested, (self.handles,))


def _run(spec: Spec, nested: _Nested, *inputs: Any) -> Any:
    """One plait task in a Dask worker (its result, or its results as a tuple)."""
    worker = distributed.get_worker()
    results, report = run_task(DaskEngine.in_task_session(), worker.address, spec, inputs,
                               nested.handles)
    worker.log_event(EVENT, report)
    return results[0] if len(results) == 1 else tuple(results)


def _cancelled(error: CancelledError, named: dict[Any, str] | None = None) -> Exception:
    """Dask's CancelledError as plait's: plait.cancel's, or an object Dask lost (scattered
    data whose worker died, and what needed it), by the reason Dask gives; ``named``: plait's
    id of each Dask key, where known."""
    groups = getattr(error, "error_groups", None)
    first = groups[0].errors[0] if groups else error
    key, reason = getattr(first, "key", "a task"), getattr(first, "reason", CANCELLED)
    key = (named or {}).get(key, str(key))
    if reason == CANCELLED:
        return TaskCancelledError(key)
    return ObjectLostError(key, f"the dask engine lost it (Dask's reason: {reason})")


def _crashed(error: KilledWorker) -> WorkerCrashedError:
    """Dask's KilledWorker (a task during which ``allowed-failures`` + 1 workers died) as
    plait's error, one attempt per worker that died."""
    task_id = str(error.task)
    last = getattr(error.last_worker, "address", None) or "a worker"
    attempts = ["its Dask worker died"] * error.allowed_failures + [f"{last} died"]
    return WorkerCrashedError(stem_of(task_id), task_id, attempts)


def _about_ran(report: dict) -> tuple[tuple, tuple]:
    """A report as the worker logged it (task.py ``report``) in the parts ``record`` takes."""
    deps = tuple(oid for oid, _ in report["inputs"])
    sizes = [nbytes for _, nbytes in report["inputs"]]
    return ((report["task"], report["function"], tuple(report["outputs"]), deps),
            (report["node"], report["pid"], report["start"], report["end"], sizes))


def _unread(events: Sequence[tuple[float, Any]], read: tuple[float, int]
            ) -> tuple[list[Any], tuple[float, int]]:
    """The messages of ``events`` (the scheduler's log: (time, message), oldest first) not
    ``read`` yet, and what is read then. The scheduler keeps only its newest events (1,000:
    ``distributed.admin.low-level-log-length``), so a position in its log moves; a time
    does not (``read``: the last time read, and how many events of that time were).

    >>> _unread([(1.0, "a"), (2.0, "b"), (2.0, "c")], (2.0, 1))
    (['c'], (2.0, 2))
    >>> _unread([(1.0, "a")], (1.0, 1))
    ([], (1.0, 1))
    """
    last, tied = read
    fresh = [(when, message) for when, message in events if when >= last]
    if not fresh:
        return [], read
    newest = fresh[-1][0]
    return ([message for _, message in fresh[tied:]],
            (newest, sum(1 for when, _ in fresh if when == newest)))


def _until_done_or_failed(handles: list[Any], timeout: float | None) -> None:
    """Wait until every handle is done or one has failed: a get raises a failure at once,
    as Ray's does, not after the slowest of the rest (distributed.wait waits for all)."""
    if all(future.done() for future in handles):
        return
    for future in distributed.as_completed(handles, timeout=timeout):
        if future.status == "error":
            return


def _secede() -> bool:
    """A task about to wait for other tasks gives its thread back to the worker."""
    try:
        distributed.secede()
        return True
    except Exception:
        return False
