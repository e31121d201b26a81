"""The ``plait`` command: start a head and a node, look at them, drive them, stop them.

Every command runs as a subprocess with its own $PLAIT_HOME (never ~/.plait) and a free
port, as a user would run it. Most tests look at one cluster started for the module; the
ones that stop, break or leak a cluster start their own. CLI clusters are named after the
`plait start` process, so their leak check is tests.netns.leftovers, not conftest's.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from plait.executor.wire.config import NODE_TIMEOUT_SECONDS
from plait.executor.wire.security import load_key
from tests.netns import (Host, Lines, command_lines, free_port, leftovers, status_nodes, sweep,
                         wait_until)

pytestmark = pytest.mark.cluster

MiB = 1 << 20
STORE = "256MiB"                # a size with a unit, as a person writes it
WORKERS = ("--num-workers", "1")
RELEASE_TIMEOUT = 10.0         # for the head to free what a departed driver held
RUN_DIRS = "/tmp/plait-*"       # where a node's run dir and spill dir go
FAIL_FAST = 15.0               # a command that cannot succeed says so well before 60 s

# A driver: node-1 makes an 8 MiB array, node-0 sums it (after a copy), the driver gets it.
DRIVER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import plait

    @plait.remote
    def make(nbytes):
        return np.full(nbytes, 3, dtype=np.uint8)

    @plait.remote
    def total(array):
        return int(array.sum(dtype=np.int64))

    plait.init(address=sys.argv[1])
    ref = make.options(node="node-1").remote(8 << 20)
    print(json.dumps({"nodes": [[n.id, n.is_head] for n in plait.nodes()],
                      "total": plait.get(total.options(node="node-0").remote(ref), timeout=60),
                      "got": int(plait.get(ref, timeout=60).sum(dtype=np.int64)),
                      "memory": plait.memory_summary()}))
""")


@dataclass
class Cluster:
    host: Host
    port: int
    head_said: str
    node_said: str

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def start(host: Host, *head_args: str) -> Cluster:
    """A head and node-1 on loopback, each with one worker and a 256 MiB store."""
    port = free_port()
    head = host.plait("start", "--head", "--port", str(port), *WORKERS, "--store-memory", STORE,
                      *head_args)
    node = host.plait("start", "--address", f"127.0.0.1:{port}", *WORKERS, "--store-memory",
                      STORE)
    return Cluster(host, port, head.stdout, node.stdout)


def stop_and_check(host: Host, session: str | None) -> None:
    """`plait stop`, then nothing of the session may be left anywhere."""
    try:
        host.stop()
        assert session is None or leftovers(session) == [], "plait stop left something behind"
    finally:
        if session is not None:
            sweep(session)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One CLI cluster for the tests that only look at it; nodes log at DEBUG, so the key
    check below reads everything plait and pyzmq log."""
    host = Host(tmp_path_factory.mktemp("plait-home"), extra_env={"PLAIT_LOG": "debug"})
    try:
        yield start(host)
    finally:
        stop_and_check(host, host.session)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh $PLAIT_HOME for one test (also for this process, in case plait reads it)."""
    monkeypatch.setenv("PLAIT_HOME", str(tmp_path / "plait-home"))
    monkeypatch.delenv("PLAIT_KEY_FILE", raising=False)
    return Host(tmp_path / "plait-home")


def memory_objects(host: Host) -> dict[str, int]:
    """``plait memory`` as {node: objects in its store}."""
    lines = host.plait("memory").stdout
    return {node: int(count) for node, count in
            re.findall(r"^(node-\d+): .*?, (\d+) objects in the store", lines, re.M)}


# -- start, status, memory ---------------------------------------------------------------

def test_start_prints_how_to_join_and_connect(cluster):
    said = cluster.head_said
    assert f"plait head node-0 started at {cluster.address}" in said
    assert f"plait start --address {cluster.address} --key-file" in said
    assert 'plait.init(address="auto")' in said
    assert f'plait.init(address="{cluster.address}")' in said
    assert "plait stop" in said
    assert f"plait node-1 joined the head at {cluster.address}" in cluster.node_said


def test_the_key_file_is_readable_by_its_owner_only(cluster):
    key_file = cluster.host.home / "cluster.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert cluster.host.state("cluster.json")["address"] == cluster.address


