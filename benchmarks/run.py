#!/usr/bin/env python
"""Side-by-side benchmark of plait, Ray and Dask on the same workloads.

    python benchmarks/run.py                      # all systems that import
    python benchmarks/run.py --quick              # smoke run, small sizes
    python benchmarks/run.py --systems plait,ray --workloads W1,W3 --repeat 3

The parent process never imports any of the systems: it starts one fresh
subprocess per system (``run.py --system NAME --json``), one after the other,
so systems cannot interfere (2 cores!) and W8 sees a truly cold start.
Workloads that need a bounded store (W6, W7, W9) get one more subprocess per
store size (``--store-memory BYTES``), after the default-store one, and those
that start their own multi-node clusters (W10, W11, W12) one each
(``--own-clusters``), last.  A child
reports one JSON line per workload as soon as it finishes, so a crash or a
timeout only loses the workloads that had not finished.  The parent prints a
markdown table of medians with plait/peer ratios and writes all samples to
benchmarks/results.json (or --out).
"""

import argparse
import gc
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict
from time import perf_counter

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from workloads import OWN, ALL_WORKLOADS, Config, group_by_setup  # noqa: E402  (light: numpy only)

SYSTEM_NAMES = ["plait", "ray", "dask"]
MARK = "@@plait-bench@@ "  # prefixes protocol lines; anything else on stdout is noise


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--systems", default=",".join(SYSTEM_NAMES),
                   help="comma-separated subset of plait,ray,dask (default: all; "
                        "systems that fail to import are reported as unavailable)")
    p.add_argument("--workloads", default=",".join(ALL_WORKLOADS),
                   help="comma-separated subset of " + ",".join(ALL_WORKLOADS))
    p.add_argument("--repeat", type=int, default=None,
                   help="timed repeats per measurement (default 5, 2 with --quick)")
    p.add_argument("--quick", action="store_true", help="fewer repeats, smaller sizes")
    p.add_argument("--out", default=os.path.join(HERE, "results.json"),
                   help="where to write the JSON results (default: benchmarks/results.json)")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="seconds before a system's subprocess is stopped (default 300)")
    p.add_argument("--system", choices=SYSTEM_NAMES,
                   help="run one system in this process (what the parent launches)")
    p.add_argument("--json", action="store_true",
                   help="with --system: emit JSON lines for the parent instead of a table")
    p.add_argument("--store-memory", type=int, default=None, metavar="BYTES",
                   help="with --system: start with a store of this size for every workload "
                        "(the parent passes it for W6/W7/W9; default: each workload's own)")
    p.add_argument("--own-clusters", action="store_true",
                   help="with --system: start nothing; the workloads (W10-W12) start and "
                        "stop their own clusters (the parent passes it for those)")
    args = p.parse_args(argv)
    args.systems = _split(args.systems, SYSTEM_NAMES, "system")
    args.workloads = _split(args.workloads, ALL_WORKLOADS, "workload")
    args.cfg = Config.make(quick=args.quick, repeat=args.repeat)
    return args


def _split(value, allowed, what):
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad:
        sys.exit(f"unknown {what}(s): {', '.join(bad)} (choose from {', '.join(allowed)})")
    return items


def _err(exc):
    return f"{type(exc).__name__}: {exc}".strip()


# --------------------------------------------------------------------------
# Child: run every selected workload on one system, in this process.


