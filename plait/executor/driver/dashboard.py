"""Starting the dashboard's process (``python -m plait.dashboard``, plait/dashboard/server.py)
from a driver (``plait.init(dashboard=True)``) or the CLI, and reading the URL it prints.

A process of its own: its web server and JSON never share the driver's interpreter, and
the same code serves ``plait dashboard --address``. It is started by module name, so the
executor imports nothing of plait.dashboard (which sits above it).
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import tempfile
import time

from plait.errors import ClusterError

START_TIMEOUT_SECONDS = 30.0
URL_PREFIX = "plait dashboard: "


def start_dashboard(address: str, *, port: int = 0, host: str = "127.0.0.1",
                    key_file: str | None = None, watch_pid: int = 0,
                    log: str | None = None) -> tuple[subprocess.Popen, str]:
    """Start ``python -m plait.dashboard`` for the head at ``address``; return the process
    and its URL (token included) once it serves. ClusterError (with its message) if it
    exits first: a missing extra, a head that does not answer, a port taken."""
    command = [sys.executable, "-m", "plait.dashboard", "--address", address,
               "--host", host, "--port", str(port)]
    if key_file:
        command += ["--key-file", key_file]
    if watch_pid:
        command += ["--watch-pid", str(watch_pid)]
    with open(log, "a+b") if log else tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        line = _first_line(process)
        if not line.startswith(URL_PREFIX):
            stop_dashboard(process)
            errors.seek(0)
            why = errors.read().decode(errors="replace").strip().splitlines()
            raise ClusterError(f"the dashboard did not start: "
                               f"{why[-1] if why else line or 'no answer'}")
    return process, line.removeprefix(URL_PREFIX)


def _first_line(process: subprocess.Popen) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    data = b""
    fd = process.stdout.fileno()
    while b"\n" not in data and (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0].decode(errors="replace").strip()


def stop_dashboard(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout:
        process.stdout.close()
