"""Real multi-host runs: a head and two nodes in three network namespaces joined by veth links.

Each namespace is one host to plait (its host id includes the network namespace), so
objects move between nodes over TCP through the veth interfaces, as between machines; the
three hosts share nothing but /dev/shm, /tmp and the pid space with this test, and every
socket is on an address the test created (10.77.0.1-3). The test drives the CLI in each
namespace (`ip netns exec`), a driver in the head's namespace, and kills a whole node.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import textwrap
import time

import pytest

from plait.executor.wire.config import NODE_TIMEOUT_SECONDS
from tests.netns import (Host, Lines, Network, free_port, leftovers, link_bytes, netns_unavailable,
                         status_nodes, sweep, tcp_sockets, wait_until)

pytestmark = [pytest.mark.cluster,
              pytest.mark.skipif(netns_unavailable() is not None,
                                 reason=netns_unavailable() or "")]

MiB = 1 << 20
OBJECT_BYTES = 64 * MiB
STORE_BYTES = 320 * MiB
STEP_TIMEOUT = 60.0            # one step of the driver (a get, a round of transfers)
DETECT_SLACK = 4.0             # beyond the head's node timeout: heartbeat phase, status runs

# Runs inside the head's namespace. Prints one JSON line per step; the test answers through
# files: it creates GATE once it has killed node-2 (the blocked task waits for it).
DRIVER = textwrap.dedent("""
    import json, os, sys, time, zlib
    import numpy as np
    import plait

    gate, marks = sys.argv[1], sys.argv[2]
    MiB = 1 << 20

    def say(**fields):
        print(json.dumps(fields), flush=True)

    def data(seed, nbytes):
        return np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8)

    @plait.remote
    def make(seed, nbytes):
        return data(seed, nbytes)

    @plait.remote
    def put_there(seed, nbytes):        # a put has no lineage: losing it is for good
        return [plait.put(data(seed, nbytes))]

    @plait.remote
    def crc(array):
        from plait.executor.wire.hostid import host_id
        return zlib.crc32(array), host_id()

    @plait.remote(max_retries=2)
    def blocked(gate, marks):
        from plait.executor.wire.hostid import host_id
        open(os.path.join(marks, f"{host_id()}-{os.getpid()}"), "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(gate):
            if time.monotonic() > deadline:
                raise TimeoutError("the test never opened the gate")
            time.sleep(0.02)
        return host_id()

    plait.init(address="auto")
    say(nodes={n.id: n.host for n in plait.nodes()})

    big = make.options(node="node-1").remote(1, 64 * MiB)
    sums = plait.get([crc.options(node=n).remote(big) for n in ("node-1", "node-2", "node-0")])
    say(expected=zlib.crc32(data(1, 64 * MiB)), sums=sums, driver=zlib.crc32(plait.get(big)),
        memory=plait.memory_summary())

    (only2,) = plait.get(put_there.options(node="node-2").remote(2, 64 * MiB))
    stuck = blocked.options(node="node-2").remote(gate, marks)
    plait.wait([stuck], timeout=0)                 # submitted; it blocks on node-2
    say(step="blocked")
    say(retried_on=plait.get(stuck, timeout=50))

    try:
        plait.get(crc.options(node="node-0").remote(only2), timeout=20)
        say(lost="no error")
    except plait.ObjectLostError as error:
        say(lost=str(error))
    say(step="done")
""")


@pytest.fixture
def lan(tmp_path):
    """Namespaces on one bridge, made on demand; after the test, `plait stop` on every host
    must leave no process in any namespace and nothing of the session on the machine."""
    network = Network(f"{os.getpid():x}")
    made: list[Host] = []
    session = None

    def hosts(count: int) -> list[Host]:
        for name in network.create(count):
            made.append(Host(tmp_path / name[-1], name))
            made[-1].home.mkdir(mode=0o700)
        return made

    try:
        yield network, hosts
        session = made[0].session if made else None        # the stops remove cluster.json
        for host in reversed(made):
            host.plait("stop", check=False)
        left = {name: pids for name, pids in network.pids().items() if pids}
        assert left == {}, "processes still running in the namespaces after plait stop"
        assert session is None or leftovers(session) == [], "plait stop left something"
    finally:
        network.destroy()
        if session is not None:
            sweep(session)


def start_cluster(hosts: list[Host], guess_bind: tuple[int, ...] = (),
                  store_bytes: int = STORE_BYTES) -> None:
    """A head on the first host and a node on each other one, 1 worker each; the hosts at
    the indexes in ``guess_bind`` join without --bind (plait finds the address facing the head).
    """
    port = str(free_port())
    common = ("--num-workers", "1", "--store-memory", str(store_bytes))
    first = hosts[0]
    first.plait("start", "--head", "--bind", Network.address(1), "--port", port, *common)
    for index, host in enumerate(hosts[1:], 1):     # the key travels as a file, as with scp
        shutil.copy2(first.home / "cluster.key", host.home / "cluster.key")
        bind = () if index in guess_bind else ("--bind", Network.address(index + 1))
        host.plait("start", "--address", f"{Network.address(1)}:{port}", *bind, *common)
    nodes = status_nodes(first.plait("status").stdout)
    assert list(nodes) == [f"node-{index}" for index in range(len(hosts))]
    for index, address in enumerate(nodes.values()):
        assert address.startswith(f"tcp://{Network.address(index + 1)}:"), nodes


def memory_by_node(summary: str) -> dict[str, str]:
    """``plait.memory_summary()`` split into each node's lines.

    >>> memory_by_node("node-0: 1 B used\\n  largest\\nnode-1: 0 B used")
    {'node-0': 'node-0: 1 B used\\n  largest', 'node-1': 'node-1: 0 B used'}
    """
    parts: dict[str, list[str]] = {}
    for line in summary.splitlines():
        if line.startswith("node-"):
            parts[line.split(":")[0]] = []
        parts[list(parts)[-1]].append(line)
    return {node: "\n".join(lines) for node, lines in parts.items()}


def test_three_hosts_move_objects_over_tcp_and_survive_a_node_kill(lan, tmp_path):
    network, make_hosts = lan
    a, b, c = make_hosts(3)
    start_cluster([a, b, c], guess_bind=(2,))
    ns_a, ns_b, ns_c = (host.netns for host in (a, b, c))
    before = {ns: (link_bytes(ns), link_bytes(ns, "tx_bytes")) for ns in (ns_a, ns_b, ns_c)}

    gate, marks = tmp_path / "gate", tmp_path / "marks"
    marks.mkdir()
    driver = a.popen(DRIVER, str(gate), str(marks))
    lines = Lines(driver)
    try:
        hosts_of = lines.next(STEP_TIMEOUT)["nodes"]
        node_of = {host: node for node, host in hosts_of.items()}
        assert len(node_of) == 3, f"each namespace is its own host: {hosts_of}"

        # node-1 makes a 64 MiB object; node-2 and node-0 read it after a TCP transfer
        first = lines.next(STEP_TIMEOUT)
        assert [tuple(s) for s in first["sums"]] == [
            (first["expected"], hosts_of["node-1"]), (first["expected"], hosts_of["node-2"]),
            (first["expected"], hosts_of["node-0"])]
        assert first["driver"] == first["expected"]
        copies = {node: "created by copy from node-1" in text
                  for node, text in memory_by_node(first["memory"]).items()}
        assert copies == {"node-0": True, "node-1": False, "node-2": True}, first["memory"]
        # the bytes really crossed the veth links: node-1 sent three copies (to node-2,
        # node-0 and the driver), host a received two, host c one
        assert link_bytes(ns_b, "tx_bytes") - before[ns_b][1] >= 3 * OBJECT_BYTES
        assert link_bytes(ns_a) - before[ns_a][0] >= 2 * OBJECT_BYTES
        assert link_bytes(ns_c) - before[ns_c][0] >= OBJECT_BYTES
        for ns in (ns_a, ns_b, ns_c):
            local = {local for local, _, _ in tcp_sockets(ns)}
            assert {address.rsplit(".", 1)[0] for address in local} == {"10.77.0"}, (ns, local)

        # node-2 dies (every process of it) while a task runs there
        assert lines.next(STEP_TIMEOUT) == {"step": "blocked"}
        wait_until(lambda: any(mark.name.startswith(hosts_of["node-2"] + "-")
                               for mark in marks.iterdir()), STEP_TIMEOUT,
                   "the blocked task to start on node-2")
        (node2,) = c.started_pids()
        os.killpg(node2, signal.SIGKILL)
        killed = time.monotonic()
        wait_until(lambda: "node-2" not in status_nodes(a.plait("status").stdout),
                   NODE_TIMEOUT_SECONDS + DETECT_SLACK, "the head to drop node-2")
        assert time.monotonic() - killed < NODE_TIMEOUT_SECONDS + DETECT_SLACK

        # its task is retried on a live node, and succeeds there once the gate opens
        retry = wait_until(lambda: [m.name for m in marks.iterdir()
                                    if not m.name.startswith(hosts_of["node-2"] + "-")],
                           STEP_TIMEOUT, "the blocked task to be retried on another node")
        gate.touch()
        retried_on = lines.next(STEP_TIMEOUT)["retried_on"]
        assert node_of[retried_on] in ("node-0", "node-1")
        assert retry[0].startswith(retried_on + "-")

        # the object whose only copy node-2 held is lost to the task that reads it
        assert "only copy was on node-2" in lines.next(STEP_TIMEOUT)["lost"]
        assert lines.next(STEP_TIMEOUT) == {"step": "done"}
        assert driver.wait(STEP_TIMEOUT) == 0, lines.stderr()
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        driver.stdout.close()
        driver.stderr.close()


LOST_DRIVER = textwrap.dedent("""
    import io, json, os, sys, threading, time
    import numpy as np
    import plait

    gate = sys.argv[1]

    @plait.remote
    def make(nbytes):                   # a put inside a task: no lineage to rebuild it from
        return [plait.put(np.ones(nbytes, dtype=np.uint8))]

    @plait.remote
    def shout():
        print("hello from afar")

    plait.init(address="auto")
    (ref,) = plait.get(make.options(node="node-1").remote(8 << 20))     # known to be on node-1
    shown, sys.stdout = sys.stdout, io.StringIO()     # what the session prints, kept aside
    plait.get(shout.options(node="node-1").remote())
    deadline = time.monotonic() + 20
    while "hello from afar" not in sys.stdout.getvalue() and time.monotonic() < deadline:
        plait.get(make.options(node="node-0").remote(1))            # takes in what came
    shown.write(json.dumps({"step": "stored", "shouted": sys.stdout.getvalue()}) + "\\n")
    shown.flush()
    sys.stdout = shown
    deadline = time.monotonic() + 60
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.02)
    outcome = ["hung"]

    def get():
        try:
            plait.get(ref, timeout=5)
            outcome[0] = "no error"
        except Exception as error:
            outcome[0] = f"{type(error).__name__}: {error}"

    started = time.monotonic()
    thread = threading.Thread(target=get, daemon=True)
    thread.start()
    thread.join(6)                 # a get that knows the object is lost answers at once
    print(json.dumps({"outcome": outcome[0], "seconds": time.monotonic() - started}), flush=True)
    os._exit(0)        # a get stuck in a socket would hold the interpreter's exit
