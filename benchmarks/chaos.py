"""Chaos soak: three workloads run while a killer SIGKILLs, SIGTERMs, segfaults and stops
nodes and workers; every result is checked exactly and nothing may be left behind.

    python benchmarks/chaos.py --seconds 600 --seeds 1 2 3 [--pressure-seconds 300]

Per seed: a quiet round, then rounds under faults for ``--seconds``; after every round the
cluster checks its own invariants (``plait.util.validate_state``) and any violation is
reported with the state that broke it. Then a memory-pressure soak: random DAGs whose
objects add up to ten times the store, tasks reading spilled inputs, gets in random order,
every value checksummed. A get that times out counts as stuck (and the nodes print their
state to stderr); a wrong or failed result counts as lost.

Data flow::

    driver (main thread)              killer (thread, /proc and signals only)
    round: tree -> pairs -> tiny      every 2-6 s: pick a kind and a target
      checked exactly, one by one       SIGKILL / SIGTERM / SIGSEGV / SIGSTOP (then SIGCONT)
    plait.trace() counts executions     a non-head node that died: a new node joins the head

A round of the three workloads first runs on a quiet cluster (the runtime without
faults), then rounds repeat under the killer until ``--seconds`` have passed. The cluster
is 3 nodes of 1 worker and 512 MiB each, so the soak fits a shared 2-core machine.

The killer never calls plait (the driver's session belongs to the main thread): it finds
node processes among the driver's children and workers among theirs, and starts a
replacement node itself, as ``plait start --address`` would on another host (a fresh node
id, joining the running head). A node stopped longer than the head's heartbeat timeout is
declared dead; when it wakes it must not be trusted, and the killer records whether it left
on its own (it should) before removing it and starting a replacement.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import resource
import signal
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout
import plait  # noqa: E402
import plait.util  # noqa: E402

MIB = 1 << 20
LEAVES = 256
LEAF_WORDS = MIB // 8                  # 1 MiB of int64 per leaf: results live in the stores
PAIRS = 1000
PAIR_MIB = 10
PAIR_BATCH = 12                        # pairs in flight at once (bounded memory)
TINY = 10_000
TINY_BATCH = 2_000
GET_TIMEOUT = 180.0                    # a get slower than this is reported as a hang
STORE_MEMORY = 512 * MIB
KINDS = ("SIGKILL", "SIGTERM", "SIGSEGV", "SIGSTOP")
SHORT_STOP = (1.0, 2.5)                # under the head's 4 s heartbeat timeout: must survive
LONG_STOP = (6.0, 8.0)                 # over it: declared dead, refused when it wakes
WOKEN_GRACE = 10.0                     # how long a woken, declared-dead node may linger


# -- the workloads -------------------------------------------------------------------------

@plait.remote
def leaf(i: int) -> np.ndarray:
    return np.full(LEAF_WORDS, i, dtype=np.int64)


@plait.remote
def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a + b


def pattern(i: int) -> np.ndarray:
    """10 MiB that differ for every i, cheap to make and to check."""
    return np.arange(PAIR_MIB * MIB // 8, dtype=np.uint64) * np.uint64(2 * i + 1)


@plait.remote(num_returns=2)
def create(i: int) -> tuple[np.ndarray, int]:
    data = pattern(i)
    return data, zlib.crc32(data)


@plait.remote
def consume(data: np.ndarray) -> int:
    return zlib.crc32(data)


@plait.remote
def tiny(i: int) -> int:
    return i


def run_tree() -> list[str]:
    """A 256-leaf pairwise reduction: every element of the root must be sum(range(256))."""
    level = [leaf.remote(i) for i in range(LEAVES)]
    while len(level) > 1:
        level = [add.remote(a, b) for a, b in zip(level[::2], level[1::2], strict=True)]
    root = plait.get(level[0], timeout=GET_TIMEOUT)
    expected = sum(range(LEAVES))
    if root.shape != (LEAF_WORDS,) or not np.all(root == expected):
        return [f"tree: root holds {np.unique(root)[:5]}, expected {expected}"]
    return []


def run_pairs() -> list[str]:
    """1,000 create/consume pairs of 10 MiB: the consumer's CRC must equal the creator's."""
    wrong = []
    for first in range(0, PAIRS, PAIR_BATCH):
        batch = range(first, min(first + PAIR_BATCH, PAIRS))
        made = [create.remote(i) for i in batch]
        consumed = [consume.remote(data) for data, _ in made]
        crcs = plait.get([crc for _, crc in made] + consumed, timeout=GET_TIMEOUT)
        for i, made_crc, read_crc in zip(batch, crcs[:len(made)], crcs[len(made):],
                                         strict=True):
            if made_crc != read_crc or (i % 100 == 0 and read_crc != zlib.crc32(pattern(i))):
                wrong.append(f"pair {i}: created {made_crc}, consumed {read_crc}")
    return wrong


def run_tiny() -> list[str]:
    """10,000 tiny tasks, each returning its own id: every id must come back once."""
    seen: list[int] = []
    for first in range(0, TINY, TINY_BATCH):
        seen += plait.get([tiny.remote(i) for i in range(first, first + TINY_BATCH)],
                          timeout=GET_TIMEOUT)
    if sorted(seen) != list(range(TINY)):
        missing = sorted(set(range(TINY)) - set(seen))
        return [f"tiny: {len(missing)} ids missing (first {missing[:5]}), {len(seen)} results"]
    return []


WORKLOADS = {"tree": run_tree, "pairs": run_pairs, "tiny": run_tiny}


def run_round() -> tuple[dict[str, float], list[str], list[str]]:
    """The three workloads one after the other: seconds each, what came back wrong, and
    the gets that never returned (stuck).

    A workload that raises counts as data lost (its results never arrived), named by the
    exception, and the round goes on with the next workload.
    """
    seconds, wrong, stuck = {}, [], []
    for name, workload in WORKLOADS.items():
        start = time.perf_counter()
        try:
            wrong += workload()
        except plait.GetTimeoutError as error:
            stuck.append(f"{name}: {str(error)[:300]}")
            dump_node_states()
        except Exception as error:             # a lost object: a finding
            wrong.append(f"{name}: {type(error).__name__}: {str(error)[:300]}")
        seconds[name] = time.perf_counter() - start
    return seconds, wrong, stuck


def dump_node_states() -> None:
    """A stuck get: every node prints its tasks and workers (kill -USR1) to stderr."""
    from plait import api

    for process in api._session.cluster.processes:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGUSR1)


def validate() -> list[str]:
    """The cluster's own invariants after a round (empty when all hold)."""
    try:
        return plait.util.validate_state()
    except Exception as error:
        return [f"validate_state failed: {type(error).__name__}: {error}"]


