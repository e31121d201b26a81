"""A node's snapshot for the dashboard: one word per worker, and /proc read safely."""

from __future__ import annotations

import os

import pytest

from plait.executor.node.snapshot import cpu_seconds, rss_of, worker_state
from plait.executor.node.workers import WorkerHandle


@pytest.mark.parametrize(("fields", "state"), [
    ({"ready": False}, "starting"), ({"actor": "Counter-1"}, "actor"),
    ({"blocked": True}, "blocked"), ({"inflight": {"f-1": 0}}, "busy"), ({}, "idle")])
def test_each_worker_is_one_word(fields, state):
    worker = WorkerHandle(0, 1, -1, b"w0", ready=True)
    for name, value in fields.items():
        setattr(worker, name, value)
    assert worker_state(worker) == state


def test_cpu_and_memory_of_a_live_process_and_of_one_gone():
    sum(range(200_000))                              # some CPU of our own
    assert cpu_seconds(os.getpid()) > 0 and rss_of(os.getpid()) > 1 << 20
    assert cpu_seconds(2**22 + 7) == 0.0 and rss_of(2**22 + 7) == 0      # past pid_max
