"""Hosts for clusters started with the ``plait`` CLI: this machine, or network namespaces.

A ``Host`` is one machine as ``plait start`` sees it: its own state directory ($PLAIT_HOME)
and, in multi-host tests, a network namespace the test created. ``Network`` builds those
namespaces so that traffic between hosts really crosses interfaces; nothing is created in
the root namespace::

    ns plait-<tag>-a  lo + eth0 10.77.0.1/24 --veth--+
    ns plait-<tag>-b  lo + eth0 10.77.0.2/24 --veth--+-- bridge in ns plait-<tag>-s
    ns plait-<tag>-c  lo + eth0 10.77.0.3/24 --veth--+   (no address of its own)

The namespaces share /dev/shm, /tmp and the pid space with the test; plait tells them apart
only by the network namespace in its host id (plait/executor/wire/hostid.py).

Clusters started by the CLI are named after the ``plait start --head`` process's pid
(``<pid hex>-c``), not pytest's, so tests/conftest.py's leak check does not see them:
``leftovers(session)`` is the one for them.
"""

from __future__ import annotations

import json
import select
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.conftest import processes as _processes

T = TypeVar("T")

POLL_SECONDS = 0.05
CLI_TIMEOUT = 90.0           # a `plait` command (start waits for workers) or a driver
SUBNET = "10.77.0"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (the kernel's pick for port 0)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], T], timeout: float, what: str) -> T:
    """Poll ``condition`` until it returns something true; fail naming ``what`` if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL_SECONDS)


# -- hosts -----------------------------------------------------------------------------------

@dataclass
class Host:
    """Where ``plait`` commands and drivers run: a $PLAIT_HOME, maybe a network namespace."""

    home: Path
    netns: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def argv(self, *command: str) -> list[str]:
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        return [*prefix, *command]

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ, PLAIT_HOME=str(self.home))
        for name in ("PLAIT_HOST_ID", "PLAIT_KEY_FILE"):     # the test decides, not the shell
            env.pop(name, None)
        return {**env, **self.extra_env}

    def plait(self, *args: str, check: bool = True, timeout: float = CLI_TIMEOUT
              ) -> subprocess.CompletedProcess:
        """Run ``plait ARGS`` here; with ``check``, fail showing its output if it fails."""
        result = subprocess.run(self.argv(sys.executable, "-m", "plait.executor.cli", *args),
                                env=self.env, capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
        if check:
            assert result.returncode == 0, (f"plait {' '.join(args)} failed "
                                            f"({result.returncode}):\n{result.stdout}"
                                            f"{result.stderr}")
        return result

    def python(self, script: str, *args: str, timeout: float = CLI_TIMEOUT
               ) -> subprocess.CompletedProcess:
        """Run a driver script here and return its output; fail showing it if it fails."""
        result = subprocess.run(self.argv(sys.executable, "-c", script, *args), env=self.env,
                                capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
        assert result.returncode == 0, f"driver failed:\n{result.stdout}{result.stderr}"
        return result

    def popen(self, script: str, *args: str) -> subprocess.Popen:
        """Start a driver script here; its stdout is a pipe of text lines."""
        return subprocess.Popen(self.argv(sys.executable, "-u", "-c", script, *args),
                                env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True)

    def state(self, name: str) -> Any:
        """A JSON file of the CLI's state here (None when it does not exist)."""
        try:
            return json.loads((self.home / name).read_text())
        except FileNotFoundError:
            return None

    @property
    def session(self) -> str | None:
        cluster = self.state("cluster.json")
        return cluster and cluster["session"]

    def started_pids(self) -> list[int]:
        return [entry["pid"] for entry in self.state("started.json") or []]

    def stop(self) -> None:
        self.plait("stop")


def status_nodes(output: str) -> dict[str, str]:
    """``plait status`` lines as {node: transfer address}.

    >>> status_nodes("x\\n  node-0   head  pid 7  1 workers  store 0 / 1 MiB  tcp://h:5\\n")
    {'node-0': 'tcp://h:5'}
    """
    found = {}
    for line in output.splitlines():
        words = line.split()
        if words and words[0].startswith("node-"):
            found[words[0]] = words[-1]
    return found


# -- leak checks for CLI clusters ------------------------------------------------------------

def command_lines() -> list[str]:
    """Command lines of every live process (what ``ps`` shows anyone on the machine)."""
    return [cmdline for _, state, cmdline in _processes() if state != "Z"]


def session_processes(session: str) -> list[int]:
    """Live processes of a session: node processes and workers name it in their argv."""
    mark = f"plait-{session}-"
    return [pid for pid, state, cmdline in _processes() if mark in cmdline and state != "Z"]


def leftovers(session: str) -> list[str]:
    """Everything of ``session`` still there: processes, /dev/shm segments, /tmp dirs."""
    mark = f"plait-{session}-"
    found = [f"process {pid}" for pid in session_processes(session)]
    found += [f"/dev/shm/{name}" for name in os.listdir("/dev/shm") if name.startswith(mark)]
    tmp = tempfile.gettempdir()
    found += [f"{tmp}/{name}" for name in os.listdir(tmp) if name.startswith(mark)]
    return sorted(found)


def sweep(session: str) -> None:
    """After a failed test: kill and remove what ``leftovers`` finds, for a clean next test."""
    for pid in session_processes(session):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    mark = f"plait-{session}-"
    for name in os.listdir("/dev/shm"):
        if name.startswith(mark):
            os.unlink(os.path.join("/dev/shm", name))
    tmp = tempfile.gettempdir()
    for name in os.listdir(tmp):
        if name.startswith(mark):
            shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)