def run_system(name, workloads, cfg, emit, setup=None):
    """Load, start (timed: W8), measure idle memory, run workloads, stop.

    ``setup``: None (default store), a store size in bytes, or ``OWN`` (start
    nothing: the workloads start and stop their own clusters).  Every failure is
    reported through ``emit`` rather than raised, so the parent always gets as much
    as could be measured.  A system without an equivalent (``Unsupported``, from
    start or a workload) is reported as skipped: the table shows n/a.
    """
    import procmem
    from systems import SYSTEMS, Unsupported

    s = SYSTEMS[name]()
    t0 = perf_counter()
    try:
        s.load()
    except Exception as e:
        emit({"type": "unavailable", "error": _err(e)})
        return
    import_s = perf_counter() - t0
    emit({"type": "meta", "version": s.version})
    if setup == OWN:
        _run_workloads(s, workloads, cfg, emit)
        return

    t0 = perf_counter()
    try:
        s.start(setup)
    except Unsupported as e:
        for w in workloads:
            emit({"type": "skipped", "workload": w, "reason": str(e)})
        return
    except Exception as e:
        for w in workloads:
            emit({"type": "error", "workload": w, "error": "init failed: " + _err(e),
                  "traceback": traceback.format_exc()})
        _stop(s, emit)
        return
    init_s = perf_counter() - t0

    try:
        if "W8" in workloads:
            time.sleep(cfg.w8_idle_s)
            emit({"type": "rows", "workload": "W8", "rows": _w8_rows(init_s, import_s),
                  "procs": procmem.tree_memory()["procs"]})
        _run_workloads(s, [w for w in workloads if w != "W8"], cfg, emit)
    finally:
        _stop(s, emit)


def _run_workloads(s, workloads, cfg, emit):
    from systems import Unsupported
    from workloads import WORKLOADS

    for w in workloads:
        gc.collect()
        t0 = perf_counter()
        try:
            rows = WORKLOADS[w](s, cfg)
        except Unsupported as e:
            emit({"type": "skipped", "workload": w, "reason": str(e)})
        except Exception as e:
            emit({"type": "error", "workload": w, "error": _err(e),
                  "traceback": traceback.format_exc()})
        else:
            emit({"type": "rows", "workload": w, "rows": rows,
                  "wall_s": perf_counter() - t0})


def _w8_rows(init_s, import_s):
    """Cold init and idle-cluster memory (cluster = all descendants of the driver)."""
    import procmem
    from workloads import row

    mem = procmem.tree_memory()
    rows = [row("cold init", "s", "lower", [init_s]),
            row("import (not in init)", "s", "lower", [import_s]),
            row("idle cluster RSS", "MiB", "lower", [mem["rss_mib"]])]
    if mem["pss_mib"] is not None:
        rows.append(row("idle cluster PSS", "MiB", "lower", [mem["pss_mib"]]))
    rows += [row("cluster processes", "count", None, [mem["n_procs"]]),
             row("driver RSS, not in the sums", "MiB", "lower", [mem["driver_rss_mib"]])]
    return rows


def _stop(s, emit):
    try:
        s.stop()
    except Exception as e:
        emit({"type": "stop_error", "error": _err(e)})


def child_main(args):
    # Turn the parent's SIGTERM (timeout) into SystemExit so `finally` shuts
    # the cluster down instead of orphaning its processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.own_clusters:
        groups = [(OWN, args.workloads)]
    elif args.store_memory is not None:
        groups = [(args.store_memory, args.workloads)]
    else:  # one start per setup, in this process (the parent uses a child each)
        groups = group_by_setup(args.workloads, args.cfg)
    if args.json:
        def emit(msg):
            print(MARK + json.dumps(msg), flush=True)
    else:
        record = new_record()

        def emit(msg):
            apply(record, msg)
    for setup, workloads in groups:
        run_system(args.system, workloads, args.cfg, emit, setup)
    if not args.json:
        print(render({args.system: record}, [args.system], args.workloads))


# --------------------------------------------------------------------------
# Parent: one subprocess per system, then aggregate.


def new_record():
    return {"available": True, "version": None, "error": None, "workloads": {}}


def apply(record, msg):
    """Fold one child message into the system's record."""
    kind = msg.pop("type")
    if kind == "unavailable":
        record.update(available=False, error=msg["error"])
    elif kind == "meta":
        record["version"] = msg["version"]
    elif kind in ("rows", "error", "skipped"):
        record["workloads"][msg.pop("workload")] = msg
    elif kind == "stop_error":
        record["stop_error"] = msg["error"]


