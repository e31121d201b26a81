"""What a worker prints, sent to the drivers that show it, as Ray's ``log_to_driver``.

Data flow::

    a task prints    --fd 1 / fd 2-->  pipes  --reader thread-->  Output(node, pid, name, lines)
    worker --Output--> node --Output--> head --Output--> each driver that sent ShowOutput
    driver: "(name pid=PID) line", and ", ip=HOST" when the worker is on another host

The worker's file descriptors 1 and 2 become pipes read by a thread of its own, so what C
code and child processes write is caught as well as ``print``. The thread sends whole
lines, a batch at a time (what one read returned, at most BATCH_LINES), over a ZeroMQ
socket of its own (a socket belongs to one thread; the worker's is its main thread's),
whose identity is the worker's with ``OUTPUT_SUFFIX`` after it, so that the node knows
whose lines they are. A line is named by the call running when it was read (``name_of``):
the task's function, or the actor's class, as Ray names it.

Python's ``sys.stdout`` to a pipe is block-buffered; it is made line-buffered here, so that
a task's ``print`` reaches the driver while the task runs, as it does in Ray.
"""

from __future__ import annotations

import os
import selectors
import sys
import threading
from collections.abc import Callable

import zmq

from plait.executor.wire import protocol as p
from plait.executor.wire.config import OUTPUT_SUFFIX

BATCH_LINES = 1000                  # lines per Output at most
LONGEST_LINE = 64 << 10             # a line longer than this goes in pieces
DRAIN_SECONDS = 1.0                 # at exit: the thread's time to send what is left
SEND_HWM = 10_000                   # Outputs queued for the node before lines are dropped


class OutputPipes:
    """The worker's fds 1 and 2 as pipes, and the thread that sends what comes through."""

    def __init__(self, ctx: zmq.Context, address: str, identity: bytes, node: str,
                 name_of: Callable[[], str]) -> None:
        self.node, self.pid, self.name_of = node, os.getpid(), name_of
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.IDENTITY, identity + OUTPUT_SUFFIX)
        self.sock.setsockopt(zmq.LINGER, 1000)
        self.sock.setsockopt(zmq.SNDHWM, SEND_HWM)
        self.sock.connect(address)
        self.selector = selectors.DefaultSelector()
        for fd, error in ((1, False), (2, True)):
            read, write = os.pipe()
            os.dup2(write, fd)
            os.close(write)
            self.selector.register(read, selectors.EVENT_READ, error)
        for stream in (sys.stdout, sys.stderr):
            if hasattr(stream, "reconfigure"):
                stream.reconfigure(line_buffering=True)
        self.partial: dict[int, bytes] = {}
        self.thread = threading.Thread(target=self.run, name="plait-output", daemon=True)
        self.thread.start()

    def run(self) -> None:
        """Read both pipes until both are closed (the worker is leaving), sending lines."""
        while self.selector.get_map():
            for key, _ in self.selector.select():
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    self.selector.unregister(key.fd)
                    os.close(key.fd)
                self.send(key.fd, chunk, key.data)
        self.sock.close()

    def send(self, fd: int, chunk: bytes, error: bool) -> None:
        """Send the whole lines that ``chunk`` completes (all of it at the end: b"")."""
        data = self.partial.pop(fd, b"") + chunk
        if chunk:
            cut = data.rfind(b"\n") + 1
            if not cut and len(data) > LONGEST_LINE:
                cut = len(data)
            if cut < len(data):
                self.partial[fd] = data[cut:]
            data = data[:cut]
        lines = data.decode(errors="replace").splitlines()
        name = self.name_of()
        for start in range(0, len(lines), BATCH_LINES):
            batch = tuple(lines[start:start + BATCH_LINES])
            try:               # a node that cannot keep up loses lines, never stalls a task
                self.sock.send(p.encode(p.Output(self.node, self.pid, name, batch, error)),
                               zmq.NOBLOCK)
            except zmq.Again:
                pass

    def close(self) -> None:
        """The worker leaves: what it printed last is sent first (within DRAIN_SECONDS)."""
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        devnull = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            os.dup2(devnull, fd)       # the pipes' last writers go: the thread reads EOF
        os.close(devnull)
        self.thread.join(DRAIN_SECONDS)


def prefix(output: p.Output, host: str | None = None) -> str:
    """Ray's prefix of a worker's line: ``(name pid=PID)``, with ``, ip=HOST`` for a
    worker on another host than the driver's."""
    where = f", ip={host}" if host else ""
    name = f"{output.name} " if output.name else ""
    return f"({name}pid={output.pid}{where}) "


def show(output: p.Output, host: str | None = None) -> None:
    """Print a worker's lines, each after its ``prefix``, to stdout (or stderr, as the
    worker wrote them): the driver's terminal, or a CLI node's log."""
    start = prefix(output, host)
    stream = sys.stderr if output.error else sys.stdout
    stream.write("".join(f"{start}{line}\n" for line in output.lines))
    stream.flush()
