"""Transfer chaos: large objects cross hosts over the TCP stream path while nodes die; every
checksum is checked and nothing may be left behind.

    python benchmarks/transfer_chaos.py --seconds 120 --seed 1 [--modes plain encrypted]

For each mode (``plain``: an unkeyed cluster, runs sent in the clear; ``encrypted``: a
keyed one, every chunk sealed with AES-GCM) the soak starts a head and 3 more nodes of 1
worker as processes of their own, each with its own ``PLAIT_HOST_ID`` (benchmarks/systems.py,
``_PlaitProcesses``), so that every copy of a large object (>= 16 MiB) from node to node
goes over TCP streams of its own (plait/executor/wire/stream.py), and runs two phases:

- SIGKILL soak, ``--seconds`` long: rounds of one or two producers, each pinned to a node
  (``.options(node=...)``), making a 20-80 MiB array whose content follows from a seed, and
  one to three consumers each pinned to another node computing its CRC32 (sometimes the
  driver gets the array itself, a pull from another host over streams too). Every CRC is
  checked against the one the driver computes. Meanwhile a killer thread SIGKILLs a
  non-head node every ``--interval`` seconds, mostly one that the running round uses (a
  holder or a puller), and starts a replacement the way the launcher starts its nodes (a
  fresh node id joining the head, a host of its own).
- kill points, a few rounds per point: ``PLAIT_KILL_AT=mid-transfer@node-2`` (node-2 dies as
  the first bytes of a run reach it over a stream: a puller dying mid-transfer) and
  ``mid-transfer@node-2:2`` (the second run: the first one's thread is reading still), with
  ``PLAIT_KILL_ONCE`` so only one process dies; the once-file proves it happened.

Every round's results are awaited with a timeout (``--round-timeout``); a round that runs
out is "stuck", and the nodes' states (kill -USR1) and logs are reported. A failed result is
"legitimate" only when it is an ObjectLostError (or a subclass) in a round during which (or
up to KILL_NOTICE seconds before which) the producer's node, the object's first holder,
was killed; any other failure, and every wrong checksum, is "lost". After each phase, once
the cluster settled: its invariants (``plait.util.validate_state``), the objects still
pinned while the last rounds' refs are held but nothing reads them (a holder that kept a
pin for a pull that ended, or for a puller that died), what the stores still hold once
every ref is dropped, node thread counts; and after shutdown the leaks: node processes left, /dev/shm/plait-<session>-* segments left by nodes
that stopped normally, spill/run files, ``plait-stream-*`` threads and sockets in the driver.
A JSON summary goes to ``--json`` (benchmarks/transfer_chaos.json by default).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import glob
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter, deque
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))
import plait  # noqa: E402
import plait.util  # noqa: E402
from chaos import leaks, say_if_changed, source_stamp, sources_changed  # noqa: E402
from systems import _PlaitProcesses  # noqa: E402

MIB = 1 << 20
SIZES_MIB = (20, 80)
NODES = 4
SETTLE_SECONDS = 8.0          # after the last round: pins and threads should be let go by then
KILL_POINTS = ("mid-transfer@node-2", "mid-transfer@node-2:2")
KILL_NOTICE = 5.0             # a node killed this long before a round may still be listed
KEEP_ROUNDS = 4               # the last rounds' objects stay referenced for the pin check


# -- the tasks -----------------------------------------------------------------------------

def pattern(seed: int, nbytes: int) -> np.ndarray:
    """``nbytes`` bytes that differ for every seed and at every 8-byte offset (a run written
    at the wrong place changes the CRC), cheap to make."""
    words = np.arange(-(-nbytes // 8), dtype=np.uint64)
    words *= np.uint64(2 * seed + 1)
    words += np.uint64(seed) << np.uint64(40)
    return words.view(np.uint8)[:nbytes]


@plait.remote
def produce(seed: int, nbytes: int) -> np.ndarray:
    return pattern(seed, nbytes)


@plait.remote
def checksum(data: np.ndarray) -> tuple[int, int]:
    return zlib.crc32(data), data.nbytes


# -- the cluster ---------------------------------------------------------------------------

class Cluster(_PlaitProcesses):
    """The launcher of benchmarks/systems.py, able to start one more node the way it starts
    its own (a fresh id, a host of its own, joining the head) and to tell, after stopping
    the nodes, which /dev/shm segments they left before it removes them."""

    def __init__(self, nodes: int, encrypted: bool) -> None:
        super().__init__(nodes, encrypted)
        self.names: list[str] = []
        self.killed: set[str] = set()
        self.lock = threading.Lock()
        self.exit_codes: dict[str, int | None] = {}
        self.segments_left: list[str] = []

    def __enter__(self) -> str:
        address = super().__enter__()
        self.head = f"tcp://{address}"
        self.key_file = os.path.join(self.tmp, "cluster.key") if self.encrypted else ""
        self.next_index = self.nodes
        return address

    def _launch(self, config, host: str):
        process = super()._launch(config, host)
        self.names.append(config.node)          # in step with self.processes
        return process

    def add_node(self) -> str:
        from plait.executor.wire.config import NodeConfig
        from plait.store.arena import default_capacity

        with self.lock:
            k = self.next_index
            self.next_index += 1
            node = f"node-{k}"
            config = NodeConfig(
                self.session, node, 1, default_capacity(),
                tempfile.mkdtemp(prefix=f"{node}-", dir=self.tmp), os.getpid(),
                os.path.join(self.tmp, f"{node}-spill"), head_address=self.head,
                client_address="", transfer_address="tcp://127.0.0.1:*",
                key_file=self.key_file)
            self.processes.append(self._launch(config, f"bench-other-{k}"))
        return node

    def process(self, node: str):
        with self.lock:
            return self.processes[self.names.index(node)]

    def live(self) -> list[str]:
        with self.lock:
            return [n for n, p in zip(self.names, self.processes, strict=True)
                    if p.poll() is None]

    def kill(self, node: str) -> bool:
        proc = self.process(node)
        if proc.poll() is not None:
            return False
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        self.killed.add(node)
        return True

    def __exit__(self, *exc):
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15.0
        for node, proc in zip(self.names, self.processes, strict=True):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except Exception:
                pass
            self.exit_codes[node] = proc.poll()
        time.sleep(0.5)              # workers of a node that went: their own exit
        self.segments_left = sorted(os.path.basename(p) for p in
                                    glob.glob(f"/dev/shm/plait-{self.session}-*"))
        self.processes_left = leaks(self.session)["processes"]
        return super().__exit__(*exc)

    def log_tail(self, node: str, chars: int = 3000) -> str:
        path = os.path.join(self.tmp, f"{node}.log")
        try:
            with open(path, errors="replace") as f:
                return f.read()[-chars:]
        except OSError:
            return ""


def threads_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return int(next(line for line in f if line.startswith("Threads:")).split()[1])
    except (OSError, StopIteration):
        return -1


def driver_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


def stream_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("plait-stream"))


# -- the killer ----------------------------------------------------------------------------

class Killer(threading.Thread):
    """SIGKILLs a non-head node every few seconds, mostly one the running round uses, and
    starts a replacement. Never calls plait (the driver's session is the main thread's)."""

    def __init__(self, cluster: Cluster, rng: random.Random, interval: tuple[float, float],
                 replace: bool, min_nodes: int) -> None:
        super().__init__(name="transfer-chaos-killer", daemon=True)
        self.cluster, self.rng, self.interval = cluster, rng, interval
        self.replace, self.min_nodes = replace, min_nodes
        self.done = threading.Event()
        self.round: dict = {}               # set by the driver: the round's number and nodes
        self.events: list[dict] = []
        self.findings: list[str] = []

    def run(self) -> None:
        while not self.done.wait(self.rng.uniform(*self.interval)):
            try:
                self.strike()
            except Exception as error:       # the soak goes on; the report says why
                self.findings.append(f"killer: {type(error).__name__}: {error}")

    def strike(self) -> None:
        live = [n for n in self.cluster.live() if n != "node-0"]
        if len(live) + 1 <= self.min_nodes and not self.replace:
            return
        current = dict(self.round)
        involved = [n for n in current.get("nodes", ()) if n in live]
        target = self.rng.choice(involved if involved and self.rng.random() < 0.8 else live) \
            if live else None
        if target is None:
            return
        role = ("holder" if target in current.get("producers", ()) else
                "puller" if target in current.get("nodes", ()) else "idle")
        if not self.cluster.kill(target):
            return
        self.events.append({"t": time.time(), "node": target, "kind": "SIGKILL",
                            "round": current.get("number"), "role": role})
        if self.replace and not self.done.is_set():
            node = self.cluster.add_node()
            self.events.append({"t": time.time(), "node": node, "kind": "started"})


# -- rounds --------------------------------------------------------------------------------

@dataclasses.dataclass
class Outcome:
    ok: int = 0
    wrong: list = dataclasses.field(default_factory=list)        # lost: wrong value
    lost: list = dataclasses.field(default_factory=list)         # lost: failed, unexplained
    legit: list = dataclasses.field(default_factory=list)        # failed after its holder died
    stuck: list = dataclasses.field(default_factory=list)
    errors: Counter = dataclasses.field(default_factory=Counter)
    bytes_checked: int = 0


EXPECTED: dict[tuple[int, int], int] = {}


def expected_crc(seed: int, nbytes: int) -> int:
    key = (seed, nbytes)
    if key not in EXPECTED:
        EXPECTED[key] = zlib.crc32(pattern(seed, nbytes))
    return EXPECTED[key]


def live_plait_nodes() -> list[str]:
    return [n.id for n in plait.nodes() if n.get("Alive", True)]


def run_round(number: int, rng: random.Random, cluster: Cluster, killer: Killer | None,
              timeout: float, out: Outcome, producers_on: list[str] | None = None,
              consumers_on: list[str] | None = None) -> list:
    """One round: producers and their consumers, every result awaited (``timeout`` for the
    lot) and classified. Returns the producers' refs (the caller keeps the last few, to
    see that no holder keeps them pinned once nothing reads them)."""
    from plait.errors import ObjectLostError

    nodes = live_plait_nodes()
    jobs = []                        # (ref, kind, seed, nbytes, producer node, consumer node)
    made = []
    for _ in range(rng.choice((1, 1, 2))):
        if producers_on is not None:
            producer = rng.choice([n for n in producers_on if n in nodes] or nodes)
        else:
            producer = rng.choice(nodes)
        others = [n for n in nodes if n != producer]
        if consumers_on is not None:
            others = [n for n in consumers_on if n in others] or others
        if not others:
            continue
        seed = rng.randrange(1 << 30)
        nbytes = rng.randint(*SIZES_MIB) * MIB + rng.randrange(1, 8192)
        data = produce.options(node=producer).remote(seed, nbytes)
        for consumer in rng.sample(others, k=min(len(others), rng.randint(1, 3))):
            jobs.append((checksum.options(node=consumer).remote(data), "consumer", seed, nbytes,
                         producer, consumer))
        if producer != "node-0" and rng.random() < 0.25:
            jobs.append((data, "driver", seed, nbytes, producer, "driver"))
        made.append(data)
    if killer is not None:
        killer.round = {"number": number, "producers": {j[4] for j in jobs},
                        "nodes": {j[4] for j in jobs} | {j[5] for j in jobs}}
    began = time.time()
    refs = [job[0] for job in jobs]
    for seed, nbytes in {(j[2], j[3]) for j in jobs}:
        expected_crc(seed, nbytes)   # while the tasks run
    ready, pending = plait.wait(refs, num_returns=len(refs), timeout=timeout)
    waiting = set(pending)
    results, value = [], None
    for ref, *_ in jobs:             # the gets first: the driver's own are pulls too
        if ref in waiting:
            results.append(None)
            continue
        try:
            results.append(plait.get(ref, timeout=timeout))
        except plait.GetTimeoutError:
            waiting.add(ref)                 # ready, yet its get could not finish
            results.append(None)
        except Exception as error:
            results.append(error)
    ended = time.time()
    if killer is not None:
        killer.round = {}
    kills = [e for e in (killer.events if killer is not None else ())
             if e["kind"] == "SIGKILL" and began - KILL_NOTICE <= e["t"] <= ended]
    killed = {e["node"] for e in kills}
    if waiting:
        dump_states(cluster)
        time.sleep(1.0)
        out.stuck.append({"round": number, "pending": len(waiting), "of": len(refs),
                          "jobs": [j[1:] for j in jobs], "kills": kills,
                          "logs": {n: cluster.log_tail(n) for n in cluster.names}})
        out.errors["stuck"] += len(waiting)
    for (ref, kind, seed, nbytes, producer, consumer), value in zip(jobs, results,
                                                                    strict=True):
        if ref in waiting:
            continue
        want = expected_crc(seed, nbytes)
        where = f"round {number}: {kind} on {consumer} of {nbytes} B made on {producer}"
        if isinstance(value, Exception):
            error = value
            name = type(error).__name__
            cause = getattr(error, "cause", None)
            if cause is not None:
                name = f"{name}<{type(cause).__name__}>"
            out.errors[name] += 1
            record = f"{where}: {name}: {str(error)[:300]}"
            holder_died = producer in killed
            if holder_died and isinstance(error, ObjectLostError):
                out.legit.append(record)
            else:
                out.lost.append(f"{record} (killed this round: {sorted(killed) or 'none'})")
            continue
        if kind == "driver":
            got, size = zlib.crc32(value), value.nbytes
        else:
            got, size = value
        if got != want or size != nbytes:
            out.wrong.append(f"{where}: CRC {got} size {size}, expected {want} size {nbytes}")
        else:
            out.ok += 1
            out.bytes_checked += nbytes
    del refs, ready, pending, jobs, results, value
    return made


def dump_states(cluster: Cluster) -> None:
    """Every live node prints its tables to its log (kill -USR1)."""
    for node in cluster.live():
        with contextlib.suppress(ProcessLookupError):
            os.kill(cluster.process(node).pid, signal.SIGUSR1)


def left_in_stores(cluster: Cluster, pinned_only: bool = False) -> dict[str, list[str]]:
    """Objects the live nodes still hold once every ref is dropped (from their state dumps):
    a pin nobody lets go of keeps an object, and its memory, for ever. ``pinned_only``:
    the objects with pins, while refs are held but nothing reads them (a holder still
    pinning an object for a pull that ended, or for a puller that died)."""
    sizes = {n: os.path.getsize(os.path.join(cluster.tmp, f"{n}.log")) for n in cluster.live()}
    dump_states(cluster)
    time.sleep(1.5)
    found = {}
    for node, offset in sizes.items():
        with open(os.path.join(cluster.tmp, f"{node}.log"), errors="replace") as f:
            f.seek(offset)
            text = f.read()
        objects = re.findall(r"^  object (\S+) (\d+) B pins (\d+)", text, re.M)
        if pinned_only:
            objects = [o for o in objects if int(o[2]) > 0]
        if objects:
            found[node] = [f"{oid} {int(size) // MIB} MiB pins {pins}"
                           for oid, size, pins in objects]
    return found


def settle(cluster: Cluster, recent: deque) -> tuple[list[str], dict, dict]:
    """After the last round: the cluster's invariants, the objects still pinned while the
    last rounds' refs are held and nothing reads them, then (the refs dropped) what the
    stores still hold."""
    gc.collect()
    time.sleep(SETTLE_SECONDS)
    try:
        violations = plait.util.validate_state()     # (also sends the driver's unpins)
    except Exception as error:
        violations = [f"validate_state: {type(error).__name__}: {error}"]
    time.sleep(1.0)
    pinned = left_in_stores(cluster, pinned_only=True)
    recent.clear()
    gc.collect()
    plait.nodes()                                    # a call: the frees go to the head
    time.sleep(SETTLE_SECONDS / 2)
    return violations, pinned, left_in_stores(cluster)


# -- phases --------------------------------------------------------------------------------

def soak(mode: str, seconds: float, rng: random.Random, args) -> dict:
    """Rounds under the killer for ``seconds``."""
    out = Outcome()
    sockets_before = driver_sockets()
    rounds = 0
    report: dict = {"phase": "sigkill", "mode": mode}
    cluster = Cluster(args.nodes, encrypted=mode == "encrypted")
    with cluster as address:
        plait.init(address=address)
        session_ok = True
        try:
            run_round(0, rng, cluster, None, args.round_timeout, out)     # warm: no faults
            threads_start = {n: threads_of(cluster.process(n).pid) for n in cluster.live()}
            killer = Killer(cluster, rng, tuple(args.interval), not args.no_replace,
                            min_nodes=2)
            killer.start()
            start = time.monotonic()
            recent: deque = deque(maxlen=KEEP_ROUNDS)
            while time.monotonic() - start < seconds:
                rounds += 1
                recent.append(run_round(rounds, rng, cluster, killer, args.round_timeout, out))
                if len(live_plait_nodes()) < 2:
                    report["stopped_early"] = "fewer than 2 nodes left"
                    break
                if rounds % 5 == 0:
                    print(f"  {mode} round {rounds}: ok {out.ok}, wrong {len(out.wrong)}, "
                          f"lost {len(out.lost)}, legit {len(out.legit)}, stuck "
                          f"{len(out.stuck)}, kills "
                          f"{sum(e['kind'] == 'SIGKILL' for e in killer.events)}", flush=True)
            killer.done.set()
            killer.join(60)
            violations, pinned, stores = settle(cluster, recent)
            threads_end = {n: threads_of(cluster.process(n).pid) for n in cluster.live()}
            nodes_at_end = live_plait_nodes()
        except BaseException:
            session_ok = False
            raise
        finally:
            with contextlib.suppress(Exception):
                plait.shutdown()
            if not session_ok:
                print(cluster.logs(), file=sys.stderr)
    time.sleep(0.5)
    report.update(_outcome(out), rounds=rounds, kills=[e for e in killer.events
                                                      if e["kind"] == "SIGKILL"],
                  nodes_started=sum(e["kind"] == "started" for e in killer.events),
                  kill_roles=dict(Counter(e["role"] for e in killer.events
                                          if e["kind"] == "SIGKILL")),
                  findings=killer.findings, violations=violations,
                  pinned_unread=pinned, left_in_stores=stores, node_threads={"after_warmup": threads_start,
                                                       "at_end": threads_end},
                  nodes_at_end=nodes_at_end,
                  **_leaks(cluster, sockets_before))
    return report


def kill_point(mode: str, spec: str, rounds: int, rng: random.Random, args) -> dict:
    """``rounds`` rounds with ``spec`` armed, producers on node-1/node-3, consumers pulling
    on node-2 (and the others): node-2 dies as a stream's bytes reach it."""
    out = Outcome()
    sockets_before = driver_sockets()
    marker = os.path.join(tempfile.mkdtemp(prefix="transfer-chaos-"), "killed")
    saved = {k: os.environ.get(k) for k in ("PLAIT_KILL_AT", "PLAIT_KILL_ONCE")}
    os.environ.update(PLAIT_KILL_AT=spec, PLAIT_KILL_ONCE=marker)
    cluster = Cluster(args.nodes, encrypted=mode == "encrypted")
    try:
        with cluster as address:
            for name, value in saved.items():       # the driver's own pulls: never armed
                os.environ.pop(name) if value is None else os.environ.update({name: value})
            plait.init(address=address)
            try:
                recent = deque(maxlen=KEEP_ROUNDS)
                for number in range(1, rounds + 1):
                    recent.append(run_round(
                        number, rng, cluster, None, args.round_timeout, out,
                        producers_on=["node-1", "node-3"],
                        consumers_on=["node-2", "node-0", "node-3", "node-1"]))
                violations, pinned, stores = settle(cluster, recent)
                nodes_at_end = live_plait_nodes()
                threads_end = {n: threads_of(cluster.process(n).pid) for n in cluster.live()}
            finally:
                with contextlib.suppress(Exception):
                    plait.shutdown()
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None) if value is None else os.environ.update({name: value})
    fired = Path(marker).read_text().strip() if os.path.exists(marker) else ""
    shutil.rmtree(os.path.dirname(marker), ignore_errors=True)
    return {"phase": "killpoint", "mode": mode, "spec": spec, **_outcome(out),
            "rounds": rounds, "fired": fired, "violations": violations,
            "pinned_unread": pinned, "left_in_stores": stores, "nodes_at_end": nodes_at_end,
            "node_threads_at_end": threads_end, **_leaks(cluster, sockets_before)}