def test_status_lists_the_head_and_the_joined_node(cluster):
    said = cluster.host.plait("status").stdout
    assert f"plait cluster at {cluster.address}" in said
    assert "2 node(s)" in said
    rows = {line.split()[0]: line.split() for line in said.splitlines()[1:]}
    assert rows["node-0"][1] == "head" and rows["node-1"][1] == "node"
    pids = [int(rows[node][3]) for node in ("node-0", "node-1")]
    assert pids == cluster.host.started_pids()
    assert all("1 workers" in line for line in said.splitlines()[1:])
    assert all(address.startswith("tcp://127.0.0.1:") for address in status_nodes(said).values())


def test_memory_reports_both_stores(cluster):
    said = cluster.host.plait("memory").stdout
    assert re.search(r"^node-0: .* used of 256\.0 MiB", said, re.M), said
    assert re.search(r"^node-1: .* used of 256\.0 MiB", said, re.M), said


# -- drivers -----------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["auto", "host:port"])
def test_a_driver_joins_runs_on_both_nodes_and_leaves_the_cluster_as_it_found_it(cluster, how):
    address = "auto" if how == "auto" else cluster.address
    result = json.loads(cluster.host.python(DRIVER, address).stdout)
    assert result["nodes"] == [["node-0", True], ["node-1", False]]
    assert result["total"] == result["got"] == 3 * 8 * MiB
    assert re.search(r"8\.0 MiB +\w+ +created by copy from node-1", result["memory"]), \
        result["memory"]

    # the driver has gone: the cluster still runs, and holds none of its objects
    assert list(status_nodes(cluster.host.plait("status").stdout)) == ["node-0", "node-1"]
    wait_until(lambda: memory_objects(cluster.host) == {"node-0": 0, "node-1": 0},
               RELEASE_TIMEOUT, "the stores to release the departed driver's objects")


# A driver whose tasks print on both nodes: what its session prints (its stdout, kept
# aside) until both lines came, as JSON.
SHOUTER = textwrap.dedent("""
    import io, json, os, sys, time
    import plait

    @plait.remote
    def shout(node):
        print(f"hello from {node}")
        return os.getpid()

    plait.init(address=sys.argv[1])
    shown, sys.stdout = sys.stdout, io.StringIO()
    pids = plait.get([shout.options(node=n).remote(n) for n in ("node-0", "node-1")])
    wanted = [f"(shout pid={pid}) hello from {n}" for pid, n in zip(pids, ("node-0", "node-1"))]
    deadline = time.monotonic() + 20
    while not all(line in sys.stdout.getvalue() for line in wanted):
        assert time.monotonic() < deadline, sys.stdout.getvalue()
        plait.get(shout.options(node="node-0").remote("again"))   # takes in what came
    print(json.dumps({"wanted": wanted, "pids": pids}), file=shown)
""")


def test_what_tasks_print_reaches_the_driver_and_stays_in_each_nodes_log(cluster):
    result = json.loads(cluster.host.python(SHOUTER, cluster.address).stdout)
    for node, line in zip(("node-0", "node-1"), result["wanted"], strict=True):
        log = cluster.host.home / "logs" / f"{node}.log"
        wait_until(lambda: line in log.read_text(errors="replace"), RELEASE_TIMEOUT,
                   f"{node}'s log to keep its worker's line")


# -- the key -----------------------------------------------------------------------------

def test_the_key_shows_nowhere(cluster):
    """Not in any process's argv, any log line (at DEBUG), nor in a repr."""
    key = load_key(str(cluster.host.home / "cluster.key"))
    halves = [key.public.decode(), key.secret.decode()]
    cluster.host.python(DRIVER, "auto")              # a driver has connected and logged
    for pid in cluster.host.started_pids():
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            config = json.loads(f.read().split(b"\0")[3])
        assert config["key_file"] == str(cluster.host.home / "cluster.key"), \
            "a CLI cluster always runs with the key (CurveZMQ), loopback or not"
    for line in command_lines():
        assert not any(half in line for half in halves), f"the key in argv: {line[:100]}"
    logs = {path.name: path.read_text(errors="replace")
            for path in (cluster.host.home / "logs").iterdir()}
    assert sorted(logs) == ["node-0.log", "node-1.log"]
    assert "plait.auth" in logs["node-0.log"], "DEBUG logging is on, so the check means something"
    for name, text in logs.items():
        assert not any(half in text for half in halves), f"the key in {name}"
    assert not any(half in repr(key) or half in str(key) for half in halves)


# -- refusals and failures ---------------------------------------------------------------

