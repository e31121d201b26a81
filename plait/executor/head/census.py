"""What the head counts for a dashboard: tasks per function, bytes moved, dead nodes, the
latest plan, and a bounded ring of notices (task errors, retries, rebuilds, node deaths).

What flows in: the head's own decisions, one call each (``accepted``, ``finished``,
``retried``, ``rebuilt``, ``node_died``, ``moved``, ``planned``). What flows out: plain
tuples for a ``Snapshot`` (wire/protocol.py), built only when a dashboard asks.

It must cost nothing a run would notice: per task, one dict lookup and an integer add when
it is accepted and when it finishes; ``planned`` keeps a reference to the submission's
tuple of specs (no copy). Everything that grows is bounded: MAX_NOTICES notices (a pickled
error over MAX_ERROR_BYTES is dropped, its text kept) and MAX_DEAD dead nodes.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Collection, Mapping

from plait.executor.head.actors import ActorRecord, actor_row
from plait.executor.wire import protocol as p

MAX_NOTICES = 1_000             # ~1 KB each with a traceback: ~1 MB when full
MAX_ERROR_BYTES = 64 << 10
MAX_DEAD = 64
MAX_PLAN_STATES = 2_000         # the plan page draws groups past 200 tasks anyway

SUBMITTED, DONE, FAILED, RETRIED = range(4)


class Census:
    """Counters and rings the head keeps for whoever watches; never read on its hot path."""

    def __init__(self, wall: Callable[[], float]) -> None:
        self.wall = wall                                  # notices carry wall-clock times
        self.tally: dict[str, list[int]] = {}             # function -> SUBMITTED..RETRIED
        self.notices: deque[p.Notice] = deque(maxlen=MAX_NOTICES)
        self.notices_dropped = 0                          # position of notices[0]
        self.dead: deque[p.DeadNode] = deque(maxlen=MAX_DEAD)
        self.bytes_moved = 0
        self.transfers = 0
        self.plan: tuple[p.TaskSpec, ...] = ()
        self.plan_number = 0
        self.plan_predicted = 0
        self.plan_moved_from = 0                          # bytes_moved when it was submitted
        self.plan_failed: set[str] = set()

    # -- what the head tells it ------------------------------------------------------------

    def counts(self, function: str) -> list[int]:
        counts = self.tally.get(function)
        if counts is None:
            counts = self.tally[function] = [0, 0, 0, 0]
        return counts

    def accepted(self, spec: p.TaskSpec) -> None:
        self.counts(spec.function_name)[SUBMITTED] += 1

    def finished(self, spec: p.TaskSpec, outputs: tuple[tuple[str, p.ObjectValue], ...],
                 node: str) -> None:
        """A task is over: done, or failed (its first error becomes a notice)."""
        error = next((v.error for _, v in outputs if isinstance(v, p.Failed)), None)
        counts = self.counts(spec.function_name)
        if error is None:
            counts[DONE] += 1
            return
        counts[FAILED] += 1
        if self.plan_number:
            self.plan_failed.add(spec.id)
        self.notice("error", spec.id, f"{spec.function_name} failed on {node}", error)

    def retried(self, spec: p.TaskSpec, why: str) -> None:
        self.counts(spec.function_name)[RETRIED] += 1
        self.notice("retry", spec.id, f"{spec.function_name} runs again: {why}")

    def rebuilt(self, spec: p.TaskSpec, why: str) -> None:
        self.counts(spec.function_name)[RETRIED] += 1
        self.notice("rebuild", spec.id, f"{spec.function_name} runs again to rebuild "
                                        f"{', '.join(spec.outputs[:3])}: {why}")

    def node_died(self, info: p.NodeInfo, reason: str) -> None:
        self.dead.append(p.DeadNode(info.id, self.wall(), reason, info))
        self.notice("node-dead", info.id, f"{info.id} died: {reason}")

    def moved(self, nbytes: int) -> None:
        self.bytes_moved += nbytes
        self.transfers += 1

    def planned(self, tasks: tuple[p.TaskSpec, ...], predicted_bytes: int) -> None:
        """A submission: the latest plan is the one the Plan page draws."""
        if not tasks:
            return
        self.plan, self.plan_predicted = tasks, predicted_bytes
        self.plan_number += 1
        self.plan_moved_from = self.bytes_moved
        self.plan_failed = set()

    def notice(self, kind: str, subject: str, text: str, error: bytes = b"") -> None:
        if len(error) > MAX_ERROR_BYTES:
            error = b""
        if len(self.notices) == self.notices.maxlen:
            self.notices_dropped += 1
        self.notices.append(p.Notice(self.wall(), kind, subject, text, error))

    # -- what a snapshot reads -------------------------------------------------------------

    def notices_since(self, since: int) -> tuple[tuple[p.Notice, ...], int]:
        """Notices from position ``since`` on (those dropped from the ring are skipped),
        and the position after the last.

        >>> census = Census(lambda: 0.0)
        >>> for n in range(3): census.notice("retry", f"t{n}", "again")
        >>> [n.subject for n in census.notices_since(1)[0]], census.notices_since(1)[1]
        (['t1', 't2'], 3)
        """
        end = self.notices_dropped + len(self.notices)
        start = max(since, self.notices_dropped) - self.notices_dropped
        return tuple(itertools.islice(self.notices, start, None)), end

    def tallies(self) -> tuple[p.FunctionTally, ...]:
        return tuple(p.FunctionTally(name, *counts) for name, counts in sorted(self.tally.items()))

    def plan_states(self, assigned: Mapping[str, p.TaskSpec],
                    running: Collection[str]) -> tuple[tuple[str, str], ...]:
        """Each task of the latest plan (up to MAX_PLAN_STATES) as waiting, running, done or
        failed: unfinished while the head has it assigned, running while a worker holds it."""
        states = []
        for spec in self.plan[:MAX_PLAN_STATES]:
            if spec.id in assigned:
                state = "running" if spec.id in running else "waiting"
            else:
                state = "failed" if spec.id in self.plan_failed else "done"
            states.append((spec.id, state))
        return tuple(states)

    def plan_report(self, request: int) -> p.PlanReport:
        tasks = tuple((s.id, s.function_name, s.node, s.deps, s.outputs, s.follows)
                      for s in self.plan)
        return p.PlanReport(request, self.plan_number, tasks, self.plan_predicted)


MAX_OBJECTS = 20                # the Objects page's rows
MAX_ACTORS = 200                # the Actors table's rows (live ones first)


def build_snapshot(census: Census, request: int, since: int, session: str,
                   infos: tuple[p.NodeInfo, ...], ages: tuple[float, ...],
                   parts: list[p.NodeSnapshot], assigned: Mapping[str, p.TaskSpec],
                   locations: Mapping[str, set[str]],
                   holds: Mapping[object, Mapping[str, int]],
                   processes: Mapping[object, tuple[str, int]],
                   actors: Mapping[str, ActorRecord] | None = None) -> p.Snapshot:
    """The head's answer to a SnapshotRequest, from its tables and the nodes' snapshots
    (``parts``; a node that died meanwhile gave none)."""
    by_node = {part.node: part for part in parts}
    running = {task for part in parts for task, _ in part.running}
    notices, end = census.notices_since(since)
    return p.Snapshot(
        request, session, census.wall(), infos, ages,
        tuple(by_node[info.id] for info in infos if info.id in by_node), tuple(census.dead),
        census.tallies(), census.bytes_moved, census.transfers, census.plan_number,
        census.plan_states(assigned, running), census.bytes_moved - census.plan_moved_from,
        notices, end, largest_objects(parts, locations, holds, processes),
        actor_rows(actors or {}, assigned))


def actor_rows(actors: Mapping[str, ActorRecord],
               assigned: Mapping[str, p.TaskSpec]) -> tuple[p.ActorRow, ...]:
    """Up to MAX_ACTORS actors, the live ones first (newest first within each), so that a
    long run's dead actors never crowd out the ones a person may want to stop."""
    rows = [actor_row(actor_id, record, assigned)
            for actor_id, record in reversed(actors.items())]
    rows.sort(key=lambda row: row.state == "dead")          # stable: newest first stays
    return tuple(rows[:MAX_ACTORS])


