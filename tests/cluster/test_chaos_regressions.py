"""Failures the chaos soak (benchmarks/chaos.py) found, each kept as a small test."""

from __future__ import annotations

import os
import signal

import pytest

import plait
from plait import api

pytestmark = pytest.mark.cluster


@plait.remote
def crash_first_time(path):
    if not os.path.exists(path):
        open(path, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return "recovered"


def test_a_node_stopping_cleanly_leaves_the_shared_run_directory(fresh, tmp_path):
    """A non-head node that exited on SIGTERM removed the run directory it shares with the
    head, so a replacement worker elsewhere could not reach its node and its task hung."""
    plait.init(num_nodes=3, num_workers=1)
    cluster = api._session.cluster
    node_1 = cluster.processes[1]
    node_1.send_signal(signal.SIGTERM)
    assert node_1.wait(30) == 0
    assert os.path.isdir(cluster.run_dir)
    ref = crash_first_time.options(node="node-2").remote(str(tmp_path / "crashed"))
    assert plait.get(ref, timeout=60) == "recovered"        # a new worker on node-2 ran it


def test_a_node_declared_dead_stops_by_itself_promptly_when_it_wakes(fresh):
    """A node stopped past the heartbeat timeout is declared dead; when it was continued
    with messages waiting for it (here, a task assigned while it was stopped) it took the
    head for alive and ran on for good beside its replacements, its heartbeats answered.
    The head now tells it that it is dead, and it exits; its task ran elsewhere."""
    import time

    plait.init(num_nodes=2, num_workers=1)
    node_1 = api._session.cluster.processes[1]
    node_1.send_signal(signal.SIGSTOP)
    try:
        ref = where.options(node="node-1").remote()
        plait.wait([ref], timeout=0)                              # submitted: it waits there
        deadline = time.monotonic() + 60
        while any(n.id == "node-1" for n in plait.nodes()):       # a round trip each
            assert time.monotonic() < deadline, "node-1 was never declared dead"
    finally:
        node_1.send_signal(signal.SIGCONT)
    assert node_1.wait(15) == 0                # it left on its own, cleanly
    assert plait.get(ref, timeout=60) == "node-0"


@plait.remote
def where():
    return plait.get_runtime_context().get_node_id()


@plait.remote
def echo(i):
    return i


ASSIGNS = 1500          # zmq's default high-water mark is 1,000 messages


def test_messages_to_a_briefly_stopped_node_are_queued_not_dropped(fresh):
    """A ROUTER drops what it would queue past its high-water mark (1,000 messages) for a
    peer that does not read: a node stopped for a second while thousands of Assigns went
    its way lost some of them, and their gets waited for good."""
    plait.init(num_nodes=2, num_workers=1)
    node_1 = api._session.cluster.processes[1]
    node_1.send_signal(signal.SIGSTOP)
    try:
        refs = []
        # one Assign message each, half again the high-water mark: ~1.5 s here, where
        # 3,000 took past the node timeout (4 s) at load 12+ and the node was declared dead
        for i in range(ASSIGNS):
            refs.append(echo.options(node="node-1").remote(i))
            plait.wait(refs[-1:], timeout=0)
    finally:
        node_1.send_signal(signal.SIGCONT)
    assert plait.get(refs, timeout=60) == list(range(ASSIGNS))


@plait.remote
def plus_one(x):
    return x + 1


def test_a_run_steps_aside_for_no_thread_while_it_waits_for_its_view(cluster, monkeypatch):
    """The memory-pressure soak: the idle flusher's run, waiting for its cluster view,
    stepped aside for the driver's get, whose run took the tasks the flusher had drained
    through the upstream of its own; both submitted them, and the head counted their
    inputs' readers twice ("reader counts differ from the tasks that read")."""
    session = api._session
    steady, view = [], session.cluster_view

    def watched_view(graph):
        steady.append(session.lock.steady)
        return view(graph)

    monkeypatch.setattr(session, "cluster_view", watched_view)
    assert plait.get(plus_one.remote(plus_one.remote(1)), timeout=30) == 3
    assert steady and all(steady)