# -- processes -----------------------------------------------------------------------------

def children_of(pids: set[int]) -> list[int]:
    """Live, unstopped-or-stopped processes whose parent is one of ``pids`` (from /proc)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) in pids:
            found.append(int(entry))
    return found


class Killer(threading.Thread):
    """Signals a random non-head node or worker every few seconds; restarts dead nodes."""

    def __init__(self, cluster, rng: random.Random, interval: tuple[float, float]) -> None:
        super().__init__(name="chaos-killer", daemon=True)
        self.cluster = cluster                 # plait's LocalCluster: configs and processes
        self.rng = rng
        self.interval = interval
        self.done = threading.Event()
        self.kills: Counter[str] = Counter()
        self.events: list[dict] = []
        self.findings: list[str] = []
        self.next_index = len(cluster.configs)
        self.born: dict[str, float] = {}       # replacement node -> when it was started
        self.verbose = False

    def run(self) -> None:
        while not self.done.wait(self.rng.uniform(*self.interval)):
            try:
                self.strike()
            except Exception as error:         # the soak must go on; the report says why
                self.findings.append(f"killer: {type(error).__name__}: {error}")

    def live_nodes(self) -> list[tuple[object, object]]:
        """(config, process) of the non-head nodes still running."""
        return [(c, p) for c, p in zip(self.cluster.configs[1:], self.cluster.processes[1:],
                                       strict=True) if p.poll() is None]

    def strike(self) -> None:
        kind = self.rng.choice(KINDS)
        nodes = self.live_nodes()
        if self.rng.random() < 0.4 and nodes:
            config, process = self.rng.choice(nodes)
            self.signal_node(kind, config, process)
            return
        node_pids = {p.pid for p in self.cluster.processes if p.poll() is None}
        workers = children_of(node_pids)
        if workers:
            self.signal_worker(kind, self.rng.choice(workers))

    def signal_worker(self, kind: str, pid: int) -> None:
        self.kills[f"worker {kind}"] += 1
        self.note({"t": time.time(), "target": f"worker pid {pid}", "kind": kind})
        self.send(pid, kind)

    def send(self, pid: int, kind: str) -> float:
        """Deliver one fault; a SIGSTOP is followed by SIGCONT. Returns the stop's length."""
        try:
            if kind != "SIGSTOP":
                os.kill(pid, getattr(signal, kind))
                return 0.0
            span = self.rng.uniform(*self.rng.choice([SHORT_STOP, LONG_STOP]))
            os.kill(pid, signal.SIGSTOP)
            self.done.wait(span)
            os.kill(pid, signal.SIGCONT)
            return span
        except ProcessLookupError:              # it died meanwhile (the node killed it)
            return 0.0

    def signal_node(self, kind: str, config, process) -> None:
        age = time.monotonic() - self.born.get(config.node, float("-inf"))
        stopped = self.send(process.pid, kind)
        label = kind if kind != "SIGSTOP" else f"SIGSTOP {'long' if stopped > 4 else 'short'}"
        self.kills[f"node {label}"] += 1
        self.note({"t": time.time(), "target": config.node, "kind": label,
                   "stopped_s": round(stopped, 2)})
        if kind == "SIGSTOP" and stopped <= 4:
            return                              # under the heartbeat timeout: it stays
        deadline = time.monotonic() + (WOKEN_GRACE if kind == "SIGSTOP" else 30.0)
        while process.poll() is None and time.monotonic() < deadline:
            self.done.wait(0.1)
        if process.poll() is None:
            if kind == "SIGSTOP":
                # a node stopped before it joined was never known to the head, so never
                # declared dead: it joins late, rightly; its age tells the two apart
                since = f"{age:.1f} s after it was started" if age < float("inf") else \
                    "one of the first nodes"
                self.findings.append(f"{config.node} stopped for {stopped:.1f} s (past the "
                                     f"heartbeat timeout) was still running "
                                     f"{WOKEN_GRACE:.0f} s after it woke ({since})")
            else:
                self.findings.append(f"{config.node} outlived {kind} by 30 s")
            process.kill()
            process.wait()
        self.restart()

    def restart(self) -> None:
        """A fresh node (new id) joins the running head, as `plait start --address` does;
        none once the soak is ending (the cluster is about to shut down)."""
        from plait.executor.wire.config import ipc_addresses, launch
        from plait.store.spill import spill_directory

        if self.done.is_set():
            return

        template = self.cluster.configs[1]
        node = f"node-{self.next_index}"
        self.next_index += 1
        spill = None if template.spill_dir is None else spill_directory(
            template.session, node, os.path.dirname(template.spill_dir))
        config = dataclasses.replace(template, node=node, spill_dir=spill,
                                     **ipc_addresses(template.run_dir, node))
        self.cluster.configs.append(config)
        self.cluster.processes.append(launch(config))
        self.born[node] = time.monotonic()
        self.note({"t": time.time(), "target": node, "kind": "started"})

    def note(self, event: dict) -> None:
        self.events.append(event)
        if self.verbose:
            print(f"    {time.strftime('%H:%M:%S')} {event['target']}: {event['kind']}",
                  flush=True)