# -- network namespaces ----------------------------------------------------------------------

def netns_unavailable() -> str | None:
    """Why multi-host tests cannot run here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` command is missing"
    return None


def ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"ip {' '.join(args)}: {result.stderr.strip()}"


@dataclass
class Network:
    """Namespaces joined by veth pairs to a bridge in a switch namespace (see the module doc)."""

    tag: str
    namespaces: list[str] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"plait-{self.tag}-s"

    def create(self, count: int) -> list[str]:
        """``count`` host namespaces with addresses 10.77.0.1 .. count; returns their names."""
        self.add_namespace(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        return [self.add_host(index) for index in range(1, count + 1)]

    def add_namespace(self, name: str) -> None:
        ip("netns", "add", name)
        self.namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def add_host(self, index: int) -> str:
        name = f"plait-{self.tag}-{chr(ord('a') + index - 1)}"
        self.add_namespace(name)
        port = f"v{index}"
        ip("link", "add", "eth0", "netns", name, "type", "veth", "peer", "name", port,
           "netns", self.switch)
        ip("-n", self.switch, "link", "set", port, "master", "br0")
        ip("-n", self.switch, "link", "set", port, "up")
        ip("-n", name, "addr", "add", f"{self.address(index)}/24", "dev", "eth0")
        ip("-n", name, "link", "set", "eth0", "up")
        return name

    @staticmethod
    def address(index: int) -> str:
        return f"{SUBNET}.{index}"

    def pids(self) -> dict[str, list[int]]:
        """Processes still inside each namespace."""
        found = {}
        for name in self.namespaces:
            result = subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                                    text=True, timeout=30)
            found[name] = [int(pid) for pid in result.stdout.split()]
        return found

    def destroy(self) -> None:
        """Kill whatever still runs inside, then delete the namespaces (and so every link)."""
        for pids in self.pids().values():
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        self.namespaces.clear()


def link_bytes(netns: str, counter: str = "rx_bytes", device: str = "eth0") -> int:
    """Bytes received (or with ``counter="tx_bytes"`` sent) so far by ``device`` in ``netns``."""
    result = subprocess.run(["ip", "netns", "exec", netns, "cat",
                             f"/sys/class/net/{device}/statistics/{counter}"],
                            capture_output=True, text=True, timeout=30, check=True)
    return int(result.stdout)


def tcp_sockets(netns: str) -> list[tuple[str, str, str]]:
    """(local address, remote address, state) of the IPv4 TCP sockets inside ``netns``.

    States as in /proc/net/tcp: "0A" is LISTEN, "01" ESTABLISHED.
    """
    result = subprocess.run(["ip", "netns", "exec", netns, "cat", "/proc/net/tcp"],
                            capture_output=True, text=True, timeout=30, check=True)
    sockets = []
    for line in result.stdout.splitlines()[1:]:
        words = line.split()
        sockets.append((_ipv4(words[1]), _ipv4(words[2]), words[3]))
    return sockets


def _ipv4(hex_address: str) -> str:
    """
    >>> _ipv4("0100007F:1F90")
    '127.0.0.1'
    """
    host = bytes.fromhex(hex_address.split(":")[0])
    return socket.inet_ntoa(host[::-1])


class Lines:
    """JSON lines a driver prints, read with a timeout (a driver that hangs fails the test)."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.buffer = b""

    def next(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(0.0, left))
            chunk = os.read(fd, 65536) if ready else b""
            if not chunk:
                detail = "exited" if ready else f"said nothing for {timeout} s"
                raise AssertionError(f"the driver {detail}:\n{self.buffer.decode()}"
                                     f"{self.stderr()}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def stderr(self) -> str:
        if self.process.poll() is None:
            return ""
        return self.process.stderr.read()
