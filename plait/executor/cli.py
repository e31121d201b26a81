"""``plait start | stop | status | memory``: run a cluster as background services.

    plait start --head [--port 7480] [--bind 127.0.0.1] [--num-workers N] [--store-memory S]
                [--num-gpus G] [--resources '{"disk": 2}']     # (also when joining)
                [--dashboard [--dashboard-port P]]             # and its live dashboard
    plait start --address HOST:PORT [--key-file F] [--bind IP]     # join a head
    plait status [--address HOST:PORT]                             # nodes, workers, store use
    plait memory [--address HOST:PORT]                             # plait.memory_summary()
    plait dashboard [--address HOST:PORT] [--port P]               # a live dashboard, here
    plait stop                                                     # what plait start started here

State lives in ``$PLAIT_HOME`` (default ``~/.plait``): ``cluster.json`` (the head's address,
written by ``start --head``), ``cluster.key`` (the Curve key pair, mode 0600),
``started.json`` (processes started on this host) and ``logs/``. A cluster started this way
always uses the key (see plait.executor.wire.security), loopback or not.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from contextlib import closing

from plait.compiler.units import parse_bytes
from plait.errors import ClusterError, HeadUnavailableError, PlaitError
from plait.executor.driver.cluster import JoinedCluster
from plait.executor.driver.connection import START_TIMEOUT_S, Connection
from plait.executor.driver.discovery import MAX_PORT, home, host_port, joined_cluster
from plait.executor.wire import protocol as p
from plait.executor.wire.config import NodeConfig, launch, offered_resources, terminate
from plait.executor.wire.security import generate_key_file, is_loopback, load_key
from plait.store.arena import checked_capacity, default_capacity
from plait.store.spill import spill_directory

DEFAULT_PORT = 7480
STOP_GRACE_SECONDS = 10.0
ASK_TIMEOUT_SECONDS = 10.0      # a running head answers status/memory in milliseconds


def _path(name: str) -> str:
    return os.path.join(home(), name)


# -- start ---------------------------------------------------------------------------------

def start_head(args: argparse.Namespace) -> int:
    running = _read_json("cluster.json", None)
    if running is not None and _running():
        # a second head here would overwrite the key and the address of the first one
        raise ClusterError(f"a plait cluster started from {home()} is still running (head at "
                           f"{running.get('address')}); run `plait stop` first, or set "
                           f"PLAIT_HOME to another directory to run a second cluster")
    os.makedirs(_path("logs"), mode=0o700, exist_ok=True)
    key_file = _path("cluster.key")
    generate_key_file(key_file)
    session = f"{os.getpid():x}-c"
    bind = args.bind or "127.0.0.1"
    address = f"{bind}:{args.port or _free_port(bind)}"
    config = _config(args, session, "node-0", bind, head_address="",
                     client_address=f"tcp://{address}", key_file=key_file)
    process = launch(config, _path(f"logs/{config.node}.log"))
    welcome = _wait_for(JoinedCluster(f"tcp://{address}", load_key(key_file)), 1, config,
                        process)
    _write_json("cluster.json", {"address": address, "session": welcome.session})
    _remember(config, process.pid)
    if args.dashboard:
        _start_dashboard(address, key_file, args.dashboard_port, process.pid)
    print(f"plait head node-0 started at {address} (pid {process.pid}, {args.num_workers} "
          f"workers)\n"
          f"  join another host:  plait start --address {address} --key-file <copy of "
          f"{key_file}>\n  connect a driver:   plait.init(address=\"auto\")  (on this host) or "
          f"plait.init(address=\"{address}\")\n  stop:               plait stop")
    return 0


def _free_port(bind: str) -> int:
    """``--port 0``, as Ray's ``ray start --head --port 0``: a port free on ``bind`` now
    (the kernel's pick), which the head then listens on and cluster.json names."""
    with closing(socket.socket()) as probe:
        try:
            probe.bind((bind, 0))
        except OSError as error:
            raise ClusterError(f"cannot listen on {bind}: {error.strerror}") from None
        return probe.getsockname()[1]


def _start_dashboard(address: str, key_file: str, port: int, head_pid: int) -> None:
    """The head's dashboard, in the background: it exits with the head (and `plait stop`)."""
    from plait.executor.driver.dashboard import start_dashboard

    process, url = start_dashboard(address, port=port, key_file=key_file, watch_pid=head_pid,
                                   log=_path("logs/dashboard.log"))
    started = _read_json("started.json", [])
    started.append({"pid": process.pid, "node": "dashboard", "session": "", "run_dir": "",
                    "spill_dir": "", "arena": "", "argv": "plait.dashboard"})
    _write_json("started.json", started)
    print(f"plait dashboard: {url}")


def dashboard(args: argparse.Namespace) -> int:
    """A dashboard for a running cluster, in the foreground until Ctrl-C."""
    from plait.executor.driver.dashboard import start_dashboard, stop_dashboard

    process, url = start_dashboard(args.address or "auto", port=args.port,
                                   key_file=args.key_file, watch_pid=os.getpid())
    print(f"plait dashboard: {url}  (Ctrl-C stops it)", flush=True)
    try:
        process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_dashboard(process)
    return 0


def start_node(args: argparse.Namespace) -> int:
    os.makedirs(_path("logs"), mode=0o700, exist_ok=True)
    address = host_port(args.address)
    key_file = args.key_file or _path("cluster.key")
    key = load_key(key_file)
    cluster = JoinedCluster(f"tcp://{address}", key)
    (welcome,) = _ask(cluster)
    numbers = [int(n.id.rpartition("-")[2]) for n in welcome.nodes]
    node = f"node-{max(numbers) + 1}"
    config = _config(args, welcome.session, node, args.bind or _address_towards(address),
                     head_address=f"tcp://{address}", client_address="",
                     key_file=os.path.abspath(key_file))
    process = launch(config, _path(f"logs/{config.node}.log"))
    _wait_for(cluster, len(welcome.nodes) + 1, config, process)
    _remember(config, process.pid)
    print(f"plait {node} joined the head at {address} (pid {process.pid}, {args.num_workers} "
          f"workers)")
    return 0


def _address_towards(head: str) -> str:
    """The IP of this host that packets to ``head`` leave from: what its peers can reach.

    A node that joins a head on another host must not advertise 127.0.0.1 (the head's
    default): the other nodes would pull its objects from their own loopback.
    """
    host, _, port = head.rpartition(":")
    if is_loopback(host):
        return "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((host, int(port)))        # UDP: picks a route, sends nothing
        return probe.getsockname()[0]


def _config(args: argparse.Namespace, session: str, node: str, bind: str,
            **addresses: str) -> NodeConfig:
    run_dir = tempfile.mkdtemp(prefix=f"plait-{session}-{node}-")
    spill = spill_directory(session, node)
    return NodeConfig(session, node, args.num_workers, args.store_memory or default_capacity(),
                      run_dir, 0, spill, transfer_address=f"tcp://{bind}:*",
                      resources=offered_resources(args.num_gpus, args.resources), **addresses)


def _resources(text: str) -> dict[str, float]:
    """--resources: a JSON object of custom resources and amounts (argparse shows the
    error), checked before anything of the node is made."""
    try:
        offered = json.loads(text)
        if not isinstance(offered, dict):
            raise ValueError("not an object")
        return offered_resources(0, offered)
    except ValueError as error:     # (json's errors are ValueErrors too)
        raise argparse.ArgumentTypeError(f"a JSON object of names and amounts, got {text}: "
                                         f"{error}") from None


def _wait_for(cluster: JoinedCluster, nodes: int, config: NodeConfig,
              process: subprocess.Popen) -> p.Welcome:
    """Wait until the head counts ``nodes`` nodes; if the new node dies first, say so at once.

    On failure nothing of the new node is left: its process, run dir, spill dir and arena.
    """
    try:
        with closing(Connection(cluster)) as conn:
            welcome = conn.hello(nodes, START_TIMEOUT_S, alive=lambda: _check_running(process))
        if welcome is None:
            raise ClusterError(f"the head did not count it within {START_TIMEOUT_S:.0f} s")
        return welcome
    except (PlaitError, KeyboardInterrupt) as error:   # (Ctrl-C, or SIGTERM: see main)
        terminate([process.pid], STOP_GRACE_SECONDS)
        process.wait()                               # (gone: terminate waited for it)
        _remove(_entry(config, process.pid))
        if isinstance(error, KeyboardInterrupt):
            raise
        log = _path(f"logs/{config.node}.log")
        raise ClusterError(f"{config.node} failed to start: {error}{_last_line(log)}; "
                           f"see {log}") from None


def _check_running(process: subprocess.Popen) -> None:
    """The node being started exited: the head will never count it."""
    if process.poll() is not None:
        raise ClusterError(f"its process exited with code {process.returncode}")


def _last_line(log: str) -> str:
    """The last line a node logged (its error, when it failed to start), in parentheses."""
    try:
        with open(log, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return ""
    return f" ({lines[-1]})" if lines else ""


def _ask(cluster: JoinedCluster, *requests: p.Message) -> list[p.Message]:
    """Hello, then each request: the Welcome and one reply per request, each within
    ASK_TIMEOUT_SECONDS, or a ClusterError saying what to check."""
    replies: list[p.Message | None] = []
    with closing(Connection(cluster)) as conn:
        try:
            replies.append(conn.hello(timeout=ASK_TIMEOUT_SECONDS))
            for message in requests:
                if replies[-1] is None:
                    break
                conn.send(message)
                replies.append(conn.receive(ASK_TIMEOUT_SECONDS))
        except HeadUnavailableError:
            replies.append(None)
    if None in replies:
        raise ClusterError(f"no plait head answered at "
                           f"{cluster.client_address.removeprefix('tcp://')}: is the cluster "
                           f"running, and is the key file the one `plait start --head` "
                           f"wrote?")
    return replies       # type: ignore[return-value]


def _entry(config: NodeConfig, pid: int) -> dict:
    """What started.json keeps of a node process: enough to stop it and clean up after it."""
    return {"pid": pid, "node": config.node, "session": config.session,
            "run_dir": config.run_dir, "spill_dir": config.spill_dir, "arena": config.arena_name}


def _remember(config: NodeConfig, pid: int) -> None:
    started = _read_json("started.json", [])
    started.append(_entry(config, pid))
    _write_json("started.json", started)


def _running() -> list[dict]:
    """Entries of started.json whose process still runs (checked by its run dir, or for
    the dashboard its module, in argv: a pid reused since names neither)."""
    alive = []
    for entry in _read_json("started.json", []):
        try:
            with open(f"/proc/{entry['pid']}/cmdline", "rb") as f:
                if (entry.get("argv") or entry["run_dir"]).encode() in f.read():
                    alive.append(entry)
        except OSError:
            continue
    return alive


# -- status, memory, stop ------------------------------------------------------------------

def status(args: argparse.Namespace) -> int:
    cluster = joined_cluster(args.address or "auto")
    welcome, report = _ask(cluster, p.MemoryRequest(1))
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

    _, report = _ask(joined_cluster(args.address or "auto"), p.MemoryRequest(1))
    print(format_memory(getattr(report, "nodes", ())))
    return 0


def stop(args: argparse.Namespace) -> int:
    started = _read_json("started.json", [])
    terminate([entry["pid"] for entry in _running()], STOP_GRACE_SECONDS)
    for entry in started:
        _remove(entry)
    for name in ("started.json", "cluster.json"):
        try:
            os.unlink(_path(name))
        except FileNotFoundError:
            pass
    nodes = sum(1 for entry in started if entry["node"] != "dashboard")
    print(f"stopped {nodes} plait node process(es) started on this host" +
          (" and its dashboard" if nodes < len(started) else ""))
    return 0


def _remove(entry: dict) -> None:
    """A stopped node's files: run dir, spill dir and arena (a node killed leaves them)."""
    if not entry["run_dir"]:
        return                                   # the dashboard: no files
    shutil.rmtree(entry["run_dir"], ignore_errors=True)
    if entry.get("spill_dir"):
        shutil.rmtree(entry["spill_dir"], ignore_errors=True)
    try:
        os.unlink(os.path.join("/dev/shm", entry["arena"]))
    except FileNotFoundError:
        pass


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

def _port(text: str) -> int:
    """A TCP port, or 0 for any free one."""
    if not text.isdigit() or int(text) > MAX_PORT:
        raise argparse.ArgumentTypeError(f"a port is 0 to {MAX_PORT}, got {text!r}")
    return int(text)


def _size(text: str) -> int:
    """--store-memory's value: bytes, or a size with a unit, that this host's /dev/shm can
    hold (argparse shows the error)."""
    try:
        return checked_capacity(parse_bytes(text))
    except (ValueError, ClusterError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _count(text: str) -> int:
    """--num-workers, --num-gpus: a whole number, 0 or more (a head of 0 workers runs no
    task, as Ray's ``ray start --head --num-cpus 0``)."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"a whole number >= 0, got {text!r}")
    return int(text)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="plait", description=__doc__.split("\n")[0])
    commands = top.add_subparsers(dest="command", required=True)
    begin = commands.add_parser("start", help="start a head, or a node that joins one")
    role = begin.add_mutually_exclusive_group(required=True)
    role.add_argument("--head", action="store_true", help="start the head node")
    role.add_argument("--address", help="HOST:PORT of the head to join")
    begin.add_argument("--port", type=_port, default=DEFAULT_PORT,
                       help="the head's port (0: any free one)")
    begin.add_argument("--bind", help="IP to listen on and advertise (default: 127.0.0.1 for "
                       "a head; for a node, this host's IP facing the head)")
    begin.add_argument("--num-workers", type=_count, default=os.cpu_count() or 1)
    begin.add_argument("--store-memory", type=_size, default=None,
                       help="store size: bytes, or with a unit (512MiB, 2GB)")
    begin.add_argument("--num-gpus", type=_count, default=0, help="GPUs the node offers")
    begin.add_argument("--resources", type=_resources, default={},
                       help='custom resources the node offers, as JSON: \'{"disk": 2}\'')
    begin.add_argument("--key-file", help="the cluster key (default $PLAIT_HOME/cluster.key)")
    begin.add_argument("--dashboard", action="store_true",
                       help="also start the head's live dashboard (loopback, token in its URL)")
    begin.add_argument("--dashboard-port", type=_port, default=0, help="0: any free port")
    for name, helptext in (("status", "nodes, workers, store use"),
                           ("memory", "per-node store report")):
        command = commands.add_parser(name, help=helptext)
        command.add_argument("--address", help="HOST:PORT of the head (default: this host's)")
    watch = commands.add_parser("dashboard", help="a live dashboard for a running cluster")
    watch.add_argument("--address", help="HOST:PORT of the head (default: this host's)")
    watch.add_argument("--port", type=_port, default=0, help="its port (0: any free one)")
    watch.add_argument("--key-file", help="the cluster key (default $PLAIT_HOME/cluster.key)")
    commands.add_parser("stop", help="stop the plait processes started on this host")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupted)  # a start stopped midway removes its node
    try:
        if args.command == "start":
            return start_head(args) if args.head else start_node(args)
        return {"status": status, "memory": memory, "stop": stop,
                "dashboard": dashboard}[args.command](args)
    except PlaitError as error:
        print(f"plait {args.command}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"plait {args.command}: interrupted", file=sys.stderr)
        return 130


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