def run_children(name, args):
    """One child per setup (default store first, so W8 is cold; then one per
    bounded-store size; then one per own-cluster workload), merged into one record;
    the per-child details are kept under ``children``."""
    record = new_record()
    record["children"] = []
    for setup, workloads in group_by_setup(args.workloads, args.cfg):
        child = run_child(name, args, workloads, setup)
        record["workloads"].update(child.pop("workloads"))
        version = child.pop("version")
        record["version"] = record["version"] or version
        if not child["available"]:
            record.update(available=False, error=child["error"])
        record["children"].append({"setup": setup, "workloads": workloads, **child})
        if not record["available"]:  # the next child would fail the same import
            break
    record["wall_s"] = sum(c["wall_s"] for c in record["children"])
    return record


def run_child(name, args, workloads, setup=None):
    """Run ``run.py --system NAME --json`` in a fresh process and collect its record."""
    cmd = [sys.executable, os.path.abspath(__file__), "--system", name, "--json",
           "--workloads", ",".join(workloads)]
    if setup == OWN:
        cmd.append("--own-clusters")
    elif setup is not None:
        cmd += ["--store-memory", str(setup)]
    if args.repeat is not None:
        cmd += ["--repeat", str(args.repeat)]
    if args.quick:
        cmd.append("--quick")
    env = dict(os.environ)
    # Workers (spawned by each system, inheriting this env) must be able to
    # import bench_tasks by reference; REPO makes a source checkout of plait importable.
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (HERE, REPO, env.get("PYTHONPATH")) if p)
    record = new_record()
    t0 = perf_counter()
    with tempfile.TemporaryFile("w+") as errf:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=errf, text=True, start_new_session=True)

        def reader():
            for line in proc.stdout:
                if line.startswith(MARK):
                    msg = json.loads(line[len(MARK):])
                    if msg.get("workload"):
                        status = {"error": "error", "skipped": "n/a"}.get(msg["type"], "ok")
                        _log(f"  {name} {msg['workload']}: {status} ({perf_counter() - t0:.0f}s)")
                    apply(record, msg)

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        try:
            proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            record["timeout"] = f"stopped after {args.timeout:.0f}s"
            _log(f"  {name}: timeout after {args.timeout:.0f}s, stopping it")
            _terminate(proc)
        thread.join(timeout=10)
        errf.seek(0)
        stderr_tail = errf.read().splitlines()[-30:]
    record.update(returncode=proc.returncode, wall_s=perf_counter() - t0)
    if proc.returncode != 0:
        record["stderr_tail"] = stderr_tail
        if not record["workloads"] and record["available"] and not record["version"]:
            record.update(available=False, error=f"child exited with {proc.returncode}: "
                          + (stderr_tail[-1] if stderr_tail else "no output"))
    for w in workloads:  # whatever never reported (crash/timeout)
        record["workloads"].setdefault(
            w, {"error": record.get("timeout") or f"no result (child exit {proc.returncode})"})
    return record


