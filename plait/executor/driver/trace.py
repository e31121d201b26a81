"""Traces of runs: what ran where and when, what moved, as Chrome / Perfetto trace JSON.

``with plait.trace() as t:`` collects the head's task and transfer events recorded while
the block ran; ``t.bytes_moved`` is what really crossed between nodes, to set beside
``plan.bytes_moved``. The head keeps only the newest events (``protocol.MAX_EVENTS``, 50,000
tasks and transfers, so a long run's memory stays flat): a block that ran more keeps its
last ones, and ``t.dropped`` says how many went. ``t.save("run.json")`` writes the Trace
Event Format that chrome://tracing and ui.perfetto.dev open: one process per node, one
thread per worker, and a "transfers" thread per node for the copies it received.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from plait.executor.wire.protocol import TaskEvent, TransferEvent

TRANSFER_THREAD = 10_000           # tid of a node's "transfers" row, after its workers


@dataclass
class Trace:
    """Events recorded between ``__enter__`` and ``__exit__`` of ``plait.trace()``."""

    tasks: list[TaskEvent] = field(default_factory=list)
    transfers: list[TransferEvent] = field(default_factory=list)
    dropped: int = 0        # events of the block the head no longer kept (see MAX_EVENTS)

    @property
    def bytes_moved(self) -> int:
        return sum(t.nbytes for t in self.transfers)

    def add(self, events) -> None:
        for event in events:
            (self.tasks if isinstance(event, TaskEvent) else self.transfers).append(event)

    def to_chrome(self) -> dict:
        return {"traceEvents": chrome_events(self.tasks, self.transfers),
                "displayTimeUnit": "ms"}

    def save(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(self.to_chrome(), f)

    def __repr__(self) -> str:
        dropped = f", {self.dropped} oldest events dropped" if self.dropped else ""
        return (f"Trace({len(self.tasks)} tasks, {len(self.transfers)} transfers, "
                f"{self.bytes_moved} bytes moved{dropped})")


def chrome_events(tasks: list[TaskEvent], transfers: list[TransferEvent]) -> list[dict]:
    """Complete ("X") events, microseconds from the first event, with readable names.

    >>> chrome_events([TaskEvent("inc-1", "inc", "node-0", 0, 10.0, 10.5, True)], [])[-1]["dur"]
    500000.0
    """
    start = min([t.start for t in tasks] + [t.start for t in transfers], default=0.0)
    nodes = sorted({t.node for t in tasks} | {t.dst for t in transfers})
    pid = {node: i for i, node in enumerate(nodes)}
    events: list[dict] = [{"ph": "M", "name": "process_name", "pid": pid[n],
                           "args": {"name": n}} for n in nodes]
    for t in tasks:
        events.append({"ph": "X", "name": t.function_name, "cat": "task", "pid": pid[t.node],
                       "tid": t.worker, "ts": (t.start - start) * 1e6,
                       "dur": max(t.end - t.start, 0.0) * 1e6,
                       "args": {"task": t.task_id, "ok": t.ok}})
    for t in transfers:
        events.append({"ph": "X", "name": f"copy {t.object_id}", "cat": "transfer",
                       "pid": pid[t.dst], "tid": TRANSFER_THREAD,
                       "ts": (t.start - start) * 1e6, "dur": max(t.end - t.start, 0.0) * 1e6,
                       "args": {"object": t.object_id, "from": t.src, "bytes": t.nbytes}})
    return events