def test_a_second_head_from_the_same_home_is_refused(cluster):
    key_before = (cluster.host.home / "cluster.key").read_bytes()
    result = cluster.host.plait("start", "--head", "--port", str(free_port()), *WORKERS,
                                check=False)
    assert result.returncode == 1
    assert "still running" in result.stderr and "plait stop" in result.stderr
    assert (cluster.host.home / "cluster.key").read_bytes() == key_before
    assert len(status_nodes(cluster.host.plait("status").stdout)) == 2


@pytest.mark.parametrize("command", ["status", "memory"])
def test_without_a_cluster_status_and_memory_fail_clearly(home, command):
    result = home.plait(command, check=False)
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"plait {command}: address='auto' found no cluster started on this host" in \
        result.stderr
    assert "plait start --head" in result.stderr


def test_status_of_an_address_where_no_head_listens_fails_in_bounded_time(home):
    started = time.monotonic()
    result = home.plait("status", "--address", f"127.0.0.1:{free_port()}", check=False)
    assert result.returncode == 1
    assert "no plait head answered at 127.0.0.1:" in result.stderr
    assert time.monotonic() - started < FAIL_FAST


def test_stop_leaves_nothing(home):
    start(home)
    session = home.session
    assert len(leftovers(session)) >= 6     # 2 nodes and 2 workers, 2 arenas, run dirs
    said = home.plait("stop").stdout
    assert said.strip() == "stopped 2 plait node process(es) started on this host"
    assert leftovers(session) == []
    assert home.state("cluster.json") is None and home.state("started.json") is None
    result = home.plait("status", check=False)
    assert result.returncode == 1 and "found no cluster" in result.stderr
    assert home.plait("stop").stdout.startswith("stopped 0 ")


def test_a_head_that_cannot_listen_fails_fast_and_leaves_nothing(home):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = home.argv(sys.executable, "-m", "plait.executor.cli", "start", "--head",
                            "--port", str(port), *WORKERS, "--store-memory", STORE)
        started = time.monotonic()
        process = subprocess.Popen(command, env=home.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        try:
            out, err = process.communicate(timeout=FAIL_FAST * 2)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 1, out + err
    assert time.monotonic() - started < FAIL_FAST
    assert "node-0 failed to start" in err and "Address already in use" in err
    session = f"{process.pid:x}-c"
    left = leftovers(session)
    sweep(session)
    assert left == []
    assert home.state("cluster.json") is None


def test_a_head_on_port_0_listens_on_a_free_port_that_cluster_json_names(home):
    said = home.plait("start", "--head", "--port", "0", *WORKERS, "--store-memory", STORE)
    session = home.session
    address = home.state("cluster.json")["address"]
    host, _, port = address.rpartition(":")
    assert host == "127.0.0.1" and 0 < int(port) <= 65535
    assert f"started at {address}" in said.stdout
    assert list(status_nodes(home.plait("status").stdout)) == ["node-0"]
    stop_and_check(home, session)


@pytest.mark.parametrize("bad, said", [
    (("--port", "70000"), "argument --port: a port is 0 to 65535"),
    (("--num-workers", "-1"), "argument --num-workers: a whole number >= 0"),
    (("--num-gpus", "-2"), "argument --num-gpus: a whole number >= 0"),
    (("--store-memory", "0"), "store_memory must be a number of bytes >= 1 MiB"),
    (("--store-memory", "1000TiB"), "does not fit: /dev/shm has only"),
    (("--resources", "nojson"), "argument --resources: a JSON object of names and amounts"),
    (("--resources", '{"disk": -1}'), "amounts >= 0"),
    (("--resources", '{"CPU": 1}'), "CPU is not a custom resource"),
])
def test_start_refuses_bad_arguments_at_once_and_starts_nothing(home, bad, said):
    before = set(glob.glob(RUN_DIRS))
    started = time.monotonic()
    result = home.plait("start", "--head", "--port", "0", *WORKERS, *bad, check=False)
    assert result.returncode != 0
    assert said in result.stderr
    assert time.monotonic() - started < FAIL_FAST
    assert home.state("cluster.json") is None and home.state("started.json") is None
    assert set(glob.glob(RUN_DIRS)) <= before          # no run dir made, then left


def test_a_head_bound_to_an_address_not_of_this_host_fails_at_once(home):
    result = home.plait("start", "--head", "--port", "0", "--bind", "192.0.2.1", *WORKERS,
                        check=False)
    assert result.returncode == 1
    assert "plait start: cannot listen on 192.0.2.1" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_start_interrupted_while_it_waits_stops_its_node(home, monkeypatch):
    """Ctrl-C (or SIGTERM, which `plait start` takes as one) before the head counted the
    new node: the node is stopped and removed, not left running where `plait stop`, which
    knows only the nodes whose start ended, cannot find it."""
    from plait.executor import cli

    waited = []

    def interrupted(self, *args, **kwargs):
        waited.append(True)
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.Connection, "hello", interrupted)
    said = cli.main(["start", "--head", "--port", "0", *WORKERS, "--store-memory", STORE])
    assert said == 130 and waited
    session = f"{os.getpid():x}-c"
    left = leftovers(session)
    sweep(session)
    assert left == []
    assert home.state("cluster.json") is None and home.state("started.json") is None