def largest_objects(parts: list[p.NodeSnapshot], locations: Mapping[str, set[str]],
                    holds: Mapping[object, Mapping[str, int]],
                    processes: Mapping[object, tuple[str, int]]) -> tuple:
    """The MAX_OBJECTS largest objects of the nodes' stores: each with the node reporting
    it, the nodes holding a copy, and the clients (drivers, tasks' sessions) holding a ref
    to it, by pid where the client told the head its process."""
    seen: dict[str, tuple] = {}
    for part in parts:
        for summary in part.store.largest:
            if summary.id not in seen:
                seen[summary.id] = (summary, part.node)
    rows = sorted(seen.values(), key=lambda row: (-row[0].nbytes, row[0].id))[:MAX_OBJECTS]
    return tuple((summary, node, tuple(sorted(locations.get(summary.id, ()))),
                  tuple(sorted(_client(peer, processes) for peer, held in holds.items()
                               if held.get(summary.id))))
                 for summary, node in rows)


def _client(peer: object, processes: Mapping[object, tuple[str, int]]) -> str:
    """A client as the Objects page names it.

    >>> _client("x", {"x": ("host-1", 42)}), _client("y", {})
    ('pid 42', 'a client')
    """
    process = processes.get(peer)
    return f"pid {process[1]}" if process else "a client"