def _outcome(out: Outcome) -> dict:
    return {"ok": out.ok, "gib_checked": round(out.bytes_checked / (1 << 30), 2),
            "wrong": out.wrong, "lost": out.lost, "legit": out.legit, "stuck": out.stuck,
            "errors": dict(out.errors)}


def _leaks(cluster: Cluster, sockets_before: int) -> dict:
    killed = {f"plait-{cluster.session}-{n}" for n, code in cluster.exit_codes.items()
              if n in cluster.killed or (code is not None and code < 0)}   # SIGKILLed
    after = leaks(cluster.session)
    return {"exit_codes": cluster.exit_codes,
            "leaks": {
                "processes_at_stop": cluster.processes_left,
                "processes": after["processes"],
                "segments_of_stopped_nodes": [s for s in cluster.segments_left
                                              if s not in killed],
                "segments_of_killed_nodes": [s for s in cluster.segments_left if s in killed],
                "segments_after_cleanup": after["segments"],
                "spill_and_run_files": after["spill_and_run_files"],
                "driver_stream_threads": stream_threads(),
                "driver_sockets_gained": driver_sockets() - sockets_before}}


def failures(report: dict) -> int:
    leaked = report["leaks"]
    return (len(report["wrong"]) + len(report["lost"]) + len(report["stuck"])
            + len(report["violations"]) + sum(len(v) for v in report["left_in_stores"].values())
            + sum(len(v) for v in report["pinned_unread"].values())
            + len(leaked["processes_at_stop"]) + len(leaked["processes"])
            + len(leaked["segments_of_stopped_nodes"]) + len(leaked["segments_after_cleanup"])
            + len(leaked["spill_and_run_files"]) + len(leaked["driver_stream_threads"])
            + max(0, leaked["driver_sockets_gained"])
            + (report["phase"] == "killpoint" and not report["fired"]))


