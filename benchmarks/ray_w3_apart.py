"""W3 on Ray with each variant in a cluster of its own: where the CPU of a round goes.

    python benchmarks/ray_w3_apart.py [--pairs 3] [--rounds 3]
                                      [--variants ray,ray-import,ray-session,plait-ray]
                                      [--settle 0]

benchmarks/engines.py runs W3 (1,000 no-ops and one get) on Ray alone and on plait-on-Ray,
each in its own process and its own Ray cluster (3 nodes of 1 CPU, loopback);
ray_w3_parts.py runs them interleaved in one cluster, and the two disagree (~0.75 against
~0.92). This runs each variant as engines.py does (its classes, a fresh cluster in a fresh
process, one warm round, then ``--rounds``), variants in turn, ``--pairs`` times, and prints
for every round its tasks/s and the CPU seconds each kind of process of the cluster spent
in it (psutil, over the driver's descendants: raylets, GCS, Ray's agents, workers), with
the number of Ray workers alive at its end. Variants:

- ``ray``: Ray alone, as engines.py.
- ``ray-import``: Ray alone, its no-op imports plait.engines.ray (as a plait task's worker).
- ``ray-session``: ... and makes the worker's plait session (RayEngine.in_task_session).
- ``ray-two``: Ray alone, num_returns=2 (the shape of a plait task: the report first).
- ``ray-two-held``: as ``ray-two``, the second refs kept across rounds (as plait keeps its
  reports until the trace reads them, up to PENDING_REPORTS).
- ``ray-driver``: Ray alone, with plait.init(engine="ray") done in the driver (its threads).
- ``ray-after-plait``: Ray alone in a cluster where plait-on-Ray ran one W3 first (its
  workers have plait's session, as in ray_w3_parts.py), plait still initialised.
- ``plait-ray``: plait-on-Ray, as engines.py.

``--settle S``: wait S seconds after the cluster starts, before the warm round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import engines  # noqa: E402  (benchmarks/engines.py: the systems as W3 runs them)

NOOPS = 1000
VARIANTS = ("ray", "ray-import", "ray-session", "ray-two", "ray-two-held", "ray-driver",
            "ray-after-plait", "plait-ray")


def noop():
    return None


def noop_import():
    import plait.engines.ray  # noqa: F401

    return None


def noop_session():
    from plait.engines.ray import RayEngine

    RayEngine.in_task_session()
    return None


def noop_two():
    return None, b"r" * 200


def kind(process) -> str:
    """What a process of the cluster is, from its command line."""
    try:
        line = " ".join(process.cmdline())
    except Exception:
        return "gone"
    if line.startswith("ray::"):
        return "agent" if "Agent" in line else "worker"
    for name in ("raylet", "gcs_server", "dashboard/agent.py", "runtime_env/agent",
                 "log_monitor", "dashboard.py", "monitor.py", "default_worker.py"):
        if name in line:
            return {"dashboard/agent.py": "agent", "runtime_env/agent": "agent",
                    "default_worker.py": "worker"}.get(name, name.split(".")[0])
    return "other:" + line[:40]


def snapshot(me) -> dict[int, tuple[str, float]]:
    """pid -> (kind, CPU seconds) of this process and its descendants."""
    import psutil

    found = {}
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            found[p.pid] = ("driver" if p.pid == me.pid else kind(p),
                            t.user + t.system)
        except psutil.Error:
            pass
    return found


def spent(before: dict, after: dict) -> dict[str, float]:
    """CPU seconds by kind between two snapshots (a process born meanwhile: all of it)."""
    by_kind: dict[str, float] = {}
    for pid, (what, cpu) in after.items():
        by_kind[what] = by_kind.get(what, 0.0) + cpu - before.get(pid, (what, 0.0))[1]
    return {k: round(v, 3) for k, v in sorted(by_kind.items())}


def run_variant(name: str, rounds: int, settle: float) -> None:
    import gc

    import psutil

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    system = engines.Plait("ray") if name == "plait-ray" else engines.RayAlone()
    if name in ("ray-driver", "ray-after-plait"):
        import plait

        plait.init(engine="ray", address=system.cluster.address)
        if name == "ray-after-plait":
            on_plait = plait.remote(noop)
            plait.get([on_plait.remote() for _ in range(NOOPS)])
    f = {"ray-import": noop_import, "ray-session": noop_session}.get(name, noop)
    if name.startswith("ray-two"):
        remote = system.ray.remote(noop_two).options(num_returns=2)
        held = []

        def round_() -> None:
            refs = [remote.remote() for _ in range(NOOPS)]
            system.ray.get([r[0] for r in refs])
            if name == "ray-two-held":
                held.extend(r[1] for r in refs)
    else:
        def round_() -> None:
            system.get([system.submit(f) for _ in range(NOOPS)])
    pauses = []

    def timed(phase: str, info: dict) -> None:
        if phase == "start":
            timed.began = time.perf_counter()
        else:
            pauses.append((info["generation"], time.perf_counter() - timed.began))

    me = psutil.Process()
    time.sleep(settle)
    try:
        for i in range(rounds + 1):
            before, load = snapshot(me), os.getloadavg()[0]
            pauses.clear()
            gc.callbacks.append(timed)
            start = time.perf_counter()
            round_()
            seconds = time.perf_counter() - start
            gc.callbacks.remove(timed)
            after = snapshot(me)
            workers = {pid for pid, (what, _) in after.items() if what == "worker"}
            born = [pid for pid in workers if pid not in before]
            print(json.dumps({"variant": name, "round": i, "tasks_per_s": NOOPS / seconds,
                              "load": load, "workers": len(workers), "born": len(born),
                              "cpu": spent(before, after),
                              "gc": [(g, round(s * 1000, 2)) for g, s in pauses if g]}),
                  flush=True)
    finally:
        if name in ("ray-driver", "ray-after-plait"):
            import plait

            plait.shutdown()
        system.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default="ray,ray-import,ray-session,plait-ray")
    parser.add_argument("--settle", type=float, default=0.0)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_variant(args.one, args.rounds, args.settle)
        return
    rows = []
    for _ in range(args.pairs):
        for name in args.variants.split(","):
            done = subprocess.run([sys.executable, __file__, "--one", name, "--rounds",
                                   str(args.rounds), "--settle", str(args.settle)],
                                  capture_output=True, text=True, timeout=900)
            found = [json.loads(line) for line in done.stdout.splitlines()
                     if line.startswith("{")]
            if done.returncode or not found:
                print(f"{name} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
            for row in found:
                print(json.dumps(row), flush=True)
            rows += found
    print("| variant | median tasks/s (timed rounds) | CPU s per round by kind (median) |")
    print("|---|---|---|")
    for name in args.variants.split(","):
        timed = [r for r in rows if r["variant"] == name and r["round"] > 0]
        if not timed:
            continue
        kinds = sorted({k for r in timed for k in r["cpu"]})
        cpu = ", ".join(f"{k} {statistics.median(r['cpu'].get(k, 0) for r in timed):.3f}"
                        for k in kinds)
        print(f"| {name} | {statistics.median(r['tasks_per_s'] for r in timed):,.0f} | {cpu} |")


if __name__ == "__main__":
    main()
