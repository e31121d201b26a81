"""What plait runs on a Dask scheduler: plait's tasks pinned to a worker that left go to a
live one.

The Dask engine pins each task to its worker (``workers=[address]``,
``allow_other_workers=False``), and Dask keeps a pin to an address: when that worker dies
(a task's ``os._exit``, a segfault, an OOM kill; its nanny restarts it at a new address) or
is removed, the tasks pinned to it, and those that must recompute the results it held, wait
in Dask's "no-worker" state for a worker that never comes back, and a ``get`` waits forever.
Dask alone would run them elsewhere and, once ``distributed.scheduler.allowed-failures``
workers (3) died running one task, fail it with ``KilledWorker``.

``RepinLost`` gives plait's tasks that behaviour. Each time a worker leaves or joins, every
plait task not run yet whose pin names no live worker is pinned to the live worker holding
the most bytes of its inputs (the fewest tasks in hand on a tie, as plait's compiler keeps
large objects where they are), and moved on if it waited for a worker. Dask's own count of
the workers that died running a task still ends a task that kills every worker it meets.
Other tasks on the cluster are left as they are. The plugin is registered once per cluster
(by name: a second session replaces it) and holds no state.
"""

from __future__ import annotations

import operator
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

PLAIT_TASK = ("plait.engines.dask", "_run")       # the function of every plait task on Dask
NOT_RUN = ("released", "waiting", "queued", "no-worker")
# Where a task may go: any worker not on its way out. (Not only the running: a worker that
# just joined is not running yet when the plugin hears of it, and Dask schedules the tasks
# pinned to it once it is.)
LEAVING = ("closing", "closing_gracefully", "closed")


class RepinLost(SchedulerPlugin):
    """On the scheduler: repin plait's tasks whose worker left (see the module's doc)."""

    name = "plait-repin-lost"

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
        repin_lost(scheduler)

    def add_worker(self, scheduler: Any, worker: str) -> None:
        repin_lost(scheduler)


def repin_lost(scheduler: Any) -> list[tuple[Any, str]]:
    """Pin each of plait's tasks not run yet whose pin names no live worker to a live one;
    those waiting for a worker move on. Returns (key, address) of each task moved."""
    live = [ws for ws in scheduler.workers.values() if ws.status.name not in LEAVING]
    if not live:
        return []
    moved: dict[Any, str] = {}                  # (in the order submitted: inputs first)
    for ts in list(scheduler.tasks.values()):
        pin = ts.worker_restrictions
        if (ts.state in NOT_RUN and pin and pin.isdisjoint(scheduler.workers)
                and not ts.loose_restrictions and plaits(ts)):
            chosen = beside_inputs(ts, live, moved)
            ts.worker_restrictions = {chosen.address}
            moved[ts.key] = chosen.address
    waiting = {key: "waiting" for key in moved if scheduler.tasks[key].state == "no-worker"}
    if waiting:
        scheduler.transitions(waiting, stimulus_id="plait-repin-lost")
    return list(moved.items())


def beside_inputs(ts: Any, live: list[Any], moved: dict[Any, str]) -> Any:
    """The live worker holding the most bytes of ``ts``'s inputs, or about to (an input
    lost with the worker is made again where it was ``moved``); on a tie, the one with the
    fewest tasks in hand, then the first by address."""
    def held(ws: Any) -> int:
        return sum(dts.get_nbytes() for dts in ts.dependencies
                   if (dts.who_has and ws in dts.who_has) or moved.get(dts.key) == ws.address)

    return min(live, key=lambda ws: (-held(ws), len(ws.processing), ws.address))


def plaits(ts: Any) -> bool:
    """Whether a task is plait's: a call of plait's runner, or one of the ``getitem`` tasks
    that split a plait task's results (num_returns > 1)."""
    if _function(ts) == PLAIT_TASK:
        return True
    return (getattr(ts.run_spec, "func", None) is operator.getitem
            and any(_function(dts) == PLAIT_TASK for dts in ts.dependencies))


def _function(ts: Any) -> tuple[str | None, str | None]:
    function = getattr(ts.run_spec, "func", None)
    return getattr(function, "__module__", None), getattr(function, "__qualname__", None)
