"""Tasks no node can run yet: they ask for resources (GPU, custom, CPUs) that no node has.

Ray leaves such a task pending until a node that offers them joins; so does plait, with
one difference: nothing waits for it in silence. Its refs are not ready (``wait`` with a
timeout says so), and a ``get`` of them, or a ``wait`` without a timeout that could only
end with them, raises the compiler's PlanError at once, naming what the task asks for and
what each node offers. At every later submission the parked tasks are compiled again with
the rest, so a node that joined in between runs them. The tasks of the graph that read a
parked task's results are parked with it (their refs raise the same error).

    Session.run --PlanError(infeasible)--> Parked.park(task and its readers)
    Session.run (next) <--Parked.unpark()-- the parked tasks, to be compiled again
"""

from __future__ import annotations

import logging
from typing import Any

from plait.errors import PlanError

log = logging.getLogger("plait")


class Parked:
    """The parked tasks (marked submitted, so graphs stop at them) and why each waits."""

    def __init__(self) -> None:
        self.tasks: dict[str, tuple[Any, PlanError]] = {}     # task id -> (Task, error)
        self.warned: set[str] = set()

    def park(self, graph: Any, tasks: dict[str, Any], error: PlanError) -> None:
        """Park the task ``error`` names and every task of ``graph`` reading its results."""
        if error.task_id not in self.warned:
            self.warned.add(error.task_id)
            log.warning("plait: %s; it waits until a node that offers them joins", error)
        consumers = graph.consumers()
        waiting = [error.task_id]
        while waiting:
            task = tasks.get(waiting.pop())
            if task is None or task.submitted:
                continue
            task.submitted = True              # the next graphs stop here (see unpark)
            self.tasks[task.id] = (task, error)
            for oid in task.output_ids:
                waiting += consumers.get(oid, [])

    def unpark(self) -> list[Any]:
        """Every parked task, unmarked, in the order they were made, to be compiled again."""
        tasks = [task for task, _ in self.tasks.values()]
        self.tasks.clear()
        for task in tasks:
            task.submitted = False
        return tasks

    def drop_actor(self, actor_id: str) -> list[Any]:
        """Take out an actor's parked creation and calls, and the tasks parked for them
        (killed before any node could host it, they are never to run)."""
        ids = {task.id for task, error in self.tasks.values()
               if task.actor == actor_id or error.task_id == actor_id}
        ids |= {task.id for task, error in self.tasks.values() if error.task_id in ids}
        return [self.tasks.pop(task_id)[0] for task_id in list(self.tasks) if task_id in ids]

    def error_for(self, object_ids: list[str]) -> PlanError | None:
        """Why the first of ``object_ids`` made by a parked task cannot be made yet."""
        outputs = {oid: error for task, error in self.tasks.values() for oid in task.output_ids}
        error = next((outputs[oid] for oid in object_ids if oid in outputs), None)
        if error is None:
            return None
        return PlanError(error.args[0], error.task_id, infeasible=True)

    def outputs(self) -> set[str]:
        """The objects parked tasks make."""
        return {oid for task, _ in self.tasks.values() for oid in task.output_ids}

    def count(self, object_ids: list[str]) -> int:
        """How many of ``object_ids`` parked tasks make."""
        outputs = self.outputs()
        return sum(oid in outputs for oid in object_ids)
