"""Security of a cluster started with `plait start`: only holders of the cluster key get in.

The cluster under attack is a CLI head and node-1 on loopback (always keyed: CurveZMQ with
a ZAP check of the client's key on the head's port; on each node's transfer port, plain
ZeroMQ carrying frames sealed with AES-256-GCM under the bulk key, wire/bulk.py). Each rogue
peer connects to every TCP port the cluster listens on and sends what would do harm if it
were read:

    bomb       a pickle whose __reduce__ creates a canary file (code run by unpickling)
    submit     a well-formed plait Submit whose task creates a canary (code run on a worker)
    read       a well-formed plait Subscribe (head) or Fetch (transfer port) of an object a
               keyed driver holds (data leaving the cluster)

A rogue is kept out if no canary appears (over a bounded wait, and again after a keyed
driver's round trip through the head and both nodes proves they were processing), it
receives nothing, and the keyed driver still works. A transfer port lets a plain ZeroMQ
peer finish its handshake (NULL mechanism), but drops each of its frames unopened: not
sealed under the bulk key. ``test_the_payloads_are_live_with_the_key``
sends the same bytes with the key and sees the Submit's task run and each read answered, so
no rogue test passes on a dud. The bomb is live as a pickle (unpickled here, it acts) but
runs nothing even from a keyed peer: every port decodes a frame before it trusts it
(``test_a_bomb_from_a_keyed_peer_runs_nothing``).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

import plait
from plait.errors import ClusterError
from plait.executor.wire import protocol as p
from plait.executor.wire.bulk import REQUEST, SealedFrames, reply_data
from plait.executor.wire.security import (ClusterKey, bulk_key, check_bind, generate_key_file,
                                          load_key, secure_client)
from plait.executor.wire.config import NodeConfig
from tests.netns import (Host, Network, free_port, leftovers, netns_unavailable, status_nodes,
                         sweep, tcp_sockets, wait_until)

pytestmark = pytest.mark.cluster

MiB = 1 << 20
WATCH_SECONDS = 2.0            # how long the rogue's effects are watched for
ACT_TIMEOUT = 30.0             # a keyed payload acts within this (a task on an idle worker)
ZMTP_GREETING = 64             # bytes a ZMTP 3 server sends before it knows who is calling
ANSWER_MS = 3000               # a live node answers a keyed request in milliseconds
HANDSHAKE_FAILED = {zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                    zmq.EVENT_HANDSHAKE_FAILED_AUTH}


@dataclass
class Target:
    """A cluster under attack, and a keyed driver (this process) that uses it."""

    host: Host
    key: ClusterKey
    ports: dict[str, str]          # "head", "node-0 transfers", ... -> tcp://host:port
    reads: dict[str, bytes]        # port -> the encoded read of an object served there
    canaries: Path
    held: tuple[plait.ObjectRef, ...] = ()     # what the reads read: alive with the module


class Bomb:
    """Unpickling this creates ``path``: what any code execution on the far side would do."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def bomb(path: Path, target: Target, port: str) -> bytes:
    return pickle.dumps(Bomb(path))


def submit(path: Path, target: Target, port: str) -> bytes:
    """A Submit as a driver sends it, with a task that creates ``path`` on node-0."""
    def touch(where):
        open(where, "w").close()
        return 1

    task = f"rogue-{path.name}"
    spec = p.TaskSpec(id=task, function_id="touch@rogue", function_name="touch",
                      payload=cloudpickle.dumps(((str(path),), {}), protocol=5), deps=(),
                      nested=(), outputs=(task,), max_retries=0, node="node-0")
    return p.encode(p.Submit((("touch@rogue", cloudpickle.dumps(touch, protocol=5)),), (spec,)))


def read(path: Path, target: Target, port: str) -> bytes:
    return target.reads[port]


PAYLOADS: dict[str, Callable[[Path, Target, str], bytes]] = {
    "bomb": bomb, "submit": submit, "read": read}


