"""``python -m plait.dashboard``: the dashboard's own process (uvicorn serving app.py).

    python -m plait.dashboard --address auto|HOST:PORT|ipc://... [--key-file F]
                              [--host 127.0.0.1] [--port 0] [--watch-pid PID]

It connects to the head first (so a wrong address fails at once), binds its socket, then
prints one line, ``plait dashboard: http://HOST:PORT/?token=...``, which whoever started
it reads (plait/executor/driver/dashboard.py). ``--watch-pid``: it exits when that
process does (the driver that started it, or a CLI cluster's head), so it never outlives
what it shows.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import sys
import threading
from collections.abc import Sequence

from plait.errors import PlaitError
from plait.executor.driver.dashboard import URL_PREFIX


def parser() -> argparse.ArgumentParser:
    args = argparse.ArgumentParser(prog="python -m plait.dashboard", description=__doc__)
    args.add_argument("--address", default="auto", help="the head: auto, HOST:PORT or ipc://")
    args.add_argument("--key-file", help="the cluster key (default: $PLAIT_HOME/cluster.key)")
    args.add_argument("--host", default="127.0.0.1",
                      help="where to listen (default loopback; anything else is reachable "
                           "by others, who still need the token)")
    args.add_argument("--port", type=int, default=0, help="0: any free port")
    args.add_argument("--watch-pid", type=int, default=0, help="exit when this process does")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        import uvicorn

        from plait.dashboard.app import make_app
        from plait.dashboard.guard import new_token
        from plait.executor.wire.security import is_loopback
        from plait.dashboard.source import Source, connect
    except ImportError as error:
        print(f"plait dashboard: {error.name} is missing; install the dashboard's extra: "
              f"pip install \"plait[dashboard]\"", file=sys.stderr)
        return 2
    try:
        ask, tell, close = connect(_cluster(args.address, args.key_file))
    except PlaitError as error:
        print(f"plait dashboard: {error}", file=sys.stderr)
        return 1
    if args.watch_pid:
        _exit_with(args.watch_pid)
    sock = socket.create_server((args.host, args.port))
    port = sock.getsockname()[1]
    token = new_token()
    source = Source(ask, tell)
    app = make_app(source, token, args.host, port)
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
    if not is_loopback(args.host):
        print(f"plait dashboard: listening on {args.host}, beyond this host: anyone who can "
              f"reach it still needs the token", file=sys.stderr)
    print(f"{URL_PREFIX}http://{shown}:{port}/?token={token}", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        close()
    return 0


def _cluster(address: str, key_file: str | None):
    from plait.executor.driver.cluster import JoinedCluster
    from plait.executor.driver.discovery import joined_cluster
    from plait.executor.wire.security import load_key

    if address.startswith("ipc://"):
        return JoinedCluster(address, None)          # an embedded cluster's private socket
    if key_file:
        os.environ["PLAIT_KEY_FILE"] = key_file
    cluster = joined_cluster(address)
    return cluster if cluster.key or not key_file else JoinedCluster(
        cluster.client_address, load_key(key_file))


def _exit_with(pid: int) -> None:
    """Exit as soon as process ``pid`` has (a pidfd becomes readable when it exits)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(0)

    def watch() -> None:
        select.select([fd], [], [])
        os._exit(0)

    threading.Thread(target=watch, name="plait-dashboard-watch", daemon=True).start()
