"""``/metrics``: the head's Snapshot in Prometheus' text exposition format (version 0.0.4),
for users who scrape it into Grafana.

Names follow Prometheus' conventions: a ``plait_`` prefix, ``_total`` on counters, base
units (bytes, seconds). Tasks are counted by function and state; store bytes by node and
state; transfers, spills and restores as counters.
"""

from __future__ import annotations

from plait.executor.wire import protocol as p

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def metrics_text(snapshot: p.Snapshot, progress: list[dict]) -> str:
    """The exposition text; ``progress`` is view.progress_rows of the same snapshot."""
    out: list[str] = []
    family(out, "plait_tasks", "gauge", "Tasks by function and state (waiting, running)",
           [({"function": r["function"], "state": s}, r[s])
            for r in progress for s in ("waiting", "running")])
    for state in ("submitted", "done", "failed", "retried"):
        key = "total" if state == "submitted" else state
        family(out, f"plait_tasks_{state}_total", "counter", f"Tasks {state} since the head "
               f"started", [({"function": r["function"]}, r[key]) for r in progress])
    family(out, "plait_transfer_bytes_total", "counter", "Bytes copied between nodes",
           [({}, snapshot.bytes_moved)])
    family(out, "plait_transfers_total", "counter", "Objects copied between nodes",
           [({}, snapshot.transfers)])
    stores = [(s.node, s.store) for s in snapshot.node_snapshots]
    family(out, "plait_store_bytes", "gauge", "Store bytes by node and state",
           [({"node": node, "state": state}, value) for node, store in stores
            for state, value in (("pinned", store.pinned),
                                 ("memory", store.used - store.pinned),
                                 ("spilled", store.spilled_bytes),
                                 ("free", store.capacity - store.used))])
    family(out, "plait_store_capacity_bytes", "gauge", "Store capacity by node",
           [({"node": node}, store.capacity) for node, store in stores])
    family(out, "plait_spill_bytes_total", "counter", "Bytes written to spill files",
           [({"node": node}, store.spilled_total) for node, store in stores])
    family(out, "plait_restore_bytes_total", "counter", "Bytes read back from spill files",
           [({"node": node}, store.restored_total) for node, store in stores])
    family(out, "plait_node_cpu_seconds_total", "counter", "CPU of a node and its workers",
           [({"node": s.node}, s.cpu_seconds) for s in snapshot.node_snapshots])
    family(out, "plait_node_resident_bytes", "gauge", "RSS of a node and its workers",
           [({"node": s.node}, s.rss) for s in snapshot.node_snapshots])
    family(out, "plait_nodes", "gauge", "Nodes alive and declared dead",
           [({"state": "alive"}, len(snapshot.nodes)), ({"state": "dead"}, len(snapshot.dead))])
    return "".join(out)


def family(out: list[str], name: str, kind: str, helptext: str,
           samples: list[tuple[dict[str, str], float]]) -> None:
    """One metric family: HELP, TYPE, then a line per sample.

    >>> lines = []
    >>> family(lines, "x_total", "counter", "X", [({"fn": 'a"b'}, 2)])
    >>> print("".join(lines), end="")
    # HELP x_total X
    # TYPE x_total counter
    x_total{fn="a\\"b"} 2
    """
    out.append(f"# HELP {name} {helptext}\n# TYPE {name} {kind}\n")
    for labels, value in samples:
        text = ",".join(f'{k}="{escape(str(v))}"' for k, v in labels.items())
        out.append(f"{name}{{{text}}} {_number(value)}\n" if text else
                   f"{name} {_number(value)}\n")


def escape(value: str) -> str:
    r"""A label value as the format wants it: backslash, quote and newline escaped.

    >>> escape('a\\b"c\nd')
    'a\\\\b\\"c\\nd'
    """
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