""")


def test_get_of_an_object_whose_node_died_raises_object_lost(lan, tmp_path):
    network, make_hosts = lan
    a, b = make_hosts(2)
    start_cluster([a, b])
    gate = tmp_path / "gate"
    driver = a.popen(LOST_DRIVER, str(gate))
    lines = Lines(driver)
    try:
        stored = lines.next(STEP_TIMEOUT)
        assert stored["step"] == "stored"
        # what a task on the other host printed, as Ray prints it: its pid and host
        assert re.fullmatch(rf"\(shout pid=\d+, ip={re.escape(Network.address(2))}\) "
                            r"hello from afar\n", stored["shouted"]), stored["shouted"]
        os.killpg(b.started_pids()[0], signal.SIGKILL)
        wait_until(lambda: "node-1" not in status_nodes(a.plait("status").stdout),
                   NODE_TIMEOUT_SECONDS + DETECT_SLACK, "the head to drop node-1")
        gate.touch()
        report = lines.next(STEP_TIMEOUT)
        assert report["outcome"].startswith("ObjectLostError"), report
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.wait(STEP_TIMEOUT)
        driver.stdout.close()
        driver.stderr.close()


# Runs inside the head's namespace: objects larger than every store (8 MiB), made on the
# other host and read on this one by a task and by the driver, over chunks (12 MiB) and
# over streams (40 MiB: at least STREAM_MIN_BYTES), sealed (the cluster has a key).
OVER_STORE_DRIVER = textwrap.dedent("""
    import json, zlib
    import numpy as np
    import plait

    def data(seed, nbytes):
        return np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8)

    @plait.remote
    def make(seed, nbytes):
        return data(seed, nbytes)

    @plait.remote
    def crc(array):
        return zlib.crc32(array)

    plait.init(address="auto")
    found = {}
    for seed, mib in ((1, 12), (2, 40)):
        made = make.options(node="node-1").remote(seed, mib << 20)
        found[mib] = [zlib.crc32(data(seed, mib << 20)),
                      plait.get(crc.options(node="node-0").remote(made), timeout=60),
                      zlib.crc32(plait.get(made, timeout=60))]
    print(json.dumps(found), flush=True)
""")


def test_objects_larger_than_every_store_are_read_on_another_host_through_its_disk(
        lan, tmp_path):
    """As Ray copies an object its store cannot hold through its disk: the holder serves it
    from its spill file, and the reader's node writes it into a file of its own."""
    network, make_hosts = lan
    a, b = make_hosts(2)
    start_cluster([a, b], store_bytes=8 * MiB)
    driver = a.popen(OVER_STORE_DRIVER)
    try:
        found = Lines(driver).next(STEP_TIMEOUT * 2)
        for mib, (expected, in_task, in_driver) in found.items():
            assert in_task == expected and in_driver == expected, (mib, found)
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.wait(STEP_TIMEOUT)
        driver.stdout.close()
        driver.stderr.close()
