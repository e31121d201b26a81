"""Fixtures for cluster tests: a running plait, and teardown that fails on anything leaked.

Leak checks only look at what this pytest process started (session ids begin with our
pid in hex), so other plait programs on the machine do not disturb them.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import plait
import plait.util

OUR_PREFIX = f"plait-{os.getpid():x}-"


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@contextmanager
def benchmark_module(name: str) -> Iterator[object]:
    """A script of benchmarks/ imported as a module (its pure parts are tested), with
    benchmarks/ on sys.path only meanwhile (it imports its siblings by name)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))


def leaked_segments() -> list[str]:
    return sorted(name for name in os.listdir("/dev/shm") if name.startswith(OUR_PREFIX))


def processes() -> list[tuple[int, str, str]]:
    """(pid, state, command line) of every process on the machine."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        found.append((int(pid), state, cmdline))
    return found


def leaked_processes() -> list[str]:
    """Live processes whose command line names one of our sessions."""
    return [f"{pid}: {cmdline[:120]}" for pid, state, cmdline in processes()
            if OUR_PREFIX in cmdline and state != "Z"]


def leaked_files() -> list[str]:
    """Spill directories and run directories of our sessions left in the temp directory."""
    tmp = tempfile.gettempdir()
    return sorted(name for name in os.listdir(tmp) if name.startswith(OUR_PREFIX))


def assert_nothing_leaked() -> None:
    assert leaked_processes() == [], "plait processes outlived shutdown"
    assert leaked_segments() == [], "shared-memory segments outlived shutdown"
    assert leaked_files() == [], "spill or run directories outlived shutdown"


def assert_state_valid() -> None:
    """The running cluster's own invariants hold (plait.util.validate_state)."""
    if not plait.is_initialized():
        return
    try:
        problems = plait.util.validate_state()
    except plait.HeadUnavailableError:
        return                                 # the test stopped the head itself
    assert problems == [], "the cluster's invariants are broken"


def shut_down_checked() -> None:
    """A test's cluster goes: its invariants checked first, then nothing may outlive it."""
    try:
        assert_state_valid()
    finally:
        plait.shutdown()
    assert_nothing_leaked()


@pytest.fixture(scope="module")
def cluster():
    """A 2-worker local cluster shared by one test module, checked for leaks after."""
    plait.init(num_workers=2)
    yield plait.nodes()
    shut_down_checked()


@pytest.fixture
def fresh():
    """No cluster before the test; after it, check its invariants, shut down whatever it
    started and check that nothing outlived it."""
    plait.shutdown()
    yield
    shut_down_checked()


@pytest.fixture
def small_store(fresh):
    """One worker and a 64 MiB store: small enough that a few puts make it spill."""
    plait.init(num_workers=1, store_memory=64 << 20)
    yield