# -- the code under test -------------------------------------------------------------------

def source_stamp(root: Path | None = None) -> dict[str, int]:
    """Each of plait's source files with its modification time (ns).

    Nodes started during the soak (every replacement the killer starts, every worker forked
    after a restart) import plait from disk then, not when the soak began: a file edited
    meanwhile gives a cluster that runs two versions at once, or one half-edited (a node
    started between two edits of one change ran ``split_returns`` before its import was
    added: NameError on every ``num_returns=2`` task it ran). Such findings are the tree's,
    not plait's; the soak compares the stamps at its end and says so."""
    root = Path(plait.__file__).resolve().parent if root is None else root
    return {str(path.relative_to(root)): path.stat().st_mtime_ns
            for path in sorted(root.rglob("*.py"))}


def sources_changed(before: dict[str, int], after: dict[str, int]) -> list[str]:
    """The files added, removed or rewritten between two stamps."""
    return sorted(name for name in before.keys() | after.keys()
                  if before.get(name) != after.get(name))


def say_if_changed(changed: list[str]) -> None:
    """Tell that the findings of a soak whose sources changed may be the edit's."""
    if changed:
        print(f"plait's sources changed during the soak ({', '.join(changed[:8])}"
              f"{', ...' if len(changed) > 8 else ''}): nodes started after a change ran "
              f"other code than the driver; its findings may be the edit's, not plait's. "
              f"Run it on a copy of the tree that nothing edits.", flush=True)