def round_trip() -> None:
    """One keyed run through the head and both nodes' workers, with a transfer between them."""
    @plait.remote
    def make(nbytes):
        return np.arange(nbytes, dtype=np.uint8)

    @plait.remote
    def total(array):
        return int(array.sum(dtype=np.int64))

    ref = make.options(node="node-1").remote(4 * MiB)
    expected = int(np.arange(4 * MiB, dtype=np.uint8).sum(dtype=np.int64))
    assert plait.get(total.options(node="node-0").remote(ref), timeout=ACT_TIMEOUT) == expected


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    """A CLI head and node-1 on loopback; this process is their keyed driver."""
    home = tmp_path_factory.mktemp("plait-home")
    host = Host(home)
    port = free_port()
    store = ("--num-workers", "1", "--store-memory", str(128 * MiB))
    session = None
    try:
        host.plait("start", "--head", "--port", str(port), *store)
        session = host.session
        host.plait("start", "--address", f"127.0.0.1:{port}", *store)
        transfers = status_nodes(host.plait("status").stdout)
        with pytest.MonkeyPatch.context() as env:
            env.setenv("PLAIT_HOME", str(home))
            env.delenv("PLAIT_KEY_FILE", raising=False)
            plait.init(address="auto")
            try:
                yield held_objects(host, port, transfers, tmp_path_factory.mktemp("canaries"))
            finally:
                plait.shutdown()
    finally:
        host.plait("stop", check=False)
        if session is not None:
            left = leftovers(session)
            sweep(session)
            assert left == [], "plait stop left something behind"


def held_objects(host: Host, port: int, transfers: dict[str, str], canaries: Path) -> Target:
    """Objects the keyed driver holds where each port serves them, and the reads of them."""
    @plait.remote
    def make(nbytes):
        return np.ones(nbytes, dtype=np.uint8)

    small = plait.put(b"the cluster's data")                       # inline, at the head
    on_node0 = plait.put(np.ones(MiB, dtype=np.uint8))               # in node-0's store
    on_node1, = plait.persist(make.options(node="node-1").remote(MiB))
    reads = {"head": p.encode(p.Subscribe((small.id,))),
             "node-0 transfers": p.encode(p.Fetch(1, on_node0.id, same_host=False)),
             "node-1 transfers": p.encode(p.Fetch(1, on_node1.id, same_host=False))}
    # (a rogue sends these as they are; a keyed peer seals a transfer port's: ``seal``)
    return Target(host, load_key(str(host.home / "cluster.key")),
                  {"head": f"tcp://127.0.0.1:{port}", "node-0 transfers": transfers["node-0"],
                   "node-1 transfers": transfers["node-1"]}, reads, canaries,
                  (small, on_node0, on_node1))


def canaries_found(target: Target, prefix: str = "") -> list[str]:
    """Canary files (named rogue-port-payload) created so far, those starting with ``prefix``."""
    return sorted(path.name for path in target.canaries.iterdir()
                  if path.name.startswith(prefix))


# -- rogue ZeroMQ peers --------------------------------------------------------------------

def no_curve(sock: zmq.Socket, key: ClusterKey) -> None:
    """The NULL mechanism: what a plain ZeroMQ client speaks."""


def another_clusters_key(sock: zmq.Socket, key: ClusterKey) -> None:
    public, secret = zmq.curve_keypair()
    secure_client(sock, ClusterKey(public, secret))


def our_server_key_its_own_client_key(sock: zmq.Socket, key: ClusterKey) -> None:
    """Knows the server's public key; only the ZAP check of client keys can stop it."""
    public, secret = zmq.curve_keypair()
    sock.curve_serverkey = key.public
    sock.curve_publickey = public
    sock.curve_secretkey = secret


def our_public_key_not_its_secret(sock: zmq.Socket, key: ClusterKey) -> None:
    """Claims the cluster's public key as its own, without the secret that proves it."""
    _, secret = zmq.curve_keypair()
    sock.curve_serverkey = key.public
    sock.curve_publickey = key.public
    sock.curve_secretkey = secret


ROGUES = {"no-curve": no_curve, "another-clusters-key": another_clusters_key,
          "our-server-key-its-own-client-key": our_server_key_its_own_client_key,
          "our-public-key-not-its-secret": our_public_key_not_its_secret}


@dataclass
class Attack:
    label: str
    sock: zmq.Socket
    monitor: zmq.Socket
    events: set[int]
    received: list[bytes]


