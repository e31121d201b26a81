"""What the pages show, as JSON: the head's Snapshot and recent trace events turned into
rows a page draws without further thought (pure functions; the page only lays them out).

    Snapshot (+ the one before, for rates) --page_state--> {"cluster", "run", "objects", ...}
    TaskEvent/TransferEvent ring           --stream-----> bars per worker, arrows per copy
    Notice ring                            --events-----> rows, newest first

A task error's traceback is read out of its pickled error without unpickling it
(``traceback_of``): the dashboard runs no code it is sent, and needs none of the user's
modules to show what failed.
"""

from __future__ import annotations

import pickletools
from collections.abc import Iterable

from plait.executor.wire import protocol as p

STREAM_SECONDS = 60.0           # the task stream shows the last minute
STREAM_BARS = 2_000             # ... its newest tasks and copies at most: a page draws each


def page_state(now: p.Snapshot, before: p.Snapshot | None) -> dict:
    """Everything but the stream and the events, for one poll of the page."""
    return {"session": now.session, "time": now.time,
            "cluster": cluster_rows(now, before), "dead": dead_rows(now),
            "run": progress_rows(now), "objects": object_rows(now),
            "actors": actor_rows(now),
            "bytes_moved": now.bytes_moved, "transfers": now.transfers,
            "plan": {"number": now.plan_number, "states": dict(now.plan_states),
                     "moved": now.plan_moved}}


def cluster_rows(now: p.Snapshot, before: p.Snapshot | None) -> list[dict]:
    """A row per live node: address, workers by state, store bar, CPU %, RSS, heartbeat age."""
    earlier = {s.node: s for s in before.node_snapshots} if before else {}
    elapsed = now.time - before.time if before else 0.0
    ages = dict(zip((n.id for n in now.nodes), now.heartbeat_age, strict=True))
    rows = []
    for info in now.nodes:
        snap = next((s for s in now.node_snapshots if s.node == info.id), None)
        row = {"node": info.id, "address": info.address, "pid": info.pid,
               "head": info.is_head, "heartbeat_age": round(ages[info.id], 2),
               "workers": {}, "worker_list": [], "store": None, "cpu": None, "rss": None}
        if snap is not None:
            row.update(workers=_count_states(snap.workers), store=store_bar(snap.store),
                       rss=snap.rss, worker_list=[_worker(w) for w in snap.workers])
            prior = earlier.get(info.id)
            used = snap.cpu_seconds - prior.cpu_seconds if prior is not None else -1.0
            if used >= 0 and elapsed > 0:    # < 0: a process that was counted has exited
                row["cpu"] = round(100 * used / elapsed, 1)
        rows.append(row)
    return rows


def _count_states(workers: Iterable[p.WorkerState]) -> dict[str, int]:
    counts = {"busy": 0, "idle": 0, "blocked": 0, "standin": 0}
    for worker in workers:
        counts[worker.state] = counts.get(worker.state, 0) + 1
        counts["standin"] += worker.standin
    return counts


def _worker(worker: p.WorkerState) -> dict:
    return {"index": worker.index, "pid": worker.pid, "state": worker.state,
            "standin": worker.standin, "running": list(worker.running), "rss": worker.rss}


def store_bar(summary) -> dict:
    """The store as a bar: pinned, in memory (not pinned), spilled, free; bytes each.

    Spilled bytes are on disk, so the bar's in-memory parts and free add up to capacity and
    spilled is drawn past it.
    """
    memory = max(summary.used - summary.pinned, 0)
    return {"capacity": summary.capacity, "pinned": summary.pinned, "memory": memory,
            "spilled": summary.spilled_bytes, "free": max(summary.capacity - summary.used, 0),
            "objects": summary.objects, "spilled_total": summary.spilled_total,
            "restored_total": summary.restored_total}


def dead_rows(now: p.Snapshot) -> list[dict]:
    return [{"node": d.node, "time": d.time, "reason": d.reason, "address": d.info.address}
            for d in now.dead]


def progress_rows(now: p.Snapshot) -> list[dict]:
    """A row per function: waiting, running, done, failed, retried (running: held by a
    worker now; waiting: submitted and neither running nor over)."""
    running: dict[str, int] = {}
    retried: dict[str, int] = {}
    for snap in now.node_snapshots:
        for _, function in snap.running:
            running[function] = running.get(function, 0) + 1
        for function, count in snap.retried:
            retried[function] = retried.get(function, 0) + count
    rows = []
    for tally in now.functions:
        busy = running.get(tally.function, 0)
        rows.append({"function": tally.function, "total": tally.submitted,
                     "waiting": max(tally.submitted - tally.done - tally.failed - busy, 0),
                     "running": busy, "done": tally.done, "failed": tally.failed,
                     "retried": tally.retried + retried.get(tally.function, 0)})
    return rows


def actor_rows(now: p.Snapshot) -> list[dict]:
    """A row per actor the head lists (live ones first): the Cluster page's Actors table."""
    return [{"actor": a.actor, "class": a.class_name, "name": a.name, "node": a.node,
             "state": a.state, "restarts": a.restarts, "detached": a.detached}
            for a in now.actors]


def object_rows(now: p.Snapshot) -> list[dict]:
    return [{"id": summary.id, "nbytes": summary.nbytes, "state": summary.state,
             "created_by": summary.created_by, "node": node, "copies": list(copies),
             "holders": list(holders)} for summary, node, copies, holders in now.objects]


def stream(events: Iterable[p.TaskEvent | p.TransferEvent], now: float) -> dict:
    """The task stream of the last STREAM_SECONDS (the newest STREAM_BARS events): a bar
    per task, by node and worker, and a line per copy between nodes; times in seconds
    before ``now``."""
    tasks, transfers = [], []
    recent = [event for event in events if event.end >= now - STREAM_SECONDS]
    for event in recent[-STREAM_BARS:]:
        if isinstance(event, p.TaskEvent):
            tasks.append({"lane": f"{event.node} w{event.worker}", "function":
                          event.function_name, "start": round(event.start - now, 3),
                          "end": round(event.end - now, 3), "ok": event.ok, "task": event.task_id})
        else:
            transfers.append({"src": event.src, "dst": event.dst, "nbytes": event.nbytes,
                              "start": round(event.start - now, 3),
                              "end": round(event.end - now, 3), "object": event.object_id})
    return {"seconds": STREAM_SECONDS, "tasks": tasks, "transfers": transfers}


def event_row(notice: p.Notice) -> dict:
    return {"time": notice.time, "kind": notice.kind, "subject": notice.subject,
            "text": notice.text, "traceback": traceback_of(notice.error)}


def traceback_of(error: bytes) -> str:
    """The remote traceback inside a pickled task error, read without unpickling it: the
    longest string in the pickle that holds a traceback ('' if none).

    >>> import pickle
    >>> traceback_of(pickle.dumps(("x", "Traceback (most recent call last):\\n  boom")))
    'Traceback (most recent call last):\\n  boom'
    >>> traceback_of(b"not a pickle")
    ''
    """
    found = ""
    try:
        for _, arg, _ in pickletools.genops(error):
            if isinstance(arg, str) and "Traceback (most recent call last)" in arg \
                    and len(arg) > len(found):
                found = arg
    except Exception:            # a truncated or foreign pickle: show what was found
        pass
    return found