def summarise(report: dict) -> str:
    leaked = report["leaks"]
    head = f"{report['mode']} {report['phase']}" + (f" {report['spec']}"
                                                   if report["phase"] == "killpoint" else "")
    lines = [f"{head}: rounds {report['rounds']}, results ok {report['ok']} "
             f"({report['gib_checked']} GiB checked), wrong {len(report['wrong'])}, lost "
             f"{len(report['lost'])}, legitimate failures {len(report['legit'])}, stuck "
             f"{len(report['stuck'])}, errors {report['errors']}"]
    if report["phase"] == "sigkill":
        lines.append(f"  kills {len(report['kills'])} {report['kill_roles']}, nodes started "
                     f"{report['nodes_started']}, nodes at end {report['nodes_at_end']}")
        lines.append(f"  node threads after warm-up {report['node_threads']['after_warmup']},"
                     f" at end {report['node_threads']['at_end']}")
    else:
        lines.append(f"  kill point fired: {report['fired'] or 'NO'}; nodes at end "
                     f"{report['nodes_at_end']}; node threads at end "
                     f"{report['node_threads_at_end']}")
    lines.append(f"  invariant violations {len(report['violations'])}, objects pinned with no "
                 f"reader {report['pinned_unread']}, objects left in stores once unreferenced "
                 f"{ {n: len(v) for n, v in report['left_in_stores'].items()} }")
    lines.append(f"  leaks: processes {len(leaked['processes_at_stop'])}/"
                 f"{len(leaked['processes'])}, segments of nodes stopped normally "
                 f"{leaked['segments_of_stopped_nodes']}, segments after cleanup "
                 f"{len(leaked['segments_after_cleanup'])}, files "
                 f"{len(leaked['spill_and_run_files'])}, driver stream threads "
                 f"{leaked['driver_stream_threads']}, driver sockets gained "
                 f"{leaked['driver_sockets_gained']}; exit codes {report['exit_codes']}")
    for kind in ("wrong", "lost", "violations"):
        lines += [f"  {kind}: {w}" for w in report[kind]]
    lines += [f"  legit: {w}" for w in report["legit"][:5]]
    lines += [f"  left in {n}: {v[:5]}" for n, v in report["left_in_stores"].items()]
    for stuck in report["stuck"]:
        lines.append(f"  stuck: round {stuck['round']}: {stuck['pending']} of {stuck['of']} "
                     f"pending, jobs {stuck['jobs']}, kills {stuck['kills']}")
        for node, tail in stuck["logs"].items():
            if tail.strip():
                lines.append(f"    --- {node}.log:\n" + "\n".join(
                    "      " + line for line in tail.strip().splitlines()[-40:]))
    lines += [f"  finding: {f}" for f in report.get("findings", [])]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0,
                        help="how long rounds keep starting under SIGKILLs, per mode")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--modes", nargs="+", default=["plain", "encrypted"],
                        choices=["plain", "encrypted"])
    parser.add_argument("--nodes", type=int, default=NODES, help="head included (3-4)")
    parser.add_argument("--interval", type=float, nargs=2, default=(3.0, 8.0),
                        metavar=("MIN", "MAX"), help="seconds between SIGKILLs")
    parser.add_argument("--round-timeout", type=float, default=60.0,
                        help="a round's results not all in by then: stuck")
    parser.add_argument("--killpoint-rounds", type=int, default=4,
                        help="rounds per kill point (0: skip that phase)")
    parser.add_argument("--no-replace", action="store_true",
                        help="no replacement for a killed node (stop below 2 nodes)")
    parser.add_argument("--json", default=str(Path(__file__).with_name("transfer_chaos.json")))
    args = parser.parse_args()
    stamp = source_stamp()
    reports = []
    for index, mode in enumerate(args.modes):
        rng = random.Random(args.seed * 1000 + index)
        print(f"{mode}: SIGKILL soak for {args.seconds:.0f} s...", flush=True)
        reports.append(soak(mode, args.seconds, rng, args))
        print(summarise(reports[-1]), flush=True)
        if args.killpoint_rounds > 0:
            for spec in KILL_POINTS:
                print(f"{mode}: kill point {spec}...", flush=True)
                reports.append(kill_point(mode, spec, args.killpoint_rounds, rng, args))
                print(summarise(reports[-1]), flush=True)
    total = sum(map(failures, reports))
    changed = sources_changed(stamp, source_stamp())
    Path(args.json).write_text(json.dumps({
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "seed": args.seed, "failures": total, "sources_changed": changed,
        "reports": reports}, indent=1, default=str))
    print(f"failures (wrong + lost + stuck + violations + left + leaks): {total}")
    say_if_changed(changed)
    return 1 if total or changed else 0


if __name__ == "__main__":
    sys.exit(main())