# -- leaks ---------------------------------------------------------------------------------

def leaks(session: str) -> dict[str, list[str]]:
    """Processes, segments and files of this session left after shutdown."""
    prefix = f"plait-{session}"
    processes = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if session in cmdline and state != "Z" and int(entry) != os.getpid():
            processes.append(f"{entry}: {cmdline[:100]}")
    segments = sorted(n for n in os.listdir("/dev/shm") if n.startswith(prefix))
    files = sorted(str(p) for p in Path(tempfile.gettempdir()).glob(f"{prefix}*"))
    return {"processes": processes, "segments": segments, "spill_and_run_files": files}


# -- the soak ------------------------------------------------------------------------------

DASHBOARD = False          # --dashboard: a dashboard runs, a page open on it (pageview.py)


def start_cluster():
    plait.init(num_nodes=3, num_workers=1, store_memory=STORE_MEMORY, dashboard=DASHBOARD)
    from plait import api

    return api._session.cluster               # the LocalCluster, to restart nodes into


def reexecuted(trace) -> dict[str, int]:
    """Executions the head recorded against distinct tasks: the difference ran again.
    ``events_dropped``: events the head's trace ring no longer held (not counted)."""
    executions = len(trace.tasks)
    distinct = len({event.task_id for event in trace.tasks})
    failed = sum(not event.ok for event in trace.tasks)
    return {"executions": executions, "distinct_tasks": distinct,
            "re_executed": executions - distinct, "failed_executions": failed,
            "events_dropped": trace.dropped}


def add_counts(total: dict[str, int], part: dict[str, int]) -> dict[str, int]:
    return {key: total.get(key, 0) + value for key, value in part.items()}


def quiet_round() -> dict:
    cluster = start_cluster()
    session = cluster.session
    with plait.trace() as trace:
        seconds, wrong, stuck = run_round()
    violations = validate()
    plait.shutdown()
    return {"seconds": seconds, "total_seconds": sum(seconds.values()), "wrong": wrong,
            "stuck": stuck, "violations": violations, **reexecuted(trace),
            "leaks": leaks(session)}


