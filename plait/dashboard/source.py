"""The dashboard's side of the cluster: one connection to the head, like a driver's, asked
for a Snapshot at most once per FRESH_SECONDS however many pages poll.

    page --GET /api/state--> Source.state() --SnapshotRequest, TraceRequest--> head
                                             <--Snapshot, TraceReport----------
    Plan page --GET /api/plan--> (plan changed) --PlanRequest--> head <--PlanReport--

Nothing is asked while no page polls, so a cluster whose dashboard is closed pays nothing
but the idle connection. What the source remembers is bounded: the trace events of the
last minute (view.STREAM_SECONDS, at most MAX_EVENTS) and the newest MAX_NOTICES notices.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable

from plait.dashboard import view
from plait.dashboard.plan import draw_plan
from plait.errors import ClusterError
from plait.executor.driver.cluster import JoinedCluster
from plait.executor.driver.connection import Connection
from plait.executor.wire import protocol as p

FRESH_SECONDS = 0.5             # pages poll every second; two pages share one snapshot
ASK_TIMEOUT_SECONDS = 10.0
MAX_EVENTS = 20_000
MAX_NOTICES = 500


class Source:
    """Asks the head; keeps the last snapshot, a minute of trace events and the notices."""

    def __init__(self, ask: Callable[[p.Message], p.Message],
                 tell: Callable[[p.Message], None] = lambda message: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ask = ask                          # one request, its reply (or ClusterError)
        self.tell = tell                        # a message that has no reply (a Cancel)
        self.clock = clock
        self.lock = threading.Lock()
        self.requests = itertools.count(1)
        self.snapshot: p.Snapshot | None = None
        self.before: p.Snapshot | None = None
        self.asked_at = -1e9
        self.events: deque[p.TaskEvent | p.TransferEvent] = deque(maxlen=MAX_EVENTS)
        self.position = -1                      # trace position; -1: start from now
        self.notices: deque[dict] = deque(maxlen=MAX_NOTICES)
        self.notices_end = 0
        self.plan: dict = {"number": 0, "svg": "", "members": {}, "predicted_bytes": 0}
        self.outputs: dict[str, tuple[str, ...]] = {}     # the plan's task -> its results

    def latest(self) -> p.Snapshot:
        """A snapshot no older than FRESH_SECONDS (asked for now if need be)."""
        with self.lock:
            if self.snapshot is None or self.clock() - self.asked_at >= FRESH_SECONDS:
                self.refresh()
            assert self.snapshot is not None
            return self.snapshot

    def refresh(self) -> None:
        snapshot = self.ask(p.SnapshotRequest(next(self.requests), self.notices_end))
        assert isinstance(snapshot, p.Snapshot)
        trace = self.ask(p.TraceRequest(next(self.requests), self.position,
                                        newest=view.STREAM_BARS))
        assert isinstance(trace, p.TraceReport)
        self.events.extend(trace.events)
        self.position = trace.position
        self.notices.extend(view.event_row(n) for n in snapshot.notices)
        self.notices.extend(self.spills(snapshot))
        self.notices_end = snapshot.notices_end
        self.before, self.snapshot = self.snapshot, snapshot
        self.asked_at = self.clock()

    def spills(self, snapshot: p.Snapshot) -> list[dict]:
        """Spill notices: a node whose spilled bytes grew since the last snapshot."""
        if self.snapshot is None:
            return []
        before = {s.node: s.store.spilled_total for s in self.snapshot.node_snapshots}
        rows = []
        for s in snapshot.node_snapshots:
            grew = s.store.spilled_total - before.get(s.node, s.store.spilled_total)
            if grew > 0:
                rows.append({"time": snapshot.time, "kind": "spill", "subject": s.node,
                             "text": f"{s.node} spilled {grew} bytes to disk "
                                     f"({s.store.spilled_objects} objects on disk now)",
                             "traceback": ""})
        return rows

    def state(self) -> dict:
        """What the page draws: the snapshot's rows, the stream, the newest events first."""
        snapshot = self.latest()
        with self.lock:
            state = view.page_state(snapshot, self.before)
            state["stream"] = view.stream(self.events, snapshot.time)
            state["events"] = list(reversed(self.notices))
            drawn = self.plan["number"] == snapshot.plan_number
            state["plan"]["predicted"] = self.plan["predicted_bytes"] if drawn else None
        return state

    def plan_drawing(self) -> dict:
        """The latest plan, drawn: asked for and drawn only when a page shows it and it
        changed (a 10,000-task plan costs the head ~10 ms to send and this process ~0.1 s
        to draw, and each get of a run submits a new plan)."""
        snapshot = self.latest()
        with self.lock:
            self.load_plan(snapshot.plan_number)
            return dict(self.plan)

    def load_plan(self, number: int) -> None:
        """Ask for and draw the latest plan unless plan ``number`` is drawn already."""
        if self.plan["number"] == number:
            return
        report = self.ask(p.PlanRequest(next(self.requests)))
        assert isinstance(report, p.PlanReport)
        self.plan = draw_plan(report)
        self.outputs = {task[0]: task[4] for task in report.tasks}

    def cancel(self, task_id: str) -> bool:
        """Cancel a waiting or running task of the latest plan (one of the page's two
        actions)."""
        snapshot = self.latest()
        with self.lock:
            self.load_plan(snapshot.plan_number)
            outputs = self.outputs.get(task_id)
            if not outputs or dict(snapshot.plan_states).get(task_id) not in ("waiting",
                                                                              "running"):
                return False
            self.tell(p.Cancel(outputs))
            self.asked_at = -1e9                # the next state shows it cancelled
            return True


    def kill_actor(self, actor_id: str) -> bool:
        """Kill a live actor for good, as ``plait.kill(actor)`` does (the page's other
        action); False if the latest snapshot lists no such live actor."""
        snapshot = self.latest()
        with self.lock:
            if not any(row.actor == actor_id and row.state != "dead"
                       for row in snapshot.actors):
                return False
            self.tell(p.KillActor(actor_id, True, "The actor is dead because it was killed "
                                                  "from the plait dashboard"))
            self.asked_at = -1e9                # the next state shows it dead
            return True


def connect(cluster: JoinedCluster) -> tuple[Callable[[p.Message], p.Message],
                                              Callable[[p.Message], None], Callable[[], None]]:
    """``ask``, ``tell`` and ``close`` over one connection to the head (a ClusterError if
    it does not answer). Replies to requests given up on are skipped by their number."""
    conn = Connection(cluster)
    if conn.hello(timeout=ASK_TIMEOUT_SECONDS) is None:
        conn.close()
        raise ClusterError(f"no plait head answered at {cluster.client_address}")

    def ask(message: p.Message) -> p.Message:
        conn.send(message)
        deadline = time.monotonic() + ASK_TIMEOUT_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            reply = conn.receive(left)
            if getattr(reply, "request", None) == getattr(message, "request", None):
                return reply
        raise ClusterError(f"the plait head did not answer a {type(message).__name__} "
                           f"within {ASK_TIMEOUT_SECONDS:.0f} s")

    return ask, conn.send, conn.close