def attack(ctx: zmq.Context, rogue: str, target: Target, port: str, payload: str) -> Attack:
    """Connect as ``rogue`` and queue ``payload``: it would leave once a handshake succeeds.

    If the handshake has already failed, ZeroMQ may have dropped the connection's queue and
    the send finds nowhere to go (EAGAIN); either way only a successful handshake lets bytes
    through, which the monitor would show.
    """
    label = f"{rogue}-{port.replace(' ', '-')}-{payload}"
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    ROGUES[rogue](sock, target.key)
    monitor = sock.get_monitor_socket()
    sock.connect(target.ports[port])
    try:
        sock.send(PAYLOADS[payload](target.canaries / label, target, port), zmq.NOBLOCK)
    except zmq.Again:
        pass
    return Attack(label, sock, monitor, set(), [])


def watch(attacks: list[Attack], target: Target, rogue: str, seconds: float) -> None:
    """Collect socket events and anything received; stop at once if a canary appears."""
    poller = zmq.Poller()
    for each in attacks:
        poller.register(each.sock, zmq.POLLIN)
        poller.register(each.monitor, zmq.POLLIN)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0 and not canaries_found(target, rogue):
        for sock, _ in poller.poll(min(left, 0.1) * 1000):
            for each in attacks:
                if sock is each.monitor:
                    each.events.add(recv_monitor_message(sock)["event"])
                elif sock is each.sock:
                    each.received.append(sock.recv())


@pytest.mark.parametrize("rogue", ROGUES)
def test_a_zeromq_peer_without_the_key_gets_nothing_through(target, rogue):
    ctx = zmq.Context()
    attacks = []
    try:
        for port in target.ports:
            for payload in PAYLOADS:
                attacks.append(attack(ctx, rogue, target, port, payload))
        watch(attacks, target, rogue, WATCH_SECONDS)
        assert canaries_found(target, rogue) == []
        round_trip()                   # the head and both nodes were up and working meanwhile
        watch(attacks, target, rogue, 0.1)
        assert canaries_found(target, rogue) == []
        for each in attacks:
            assert each.received == [], f"{each.label}: the rogue got an answer"
            assert zmq.EVENT_CONNECTED in each.events, f"{each.label}: never reached the port"
            if is_transfer_port(each.label) and rogue == "no-curve":
                continue        # in through the NULL handshake; its frames dropped unopened
            assert each.events & HANDSHAKE_FAILED, f"{each.label}: {each.events}"
            assert zmq.EVENT_HANDSHAKE_SUCCEEDED not in each.events, each.label
            if rogue == "our-server-key-its-own-client-key" and not is_transfer_port(
                    each.label):                                 # refused by our ZAP check
                assert zmq.EVENT_HANDSHAKE_FAILED_AUTH in each.events, each.label
    finally:
        ctx.destroy(linger=0)


RAW = {"garbage": lambda path, target, port: os.urandom(4096), **PAYLOADS}


def test_raw_tcp_bytes_are_dropped_at_the_door(target):
    """Bytes that are not a CurveZMQ handshake get the ZMTP greeting, then a hang-up; a
    transfer port (NULL mechanism, its frames sealed instead) may wait for more of them, but
    sends nothing else."""
    answers = {}
    for port, address in target.ports.items():
        host, _, number = address.removeprefix("tcp://").rpartition(":")
        for payload, build in RAW.items():
            label = f"raw-{port.replace(' ', '-')}-{payload}"
            with socket.create_connection((host, int(number)), timeout=WATCH_SECONDS) as sock:
                sock.sendall(build(target.canaries / label, target, port))
                answers[label] = receive_until_closed(sock, WATCH_SECONDS)
    for label, (received, closed) in answers.items():
        assert closed or is_transfer_port(label), f"{label}: the port kept the connection open"
        assert len(received) <= ZMTP_GREETING, f"{label}: {received[:80]!r}"
        assert received[:1] in (b"", b"\xff"), f"{label}: {received[:80]!r}"
    round_trip()
    assert canaries_found(target) == []        # nor any late one of the rogues above