def chaos_rounds(budget: float, rng: random.Random, interval: tuple[float, float],
                 verbose: bool = False) -> dict:
    cluster = start_cluster()
    session = cluster.session
    killer = Killer(cluster, rng, interval)
    killer.verbose = verbose
    rounds, wrong, stuck, violations = [], [], [], []
    stats = dict.fromkeys(["executions", "distinct_tasks", "re_executed",
                           "failed_executions", "events_dropped"], 0)
    start = time.monotonic()
    killer.start()
    page = open_page() if DASHBOARD else None
    while time.monotonic() - start < budget:
        with plait.trace() as trace:          # per round: the head keeps 50,000 events
            seconds, bad, hung = run_round()
        stats = add_counts(stats, reexecuted(trace))
        broken = validate()
        rounds.append(seconds)
        wrong += bad
        stuck += hung
        violations += [f"round {len(rounds)}: {v}" for v in broken]
        print(f"  chaos round {len(rounds)}: {sum(seconds.values()):.1f} s, "
              f"{len(bad)} wrong, {len(hung)} stuck, {len(broken)} invariant violations,"
              f" kills so far {dict(killer.kills)}", flush=True)
    killer.done.set()
    killer.join(timeout=60)
    dashboard = page.stats() if page is not None else None
    if dashboard:
        print(f"  dashboard under the faults: {dashboard}", flush=True)
    violations += [f"after the faults: {v}" for v in validate()]
    shutdown_start = time.monotonic()
    plait.shutdown()
    shutdown_seconds = time.monotonic() - shutdown_start
    return {"rounds": rounds, "wrong": wrong, "stuck": stuck, "violations": violations,
            "kills": dict(killer.kills),
            "kill_total": sum(killer.kills.values()), "nodes_started": killer.next_index - 3,
            "findings": killer.findings, **stats, "shutdown_seconds": shutdown_seconds,
            "leaks": leaks(session), "events": killer.events,
            **({"dashboard": dashboard} if dashboard else {})}


def open_page():
    """A page open on the session's dashboard, polling as the browser's would."""
    from benchmarks.pageview import PageView
    from plait import api

    page = PageView(api.dashboard_url, api._dashboard.pid)
    page.start()
    page.open()
    return page


# -- the memory-pressure soak ----------------------------------------------------------------

PRESSURE_STORE = 96 * MIB
PRESSURE_SIZES = (2, 16)               # MiB per object, drawn uniformly
PRESSURE_FACTOR = 10                   # objects made per DAG add up to this many stores


