"""Fixtures for cluster tests: a running plait, and teardown that fails on anything leaked.

Leak checks only look at what this pytest process started (session ids begin with our
pid in hex), so other plait programs on the machine do not disturb them.
"""

from __future__ import annotations

import os
import tempfile

import pytest

import plait

OUR_PREFIX = f"plait-{os.getpid():x}-"


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


@pytest.fixture(scope="module")
def cluster():
    """A 2-worker local cluster shared by one test module, checked for leaks after."""
    plait.init(num_workers=2)
    yield plait.nodes()
    plait.shutdown()
    assert_nothing_leaked()


@pytest.fixture
def fresh():
    """No cluster before the test; after it, shut down whatever it started and check."""
    plait.shutdown()
    yield
    plait.shutdown()
    assert_nothing_leaked()