# -- a driver that dies ------------------------------------------------------------------

KILLED_DRIVER = textwrap.dedent("""
    import json
    import numpy as np
    import plait

    plait.init(address="auto")
    ref = plait.put(np.ones(8 << 20, dtype=np.uint8))
    print(json.dumps({"held": plait.get(ref, timeout=30).nbytes}), flush=True)
    input()                              # the test kills us here
""")


@contextlib.contextmanager
def driver_on_a_head(home: Host, script: str) -> Iterator[tuple[subprocess.Popen, Lines]]:
    """A head of one worker started here, and a driver of it that reads its stdin; both
    stopped after (the driver killed if it is still there), and nothing may be left."""
    port = free_port()
    home.plait("start", "--head", "--port", str(port), *WORKERS, "--store-memory", STORE)
    session = home.session
    driver = subprocess.Popen(home.argv(sys.executable, "-c", script, str(port)),
                              env=home.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        yield driver, Lines(driver)
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.wait()
        for stream in (driver.stdin, driver.stdout, driver.stderr):
            stream.close()
        stop_and_check(home, session)


def test_what_a_killed_driver_held_is_released(home):
    with driver_on_a_head(home, KILLED_DRIVER) as (driver, lines):
        assert lines.next(60) == {"held": 8 << 20}
        assert memory_objects(home) == {"node-0": 1}
        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
        wait_until(lambda: memory_objects(home) == {"node-0": 0}, 2 * NODE_TIMEOUT_SECONDS,
                   "the head to release what the killed driver held")


GPU_DRIVER = textwrap.dedent("""
    import json
    import plait

    @plait.remote(num_gpus=1)
    def where():
        return plait.get_runtime_context().get_node_id(), plait.get_gpu_ids()

    plait.init(address="auto")
    ref = where.remote()
    print(json.dumps({"ready": len(plait.wait([ref], timeout=0.1)[0])}), flush=True)
    input()                              # the test starts a node with a GPU here
    print(json.dumps({"ran": plait.get(ref, timeout=60)}), flush=True)
""")


def test_a_task_asking_for_what_no_node_has_runs_once_a_node_with_it_joins(home):
    with driver_on_a_head(home, GPU_DRIVER) as (driver, lines):
        assert lines.next(60) == {"ready": 0}
        port = driver.args[-1]
        home.plait("start", "--address", f"127.0.0.1:{port}", *WORKERS, "--store-memory",
                   STORE, "--num-gpus", "1", "--resources", '{"disk": 2}')
        driver.stdin.write("\n")
        driver.stdin.flush()
        assert lines.next(60) == {"ran": ["node-1", [0]]}


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_a_head_started_with_its_dashboard_prints_the_url_and_stop_stops_it(home):
    """The URL works with its token only; `plait stop` takes the dashboard down too."""
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    from urllib.error import HTTPError
    from urllib.request import Request, urlopen

    port = free_port()
    said = home.plait("start", "--head", "--port", str(port), *WORKERS, "--store-memory",
                      STORE, "--dashboard").stdout
    base, token = re.search(r"plait dashboard: (http://127\.0\.0\.1:\d+)/\?token=(\S+)",
                            said).groups()
    session = home.session
    (pid,) = [e["pid"] for e in home.state("started.json") if e["node"] == "dashboard"]
    try:
        with pytest.raises(HTTPError) as refused:
            urlopen(base + "/metrics", timeout=10)
        refused.value.close()
        assert refused.value.code == 403
        with urlopen(Request(base + "/metrics", headers={"Authorization": f"Bearer {token}"}),
                     timeout=10) as answer:
            assert 'plait_nodes{state="alive"} 1' in answer.read().decode().splitlines()
        said = home.plait("stop").stdout
        assert said.strip() == ("stopped 1 plait node process(es) started on this host and "
                                "its dashboard")
        assert _gone(pid)
    finally:
        stop_and_check(home, session)