def _terminate(proc):
    """SIGTERM the child (it shuts its cluster down), then SIGKILL its session."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # own session: start_new_session=True
        except ProcessLookupError:
            pass
        proc.wait()


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Table


def fmt(v):
    if float(v).is_integer() and abs(v) < 1e6:
        return f"{int(v):,}"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def fmt_ratio(r):
    if r < 0.01:
        return "<0.01x"
    return f"{r:.0f}x" if r >= 100 else f"{r:.2f}x"


def render(results, systems, workloads):
    """Markdown table: one row per metric, medians per system, plait/peer ratios."""
    ok = [n for n in systems if results[n]["available"]]
    peers = [n for n in ok if n != "plait"] if "plait" in ok else []
    header = ["Workload", "Metric", *systems, *(f"plait/{p}" for p in peers)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    notes = []
    not_applicable = {}  # (system, reason) -> workloads

    noted = {}  # (system, workload, message) -> note number

    def cell_error(name, w, message=None):
        """ERR[n] plus the error's kind the first time, ERR[n] after that."""
        error = " ".join((message or results[name]["workloads"][w]["error"]).split())
        key = (name, w, error)
        if key in noted:
            return f"ERR[{noted[key]}]"
        notes.append(f"{name} {w}: {error[:500]}")
        noted[key] = len(notes)
        kind = error.split(":")[0][:30]
        return f"ERR[{len(notes)}] {kind}"

    def not_available(name, w, reason):
        ws = not_applicable.setdefault((name, reason), [])
        ws += [] if w in ws else [w]
        return "n/a"

    for w in workloads:
        metrics = {}  # (metric, unit, better) in first-seen order
        for n in ok:
            for r in results[n]["workloads"].get(w, {}).get("rows", []):
                metrics.setdefault(r["metric"], (r["unit"], r["better"]))
        if not metrics:
            metrics = {"(no result)": ("", None)}
        for metric, (unit, better) in metrics.items():
            medians, cells = {}, []
            for n in systems:
                rec = results[n]
                wres = rec["workloads"].get(w, {})
                if not rec["available"]:
                    cells.append("unavailable")
                elif "error" in wres:
                    cells.append(cell_error(n, w))
                elif "skipped" in wres:
                    cells.append(not_available(n, w, wres["reason"]))
                else:  # a metric only some systems report (e.g. plait's own spill figures)
                    r = next((r for r in wres.get("rows", []) if r["metric"] == metric), None)
                    if r is not None and r.get("error"):      # this row failed, others stand
                        cells.append(cell_error(n, w, r["error"]))
                    elif r is not None and r.get("na"):       # no equivalent, with a reason
                        cells.append(not_available(n, w, r["na"]))
                    else:
                        m = None if r is None else r["median"]
                        medians[n] = m
                        cells.append("n/a" if m is None else fmt(m))
            for p in peers:
                a, b = medians.get("plait"), medians.get(p)
                cells.append(fmt_ratio(a / b) if better and a is not None and b else "—")
            label = metric + (f" ({unit}, {better} is better)" if better
                              else f" ({unit})" if unit else "")
            lines.append(f"| {w} | {label} | " + " | ".join(cells) + " |")

    out = ["\n".join(lines), ""]
    if peers:
        out.append("Cells are medians. Ratios are plait/peer of the median: for time and "
                   "memory rows (lower is better) < 1x means plait is better; for tasks/s "
                   "and GB/s (higher is better) > 1x means plait is faster. n/a: the system "
                   "has no equivalent, or doesn't report that figure.")
    for n in systems:
        rec = results[n]
        if not rec["available"]:
            out.append(f"- {n}: unavailable ({rec['error']})")
        elif rec.get("version"):
            out.append(f"- {n} {rec['version']}")
    out += [f"- n/a for {n} ({', '.join(ws)}): {reason}"
            for (n, reason), ws in not_applicable.items()]
    out += [f"- [{i}] {note}" for i, note in enumerate(notes, 1)]
    return "\n".join(out)


def main(argv=None):
    args = parse_args(argv)
    if args.system:
        return child_main(args)
    results, t0 = {}, perf_counter()
    for name in args.systems:
        _log(f"running {name} ...")
        results[name] = run_children(name, args)
        _log(f"  {name}: done in {results[name]['wall_s']:.0f}s")
    table = render(results, args.systems, args.workloads)
    print(table)
    doc = {
        "meta": {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv[1:],
                 "python": platform.python_version(), "platform": platform.platform(),
                 "cpu_count": os.cpu_count(), "wall_s": perf_counter() - t0},
        "config": asdict(args.cfg),
        "workloads": args.workloads,
        "results": results,
        "table": table,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)
    _log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
