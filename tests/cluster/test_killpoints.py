"""Processes killed at named points (plait.executor.wire.killpoints), never by a timer.

Each test sets ``PLAIT_KILL_AT`` before ``plait.init``, so the node and worker processes
inherit it, and ``PLAIT_KILL_ONCE`` when exactly one process in the cluster should die
(a replacement worker would otherwise die again at the same point). The once-file also
proves the kill happened. Executions are counted twice over: each function appends a line
to a file when it starts, and ``plait.trace()`` records one event per completed run, so
"re-executed tasks = the minimum needed" is checked exactly.
"""

from __future__ import annotations

import zlib
from collections import Counter

import numpy as np
import pytest

import plait

pytestmark = pytest.mark.cluster

MIB = 1 << 20


@plait.remote
def victim(log, value):
    with open(log, "a") as f:
        f.write("start\n")
    return value * 2


@plait.remote
def inc(x):
    return x + 1


@plait.remote
def make(log, seed, mib):
    with open(log, "a") as f:
        f.write(f"make {seed}\n")
    return np.random.default_rng(seed).integers(0, 255, mib * MIB, dtype=np.uint8)


@plait.remote
def checksum(log, array):
    with open(log, "a") as f:
        f.write("checksum\n")
    return zlib.crc32(array)


def expected_checksum(seed: int, mib: int) -> int:
    return zlib.crc32(np.random.default_rng(seed).integers(0, 255, mib * MIB, dtype=np.uint8))


def kill_at(monkeypatch, tmp_path, spec: str, once: bool = True):
    """Arm the kill point for the cluster about to start; the once-file, if any."""
    monkeypatch.setenv("PLAIT_KILL_AT", spec)
    marker = tmp_path / "killed"
    if once:
        monkeypatch.setenv("PLAIT_KILL_ONCE", str(marker))
    else:
        monkeypatch.delenv("PLAIT_KILL_ONCE", raising=False)
    return marker


