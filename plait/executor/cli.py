"""``plait start | stop | status | memory``: run a cluster as background services.

    plait start --head [--port 7480] [--bind 127.0.0.1] [--num-workers N] [--store-memory S]
    plait start --address HOST:PORT [--key-file F] [--bind IP]     # join a head
    plait status [--address HOST:PORT]                             # nodes, workers, store use
    plait memory [--address HOST:PORT]                             # plait.memory_summary()
    plait stop                                                     # what plait start started here

State lives in ``$PLAIT_HOME`` (default ``~/.plait``): ``cluster.json`` (the head's address,
written by ``start --head``), ``cluster.key`` (the Curve key pair, mode 0600),
``started.json`` (processes started on this host) and ``logs/``. A cluster started this way
always uses the key (see plait.executor.security), loopback or not.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import select
import signal
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

from plait.errors import ClusterError, PlaitError
from plait.executor import protocol as p
from plait.executor.client import _THREAD_LIMITS, Connection, JoinedCluster
from plait.executor.security import generate_key_file, load_key
from plait.executor.server import NodeConfig
from plait.store.arena import default_capacity

DEFAULT_PORT = 7480
STOP_GRACE_SECONDS = 10.0


def home() -> str:
    return os.environ.get("PLAIT_HOME") or os.path.join(os.path.expanduser("~"), ".plait")


def _path(name: str) -> str:
    return os.path.join(home(), name)


def joined_cluster(address: str) -> JoinedCluster:
    """What ``plait.init(address=...)`` connects to: "auto" is the cluster started here."""
    if address == "auto":
        try:
            with open(_path("cluster.json")) as f:
                address = json.load(f)["address"]
        except (OSError, ValueError, KeyError):
            raise ClusterError(f"address='auto' found no cluster started on this host (no "
                               f"{_path('cluster.json')}); run `plait start --head` "
                               f"first") from None
    key_file = os.environ.get("PLAIT_KEY_FILE") or _path("cluster.key")
    key = load_key(key_file) if os.path.exists(key_file) else None
    return JoinedCluster(f"tcp://{_host_port(address)}", key)


def _host_port(address: str) -> str:
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"a cluster address looks like HOST:PORT, got {address!r}")
    return f"{host}:{port}"


# -- start ---------------------------------------------------------------------------------

def start_head(args: argparse.Namespace) -> int:
    os.makedirs(_path("logs"), mode=0o700, exist_ok=True)
    key_file = _path("cluster.key")
    generate_key_file(key_file)
    session = f"{os.getpid():x}-c"
    address = f"{args.bind}:{args.port}"
    config = _config(args, session, "node-0", head_address="",
                     client_address=f"tcp://{address}", key_file=key_file)
    pid = _launch_detached(config)
    welcome = _wait_for(JoinedCluster(f"tcp://{address}", load_key(key_file)), 1, pid)
    _write_json("cluster.json", {"address": address, "session": welcome.session})
    _remember(config, pid)
    print(f"plait head node-0 started at {address} (pid {pid}, {args.num_workers} workers)\n"
          f"  join another host:  plait start --address {address} --key-file <copy of "
          f"{key_file}>\n  connect a driver:   plait.init(address=\"auto\")  (on this host) or "
          f"plait.init(address=\"{address}\")\n  stop:               plait stop")
    return 0


def start_node(args: argparse.Namespace) -> int:
    os.makedirs(_path("logs"), mode=0o700, exist_ok=True)
    address = _host_port(args.address)
    key_file = args.key_file or _path("cluster.key")
    key = load_key(key_file)
    cluster = JoinedCluster(f"tcp://{address}", key)
    welcome = _ask(cluster)
    numbers = [int(n.id.rpartition("-")[2]) for n in welcome.nodes]
    node = f"node-{max(numbers) + 1}"
    config = _config(args, welcome.session, node, head_address=f"tcp://{address}",
                     client_address="", key_file=os.path.abspath(key_file))
    pid = _launch_detached(config)
    _wait_for(cluster, len(welcome.nodes) + 1, pid)
    _remember(config, pid)
    print(f"plait {node} joined the head at {address} (pid {pid}, {args.num_workers} workers)")
    return 0


def _config(args: argparse.Namespace, session: str, node: str, **addresses: str) -> NodeConfig:
    run_dir = tempfile.mkdtemp(prefix=f"plait-{session}-{node}-")
    spill = os.path.join(tempfile.gettempdir(), f"plait-{session}-{node}-spill")
    return NodeConfig(session, node, args.num_workers, args.store_memory or default_capacity(),
                      run_dir, 0, spill, transfer_address=f"tcp://{args.bind}:*", **addresses)


def _launch_detached(config: NodeConfig) -> int:
    """Start a node process in its own session, logging to $PLAIT_HOME/logs/NODE.log."""
    env = dict(os.environ)
    for name in _THREAD_LIMITS:
        env.setdefault(name, "1")
    log = open(_path(f"logs/{config.node}.log"), "ab")
    command = [sys.executable, "-m", "plait.executor.server",
               json.dumps(dataclasses.asdict(config))]
    process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log,
                               stderr=log, start_new_session=True)
    log.close()
    return process.pid


def _wait_for(cluster: JoinedCluster, nodes: int, pid: int) -> p.Welcome:
    conn = Connection(cluster)
    try:
        return conn.handshake(nodes)
    except PlaitError as error:
        _terminate([pid])
        raise ClusterError(f"{error}; see {_path('logs')}") from None
    finally:
        conn.close()


def _ask(cluster: JoinedCluster) -> p.Welcome:
    conn = Connection(cluster)
    try:
        conn.send(p.Hello(os.getpid(), 1))
        reply = conn.receive(10.0)
        if not isinstance(reply, p.Welcome):
            raise ClusterError(f"no plait head answered at {cluster.client_address} "
                               f"(is the key right?)")
        return reply
    finally:
        conn.close()


def _remember(config: NodeConfig, pid: int) -> None:
    started = _read_json("started.json", [])
    started.append({"pid": pid, "node": config.node, "session": config.session,
                    "run_dir": config.run_dir, "spill_dir": config.spill_dir,
                    "arena": config.arena_name})
    _write_json("started.json", started)


# -- status, memory, stop ------------------------------------------------------------------

def status(args: argparse.Namespace) -> int:
    cluster = joined_cluster(args.address or "auto")
    conn = Connection(cluster)
    try:
        welcome = conn.handshake(1)
        conn.send(p.MemoryRequest(1))
        report = conn.receive(10.0)
    finally:
        conn.close()
    used = {s.node: s for s in getattr(report, "nodes", ())}
    print(f"plait cluster at {cluster.client_address.removeprefix('tcp://')} "
          f"(session {welcome.session}): {len(welcome.nodes)} node(s), all answering")
    for node in welcome.nodes:
        s = used.get(node.id)
        store = f"{s.used >> 20} / {s.capacity >> 20} MiB" if s else "?"
        print(f"  {node.id:<8} {'head' if node.is_head else 'node':<5} pid {node.pid:<7} "
              f"{node.workers} workers  store {store}  {node.address}")
    return 0


def memory(args: argparse.Namespace) -> int:
    from plait.store.report import format_memory

    conn = Connection(joined_cluster(args.address or "auto"))
    try:
        conn.handshake(1)
        conn.send(p.MemoryRequest(1))
        report = conn.receive(10.0)
    finally:
        conn.close()
    print(format_memory(report.nodes))
    return 0


def stop(args: argparse.Namespace) -> int:
    started = _read_json("started.json", [])
    _terminate([entry["pid"] for entry in started])
    for entry in started:
        shutil.rmtree(entry["run_dir"], ignore_errors=True)
        if entry.get("spill_dir"):
            shutil.rmtree(entry["spill_dir"], ignore_errors=True)
        try:
            os.unlink(os.path.join("/dev/shm", entry["arena"]))
        except FileNotFoundError:
            pass
    for name in ("started.json", "cluster.json"):
        try:
            os.unlink(_path(name))
        except FileNotFoundError:
            pass
    print(f"stopped {len(started)} plait node process(es) started on this host")
    return 0


def _terminate(pids: Sequence[int]) -> None:
    """SIGTERM, wait for exit (pidfds), SIGKILL what is left."""
    fds = {}
    for pid in pids:
        try:
            fds[os.pidfd_open(pid)] = pid
            os.kill(pid, signal.SIGTERM)
        except (ProcessLookupError, OSError):
            continue
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while fds and (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select(list(fds), [], [], left)
        for fd in ready:
            os.close(fd)
            del fds[fd]
    for fd, pid in fds.items():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.close(fd)


def _read_json(name: str, default):
    try:
        with open(_path(name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def _write_json(name: str, value) -> None:
    os.makedirs(home(), mode=0o700, exist_ok=True)
    with open(_path(name), "w") as f:
        json.dump(value, f, indent=1)


# -- entry point ---------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="plait", description=__doc__.split("\n")[0])
    commands = top.add_subparsers(dest="command", required=True)
    begin = commands.add_parser("start", help="start a head, or a node that joins one")
    role = begin.add_mutually_exclusive_group(required=True)
    role.add_argument("--head", action="store_true", help="start the head node")
    role.add_argument("--address", help="HOST:PORT of the head to join")
    begin.add_argument("--port", type=int, default=DEFAULT_PORT, help="the head's port")
    begin.add_argument("--bind", default="127.0.0.1",
                       help="IP to listen on and advertise (default: loopback only)")
    begin.add_argument("--num-workers", type=int, default=os.cpu_count() or 1)
    begin.add_argument("--store-memory", type=int, default=None, help="store bytes")
    begin.add_argument("--key-file", help="the cluster key (default $PLAIT_HOME/cluster.key)")
    for name, helptext in (("status", "nodes, workers, store use"),
                           ("memory", "per-node store report")):
        command = commands.add_parser(name, help=helptext)
        command.add_argument("--address", help="HOST:PORT of the head (default: this host's)")
    commands.add_parser("stop", help="stop the plait processes started on this host")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "start":
            return start_head(args) if args.head else start_node(args)
        return {"status": status, "memory": memory, "stop": stop}[args.command](args)
    except PlaitError as error:
        print(f"plait {args.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