def block(seed: int, mib: int) -> np.ndarray:
    """``mib`` MiB that differ for every seed, cheap to make and to check."""
    return np.arange(mib * MIB // 8, dtype=np.uint64) * np.uint64(2 * seed + 1)


@plait.remote
def step(seed: int, mib: int, expected: list[int], *inputs: np.ndarray) -> np.ndarray:
    """A vertex of a random DAG: checks each input against its expected CRC (a task that
    read a wrong or torn spilled input fails loudly), then makes its own block."""
    for position, (data, crc) in enumerate(zip(inputs, expected, strict=True)):
        if zlib.crc32(data) != crc:
            raise ValueError(f"input {position} of step {seed} has CRC {zlib.crc32(data)}, "
                             f"expected {crc}")
    return block(seed, mib)


def pressure_dag(rng: random.Random, first_seed: int) -> list[str]:
    """One random DAG whose objects add up to PRESSURE_FACTOR stores, then gets of every
    object in random order, each checked against its CRC. Returns what came back wrong."""
    refs, crcs, total = [], [], 0
    seed = first_seed
    while total < PRESSURE_FACTOR * PRESSURE_STORE:
        mib = rng.randint(*PRESSURE_SIZES)
        parents = rng.sample(range(len(refs)), k=min(len(refs), rng.randint(0, 3)))
        refs.append(step.remote(seed, mib, [crcs[i] for i in parents],
                                *[refs[i] for i in parents]))
        crcs.append(zlib.crc32(block(seed, mib)))
        total += mib * MIB
        seed += 1
    wrong = []
    order = list(range(len(refs)))
    rng.shuffle(order)
    for i in order:
        got = zlib.crc32(plait.get(refs[i], timeout=GET_TIMEOUT))
        if got != crcs[i]:
            wrong.append(f"pressure object {i}: CRC {got}, expected {crcs[i]}")
    return wrong


def pressure_soak(budget: float, rng: random.Random) -> dict:
    """Random DAGs on one node of 2 workers and a 96 MiB store until ``budget`` passes."""
    plait.init(num_workers=2, store_memory=PRESSURE_STORE)
    from plait import api

    session = api._session.cluster.session
    dags, wrong, stuck, seconds = 0, [], [], []
    start = time.monotonic()
    while time.monotonic() - start < budget:
        began = time.perf_counter()
        try:
            wrong += pressure_dag(rng, dags * 10_000)
        except plait.GetTimeoutError as error:
            stuck.append(str(error)[:300])
        except Exception as error:
            wrong.append(f"{type(error).__name__}: {str(error)[:300]}")
        seconds.append(time.perf_counter() - began)
        dags += 1
        print(f"  pressure DAG {dags}: {seconds[-1]:.1f} s, {len(wrong)} wrong so far",
              flush=True)
    summary = plait.memory_summary(stats_only=True)
    violations = validate()
    plait.shutdown()
    return {"dags": dags, "seconds": seconds, "wrong": wrong, "stuck": stuck,
            "violations": violations, "memory": summary, "leaks": leaks(session)}


# -- the report ----------------------------------------------------------------------------

def summarise(result: dict) -> str:
    """One seed's figures, as the issue asks for them."""
    quiet, chaos = result["quiet"], result["chaos"]
    mean = {name: sum(r[name] for r in chaos["rounds"]) / max(len(chaos["rounds"]), 1)
            for name in WORKLOADS}
    slowest = max((sum(r.values()) for r in chaos["rounds"]), default=0.0)
    leaked = {k: len(v) for k, v in chaos["leaks"].items()}
    lines = [
        f"chaos soak, seed {result['seed']}, {result['seconds']} s budget, 3 nodes x 1 worker,"
        f" {STORE_MEMORY // MIB} MiB stores",
        f"rounds under faults: {len(chaos['rounds'])}",
        "runtime of one round (tree / pairs / tiny), s:",
        "  without faults: " + " / ".join(f"{quiet['seconds'][n]:.1f}" for n in WORKLOADS)
        + f"  = {quiet['total_seconds']:.1f}",
        f"  with faults (mean of {len(chaos['rounds'])}): "
        + " / ".join(f"{mean[n]:.1f}" for n in WORKLOADS) + f"  = {sum(mean.values()):.1f}",
        f"  slowest round with faults: {slowest:.1f} "
        f"({slowest / max(quiet['total_seconds'], 1e-9):.1f}x the quiet round)",
        f"faults: {chaos['kill_total']} "
        + ", ".join(f"{k} {v}" for k, v in sorted(chaos["kills"].items())),
        f"nodes started to replace dead ones: {chaos['nodes_started']}",
        f"task executions {chaos['executions']}, distinct tasks {chaos['distinct_tasks']}, "
        f"re-executed {chaos['re_executed']} (failed executions {chaos['failed_executions']}; "
        f"trace events the head's ring dropped: {chaos['events_dropped']})",
        f"data lost (wrong or missing results): {len(chaos['wrong']) + len(quiet['wrong'])}",
        f"stuck gets: {len(chaos['stuck']) + len(quiet['stuck'])}",
        f"invariant violations: {len(chaos['violations']) + len(quiet['violations'])}",
        f"leaked after shutdown: processes {leaked['processes']}, segments {leaked['segments']}, "
        f"spill/run files {leaked['spill_and_run_files']}",
        f"shutdown took {chaos['shutdown_seconds']:.1f} s",
    ]
    for kind in ("wrong", "stuck", "violations"):
        lines += [f"  {kind}: {w}" for w in quiet[kind] + chaos[kind]]
    lines += [f"  finding: {f}" for f in chaos["findings"]]
    return "\n".join(lines)


def summarise_pressure(pressure: dict) -> str:
    seconds = sorted(pressure["seconds"])
    median = seconds[len(seconds) // 2] if seconds else 0.0
    leaked = {k: len(v) for k, v in pressure["leaks"].items()}
    lines = [f"memory-pressure soak: {pressure['dags']} random DAGs, each "
             f"{PRESSURE_FACTOR}x the {PRESSURE_STORE // MIB} MiB store, 1 node x 2 workers",
             f"  seconds per DAG: median {median:.1f}, slowest {max(seconds, default=0):.1f}",
             f"  data lost: {len(pressure['wrong'])}, stuck gets: {len(pressure['stuck'])}, "
             f"invariant violations: {len(pressure['violations'])}",
             f"  leaked after shutdown: {leaked}",
             *("  " + line for line in pressure["memory"].splitlines())]
    for kind in ("wrong", "stuck", "violations"):
        lines += [f"  {kind}: {w}" for w in pressure[kind]]
    return "\n".join(lines)


def soak_seed(seed: int, seconds: float, interval: tuple[float, float],
              verbose: bool) -> dict:
    print(f"seed {seed}: quiet round...", flush=True)
    quiet = quiet_round()
    print(f"  {quiet['total_seconds']:.1f} s, {len(quiet['wrong'])} wrong", flush=True)
    print(f"seed {seed}: chaos for {seconds:.0f} s...", flush=True)
    chaos = chaos_rounds(seconds, random.Random(seed), interval, verbose)
    result = {"seed": seed, "seconds": seconds, "interval": list(interval),
              "quiet": quiet, "chaos": chaos}
    result["summary"] = summarise(result)
    print(result["summary"], flush=True)
    return result


def failures(result: dict) -> int:
    """Findings that fail the soak: lost data, stuck gets, violations, leaks."""
    parts = [result["quiet"], result["chaos"]] if "chaos" in result else [result]
    return sum(len(part[kind]) for part in parts for kind in ("wrong", "stuck", "violations")) \
        + sum(len(v) for part in parts for v in part["leaks"].values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0,
                        help="how long rounds keep starting under faults, per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--pressure-seconds", type=float, default=300.0,
                        help="how long the memory-pressure soak starts new DAGs (0: skip)")
    parser.add_argument("--verbose", action="store_true", help="print every fault")
    parser.add_argument("--interval", type=float, nargs=2, default=(2.0, 6.0),
                        metavar=("MIN", "MAX"), help="seconds between faults")
    parser.add_argument("--json", default=str(Path(__file__).with_name("chaos.json")))
    parser.add_argument("--dashboard", action="store_true",
                        help="run a dashboard with a page open on it; report its CPU and RSS")
    args = parser.parse_args()
    global DASHBOARD
    DASHBOARD = args.dashboard
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))   # segfaulted processes leave no core
    stamp = source_stamp()
    report = {"command": " ".join([os.path.basename(sys.executable), *sys.argv]),
              "seeds": [soak_seed(seed, args.seconds, tuple(args.interval), args.verbose)
                        for seed in args.seeds]}
    if args.pressure_seconds > 0:
        print(f"memory-pressure soak for {args.pressure_seconds:.0f} s...", flush=True)
        report["pressure"] = pressure_soak(args.pressure_seconds, random.Random(args.seeds[0]))
        report["pressure"]["summary"] = summarise_pressure(report["pressure"])
        print(report["pressure"]["summary"])
    report["sources_changed"] = changed = sources_changed(stamp, source_stamp())
    say_if_changed(changed)
    Path(args.json).write_text(json.dumps(report, indent=1))
    parts = report["seeds"] + ([report["pressure"]] if "pressure" in report else [])
    return 1 if sum(map(failures, parts)) or changed else 0


if __name__ == "__main__":
    sys.exit(main())