def receive_until_closed(sock: socket.socket, seconds: float) -> tuple[bytes, bool]:
    """What the far end sends before it hangs up, and whether it did within ``seconds``."""
    received = b""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            return received, False
        except ConnectionResetError:
            return received, True
        if not chunk:
            return received, True
        received += chunk
    return received, False


def is_transfer_port(label: str) -> bool:
    return "transfers" in label


def keyed_sockets(ctx: zmq.Context, target: Target) -> dict[str, zmq.Socket]:
    """A keyed DEALER connected to each port of the cluster (CurveZMQ to the head's; a
    transfer port's is plain ZeroMQ, its frames sealed: ``seal``)."""
    socks = {}
    for port, address in target.ports.items():
        socks[port] = sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if not is_transfer_port(port):
            secure_client(sock, target.key)
        sock.connect(address)
    return socks


def seal(frame: bytes, key: ClusterKey, port: str) -> bytes:
    """``frame`` as a keyed peer sends it to ``port``: sealed under the bulk key on a
    transfer port, as it is on the head's (CurveZMQ encrypts it there)."""
    if not is_transfer_port(port):
        return frame
    return SealedFrames(bulk_key(key)).seal(frame, REQUEST)


def read_back(sock: zmq.Socket, target: Target, port: str) -> None:
    """Send the port's read and take its whole answer: a Ready (head), or a FetchHeader and
    its chunks, then FetchDone (a transfer port). A port answers its peer's frames in order,
    so once the answer is in, every frame sent before it has been read."""
    request = seal(target.reads[port], target.key, port)
    sock.send(request)
    assert sock.poll(ACT_TIMEOUT * 1000), f"{port}: no answer to a keyed read"
    if port == "head":
        answer = p.decode(sock.recv())
        assert isinstance(answer, p.Ready), answer
        return
    frames = SealedFrames(bulk_key(target.key))
    fetch = p.decode(target.reads[port])
    answer = frames.read(sock.recv(), reply_data(frames.ticket(request), fetch.object_id, -1))
    assert isinstance(answer, p.FetchHeader) and answer.nbytes > 0, answer
    for _ in range(-(-answer.nbytes // MiB)):       # the chunks, then unpin
        assert sock.poll(ACT_TIMEOUT * 1000)
        sock.recv()
    sock.send(frames.message(p.FetchDone(answer.request), REQUEST))


def test_the_payloads_are_live_with_the_key(target):
    """The Submit and the reads, sent with the cluster key, do act: the rogue tests are not
    vacuous."""
    ctx = zmq.Context()
    try:
        socks = keyed_sockets(ctx, target)
        socks["head"].send(submit(target.canaries / "keyed-head-submit", target, "head"))
        wait_until(lambda: "keyed-head-submit" in canaries_found(target), ACT_TIMEOUT,
                   "the keyed Submit's task to run")
        for port, sock in socks.items():
            read_back(sock, target, port)
        round_trip()
    finally:
        ctx.destroy(linger=0)


def test_a_bomb_from_a_keyed_peer_runs_nothing(target, tmp_path):
    """A keyed peer's frame that would run code as it is unpickled is refused unrun, and each
    port goes on serving (the frame is decoded before it is trusted)."""
    pickle.loads(bomb(tmp_path / "here", target, "head")).close()  # the bomb is live
    assert (tmp_path / "here").exists()
    ctx = zmq.Context()
    try:
        socks = keyed_sockets(ctx, target)
        for port, sock in socks.items():
            sock.send(seal(bomb(target.canaries / f"keyed-bomb-{port.replace(' ', '-')}",
                                target, port), target.key, port))
        for port, sock in socks.items():
            read_back(sock, target, port)          # answered: the bomb before it was read
        assert canaries_found(target, "keyed-bomb-") == []
        round_trip()
    finally:
        ctx.destroy(linger=0)


# -- a keyed peer's malformed frame ----------------------------------------------------------

@pytest.mark.parametrize("port", ["head", "node-0 transfers"])
def test_a_malformed_frame_from_a_keyed_peer_does_not_kill_the_node(tmp_path, port):
    host = Host(tmp_path / "plait-home")
    number = free_port()
    host.plait("start", "--head", "--port", str(number), "--num-workers", "1",
               "--store-memory", str(64 * MiB))
    session = host.session
    key = load_key(str(host.home / "cluster.key"))
    address = {"head": f"tcp://127.0.0.1:{number}",
               "node-0 transfers": status_nodes(host.plait("status").stdout)["node-0"]}[port]
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if not is_transfer_port(port):
        secure_client(sock, key)
    sock.connect(address)
    try:
        question = p.Hello(os.getpid(), 1) if port == "head" else p.Fetch(1, "nothing", False)
        sock.send(seal(p.encode(question), key, port))
        assert sock.poll(ANSWER_MS), "the node does not answer even a good frame"
        sock.recv()
        sock.send(seal(b"\x80\x05not a pickle", key, port))
        sock.send(seal(p.encode(question), key, port))
        assert sock.poll(ANSWER_MS), "the node did not answer after a malformed frame"
    finally:
        ctx.destroy(linger=0)
        host.plait("stop", check=False)
        left = leftovers(session)
        sweep(session)
        assert left == []


# -- listening beyond loopback -------------------------------------------------------------

@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost"])
def test_check_bind_allows_loopback_without_a_key(host):
    check_bind(host, None)


@pytest.mark.parametrize("host", ["10.77.0.1", "0.0.0.0", "*", "192.0.2.7"])
def test_check_bind_refuses_beyond_loopback_without_a_key(host):
    with pytest.raises(ClusterError, match=re.escape(f"refusing to listen on {host} without "
                                                     f"a cluster key")):
        check_bind(host, None)
    check_bind(host, ClusterKey(*zmq.curve_keypair()))       # with a key: allowed


@pytest.fixture
def lone_host():
    """One network namespace with the address 10.77.0.1, so a failed refusal exposes nothing."""
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(reason)
    network = Network(f"{os.getpid():x}k")
    try:
        (namespace,) = network.create(1)
        yield namespace
    finally:
        network.destroy()


def node_config(tmp_path: Path, key_file: str) -> tuple[NodeConfig, int]:
    """A head's config listening on 10.77.0.1 (the lone host's address)."""
    session = f"{os.getpid():x}-k"
    port = free_port()
    run_dir = tempfile.mkdtemp(prefix=f"plait-{session}-")
    address = Network.address(1)
    return NodeConfig(session=session, node="node-0", num_workers=1, store_capacity=16 * MiB,
                      run_dir=run_dir, parent_pid=os.getpid(), spill_dir=None,
                      client_address=f"tcp://{address}:{port}",
                      transfer_address=f"tcp://{address}:*", key_file=key_file), port


def run_node(namespace: str, config: NodeConfig, **kwargs) -> subprocess.Popen:
    command = ["ip", "netns", "exec", namespace, sys.executable, "-m", "plait.executor.node.server",
               json.dumps(asdict(config))]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, **kwargs)


def test_a_node_process_refuses_to_listen_beyond_loopback_without_a_key(lone_host, tmp_path):
    config, _ = node_config(tmp_path, key_file="")
    process = run_node(lone_host, config)
    try:
        out, err = process.communicate(timeout=ACT_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode != 0
    assert err.strip().splitlines()[-1] == (
        "plait.errors.ClusterError: refusing to listen on 10.77.0.1 without a cluster key: "
        "anyone who can reach it could run code here. Start with a key file, or bind to "
        "127.0.0.1")
    assert [state for _, _, state in tcp_sockets(lone_host) if state == "0A"] == []
    os.rmdir(config.run_dir)                  # ours: the node never got to use it
    assert leftovers(config.session) == []    # its worker and arena went with it


def test_with_the_key_a_node_process_listens_beyond_loopback(lone_host, tmp_path):
    key_file = str(tmp_path / "cluster.key")
    generate_key_file(key_file)
    config, port = node_config(tmp_path, key_file=key_file)
    process = run_node(lone_host, config)
    try:
        wait_until(lambda: ("10.77.0.1", "0A") in {(local, state) for local, _, state in
                                                   tcp_sockets(lone_host)},
                   ACT_TIMEOUT, "the keyed node to listen on 10.77.0.1")
        assert process.poll() is None
        process.terminate()
        process.communicate(timeout=ACT_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert leftovers(config.session) == []