def lines(path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def runs(trace, ok: bool = True) -> Counter[str]:
    """Runs per function name that completed (or, ``ok=False``, were reported failed)."""
    return Counter(event.function_name for event in trace.tasks if event.ok == ok)


POINTS = ["task-before-start", "task-after-compute"]
STARTS_PER_KILLED_ATTEMPT = {"task-before-start": 0, "task-after-compute": 1}


@pytest.mark.parametrize("point", POINTS)
def test_worker_killed_with_no_retries_fails_after_one_attempt(fresh, monkeypatch, tmp_path,
                                                                point):
    marker = kill_at(monkeypatch, tmp_path, f"{point}@victim")
    plait.init(num_workers=1)
    log = tmp_path / "log"
    with plait.trace() as trace:
        with pytest.raises(plait.WorkerCrashedError) as caught:
            plait.get(victim.options(max_retries=0).remote(str(log), 21), timeout=60)
    assert len(caught.value.attempts) == 1 and "SIGKILL" in str(caught.value)
    assert marker.read_text().startswith(point)
    assert len(lines(log)) == STARTS_PER_KILLED_ATTEMPT[point]
    assert runs(trace)["victim"] == 0 and runs(trace, ok=False)["victim"] == 1
    assert plait.get(inc.remote(1), timeout=30) == 2          # a new worker took its place


@pytest.mark.parametrize("point", POINTS)
def test_worker_killed_once_with_one_retry_succeeds(fresh, monkeypatch, tmp_path, point):
    marker = kill_at(monkeypatch, tmp_path, f"{point}@victim")
    plait.init(num_workers=1)
    log = tmp_path / "log"
    with plait.trace() as trace:
        assert plait.get(victim.options(max_retries=1).remote(str(log), 21), timeout=60) == 42
    assert marker.exists()
    assert len(lines(log)) == STARTS_PER_KILLED_ATTEMPT[point] + 1
    assert runs(trace)["victim"] == 1                          # the retry, and only it
    assert runs(trace, ok=False)["victim"] == 0                # the crash was retried, not failed


@pytest.mark.parametrize("point", POINTS)
def test_worker_killed_every_time_fails_after_max_retries_plus_one(fresh, monkeypatch, tmp_path,
                                                                   point):
    kill_at(monkeypatch, tmp_path, f"{point}@victim", once=False)   # every new worker dies
    plait.init(num_workers=1)
    log = tmp_path / "log"
    with pytest.raises(plait.WorkerCrashedError) as caught:
        plait.get(victim.options(max_retries=2).remote(str(log), 21), timeout=60)
    assert len(caught.value.attempts) == 3
    assert len(lines(log)) == 3 * STARTS_PER_KILLED_ATTEMPT[point]
    assert plait.get(inc.remote(1), timeout=30) == 2


def test_kill_on_the_nth_call_counts_per_process(fresh, monkeypatch, tmp_path):
    kill_at(monkeypatch, tmp_path, "task-after-compute@victim:2", once=False)
    plait.init(num_workers=1)
    log = tmp_path / "log"
    assert plait.get(victim.options(max_retries=0).remote(str(log), 1), timeout=60) == 2
    with pytest.raises(plait.WorkerCrashedError):
        plait.get(victim.options(max_retries=0).remote(str(log), 2), timeout=60)
    # the replacement worker counts from zero again: its first call lives
    assert plait.get(victim.options(max_retries=0).remote(str(log), 3), timeout=60) == 6
    assert len(lines(log)) == 3


def test_node_killed_mid_transfer_the_consumer_runs_elsewhere(fresh, monkeypatch, tmp_path):
    marker = kill_at(monkeypatch, tmp_path, "mid-transfer@node-2")
    plait.init(num_nodes=3, num_workers=1)
    log = tmp_path / "log"
    with plait.trace() as trace:
        data = make.options(node="node-1").remote(str(log), 7, 16)
        total = checksum.options(node="node-2").remote(str(log), data)
        assert plait.get(total, timeout=60) == expected_checksum(7, 16)
    assert marker.read_text().split()[::2] == ["mid-transfer", "node-2"]
    assert "node-2" not in {node.id for node in plait.nodes()}
    # node-1 kept the array: nothing was rebuilt, the consumer started once (elsewhere)
    assert lines(log) == ["make 7", "checksum"]
    assert runs(trace) == Counter({"make": 1, "checksum": 1})
    assert {event.node for event in trace.tasks if event.function_name == "checksum"} \
        <= {"node-0", "node-1"}


def test_node_killed_mid_spill_its_results_are_rebuilt_from_lineage(fresh, monkeypatch,
                                                                      tmp_path):
    marker = kill_at(monkeypatch, tmp_path, "mid-spill@node-1")
    plait.init(num_nodes=2, num_workers=1, store_memory=64 * MIB)
    log = tmp_path / "log"
    on_node_1 = make.options(node="node-1")
    with plait.trace() as trace:
        first, = plait.persist(on_node_1.remote(str(log), 1, 24))
        second, = plait.persist(on_node_1.remote(str(log), 2, 24))
        third, = plait.persist(on_node_1.remote(str(log), 3, 24))   # node-1 spills, and dies
        for seed, ref in [(1, first), (2, second), (3, third)]:
            assert plait.get(checksum.remote(str(log), ref), timeout=120) == \
                expected_checksum(seed, 24)
    assert marker.read_text().split()[:3:2] == ["mid-spill", "node-1"]
    assert plait.nodes()[0].id == "node-0" and len(plait.nodes()) == 1
    made = Counter(line for line in lines(log) if line.startswith("make"))
    # first and second ran twice (their only copies died with node-1); third's first
    # attempt computed its array but died allocating it, so it too started twice
    assert made == Counter({"make 1": 2, "make 2": 2, "make 3": 2})
    assert runs(trace) == Counter({"make": 5, "checksum": 3})
    assert runs(trace, ok=False) == Counter()


def test_worker_killed_running_the_second_task_of_a_fused_chain_retries_it(
        fresh, monkeypatch, tmp_path):
    """The chaos soak's consumer that never finished: make -> checksum are fused (sent in
    one message, checksum riding behind make). When make's result reached the node before
    the worker died as checksum started, the retried checksum stayed marked as riding and
    was never sent again. Whether the node saw make's result first is a race (if not, make
    runs again); tests/executor/node/test_node.py takes the losing path deterministically."""
    marker = kill_at(monkeypatch, tmp_path, "task-before-start@checksum")
    plait.init(num_workers=1)
    log = tmp_path / "log"
    data = make.remote(str(log), 3, 64)
    total = checksum.remote(str(log), data)
    assert plait.compile(total).placements[total.id].follows == data.id   # fused
    assert plait.get(total, timeout=60) == expected_checksum(3, 64)
    assert marker.read_text().startswith("task-before-start")
    assert lines(log).count("checksum") == 1 and 1 <= lines(log).count("make 3") <= 2
