"""The node's worker processes: start, watch (pidfd), replace, stop.

The first workers are forked from the node process before it creates its ZeroMQ context,
so they start in milliseconds with numpy and cloudpickle already imported and no threads
copied. Forking later from the node itself is not safe (ZeroMQ's I/O threads), so the node
also forks a ``Forker`` first: a single-threaded copy of itself that forks every later
worker (replacements, stand-ins for blocked workers, actors) on request, in milliseconds
instead of the ~0.3 s of a fresh interpreter. It forks twice, so each worker is
reparented to the node (a child subreaper), which waits for it and reads its exit status
like any child of its own. If the forker is gone, workers are spawned fresh
(``python -m plait.executor.worker``).
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import json
import os
import select
import signal
import struct
import sys
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

from plait.executor.node.prefork import fill_holes
from plait.executor.wire.config import WORKER_MAIN, WorkerConfig, identity_of


@dataclass
class WorkerHandle:
    """One worker as the node tracks it."""

    index: int
    pid: int
    pidfd: int
    identity: bytes
    ready: bool = False
    inflight: OrderedDict[str, int] = field(default_factory=OrderedDict)   # task -> attempt
    functions: set[str] = field(default_factory=set)
    cancelled: bool = False          # killed on purpose by plait.cancel
    cancel_children: bool = False    # ... a recursive one: the tasks it submitted go too
    blocked: bool = False            # its task waits for tasks it submitted
    blocks: bool = False             # ... or did, and runs on: it may block again soon
    extra: bool = False              # started to stand in for a blocked worker
    cpus: float = 1.0                # of the node's CPUs its tasks take (a task's num_cpus
    #                                  below one, when sent alone: several share a CPU)
    retiring: bool = False           # told to stop: not to be replaced
    oom: str = ""                    # why plait killed it for its memory, if it did
    stopped_since: float = 0.0       # when it was first seen stopped (SIGSTOP), 0 if not
    actor: str = ""                  # the actor it holds: runs only that actor's calls
    parked_since: float = 0.0        # an idle stand-in kept for the next block (0: not)
    gpu: bool = False                # it ran GPU tasks (and runs no others: node.recycle)
    calls: Counter[str] = field(default_factory=Counter)   # max_calls functions: calls run
    spent: bool = False              # it ran a function's max_calls: leaves once idle

    def describe(self, node: str, status: int) -> str:
        code = os.waitstatus_to_exitcode(status)
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        return f"{node} worker {self.index} (pid {self.pid}) died with {how}"


class Processes(Protocol):
    """What the node does to processes and reads of them, given to it at construction:
    the node's bookkeeping stays free of system calls (its tests pass a recording fake)."""

    pid: int                                       # the node's own, a worker's parent

    def start(self, config: WorkerConfig) -> WorkerHandle: ...

    def kill(self, worker: WorkerHandle) -> None: ...

    def interrupt(self, worker: WorkerHandle) -> None: ...

    def reap(self, worker: WorkerHandle) -> int: ...

    def stop(self, workers: list[WorkerHandle], grace_seconds: float) -> None: ...

    def state(self, worker: WorkerHandle) -> str: ...

    def rss(self, worker: WorkerHandle) -> int: ...

    def available_fraction(self) -> float: ...


class OsProcesses:
    """Processes of this machine: later workers forked by the forker (spawned fresh
    without one), SIGKILL, waitpid, and /proc for their state, size and free memory."""

    def __init__(self, forker: Forker | None) -> None:
        self.forker = forker
        self.pid = os.getpid()

    def start(self, config: WorkerConfig) -> WorkerHandle:
        return self.forker.fork_worker(config) if self.forker else spawn_worker(config)

    def kill(self, worker: WorkerHandle) -> None:
        try:
            os.kill(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass                                   # gone already: its pidfd says so

    def interrupt(self, worker: WorkerHandle) -> None:
        """Ask the worker to interrupt its task (worker.INTERRUPT_SIGNAL)."""
        try:
            os.kill(worker.pid, signal.SIGUSR2)
        except ProcessLookupError:
            pass

    def reap(self, worker: WorkerHandle) -> int:
        return reap(worker)

    def stop(self, workers: list[WorkerHandle], grace_seconds: float) -> None:
        stop_all(workers, grace_seconds)

    def state(self, worker: WorkerHandle) -> str:
        """The process state letter from /proc ("T" when stopped by a signal)."""
        try:
            with open(f"/proc/{worker.pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return "X"

    def rss(self, worker: WorkerHandle) -> int:
        """Resident bytes of the worker process (0 once it is gone)."""
        try:
            with open(f"/proc/{worker.pid}/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            return 0

    def available_fraction(self) -> float:
        """MemAvailable / MemTotal from /proc/meminfo (1.0 if it cannot be read)."""
        try:
            with open("/proc/meminfo") as f:
                info = dict(line.split(":", 1) for line in f)
            return int(info["MemAvailable"].split()[0]) / int(info["MemTotal"].split()[0])
        except (OSError, KeyError, ValueError):
            return 1.0


def fork_worker(config: WorkerConfig) -> WorkerHandle:
    """Fork a worker; only call before the node process starts any thread."""
    fill_holes()                            # (prefork.py: the child's USS stays its own)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        _serve_and_exit(config)
    return WorkerHandle(config.index, pid, os.pidfd_open(pid), identity_of(config.index, pid))


def spawn_worker(config: WorkerConfig) -> WorkerHandle:
    """Start a fresh interpreter running a worker (safe at any time)."""
    argv = [sys.executable, "-m", WORKER_MAIN, json.dumps(dataclasses.asdict(config))]
    pid = os.posix_spawn(sys.executable, argv, dict(os.environ))
    return WorkerHandle(config.index, pid, os.pidfd_open(pid), identity_of(config.index, pid))


PR_SET_CHILD_SUBREAPER = 36
PR_SET_NAME = 15
# /proc/PID/comm of the forker and of forked workers (ps, top, benchmarks/longrun.py): all
# are ``python -m plait.executor.node.server`` by their command line.
FORKER_NAME, WORKER_NAME = "plait-forker", "plait-worker"
REPARENT_SECONDS = 5.0
# A forker this slow is stopped or stuck: spawn instead. The node's loop waits meanwhile, so
# this stays well under the head's 4 s heartbeat timeout (a fork takes milliseconds).
FORK_TIMEOUT_SECONDS = 1.5


class Forker:
    """A single-threaded process that forks workers for the node on request."""

    def __init__(self, pid: int, requests: int, replies: int) -> None:
        self.pid = pid
        self.requests = requests
        self.replies = replies
        self.broken = False

    @classmethod
    def start(cls) -> Forker:
        """Fork the forker; only call before the node process starts any thread."""
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1)       # orphaned workers come to the node
        fill_holes()                # (if no worker was forked before): its workers inherit it
        request_r, request_w = os.pipe()
        reply_r, reply_w = os.pipe()
        node = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            os.close(request_w)
            os.close(reply_r)
            _serve_forks(request_r, reply_w, node)
        os.close(request_r)
        os.close(reply_w)
        return cls(pid, request_w, reply_r)

    def fork_worker(self, config: WorkerConfig) -> WorkerHandle:
        """A new worker, forked (spawned fresh if the forker is gone, stopped or stuck:
        it is then killed and not asked again)."""
        if self.broken:
            return spawn_worker(config)
        try:
            data = json.dumps(dataclasses.asdict(config)).encode()
            os.write(self.requests, struct.pack("I", len(data)) + data)
            if not select.select([self.replies], [], [], FORK_TIMEOUT_SECONDS)[0]:
                raise TimeoutError(f"the forker did not answer in {FORK_TIMEOUT_SECONDS} s")
            pid = struct.unpack("i", _read_exactly(self.replies, 4))[0]
        except (OSError, EOFError):
            self.broken = True
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)             # reaped now, not a zombie till the end
            except (ProcessLookupError, ChildProcessError):
                pass
            return spawn_worker(config)
        return WorkerHandle(config.index, pid, os.pidfd_open(pid), identity_of(config.index, pid))

    def stop(self) -> None:
        """Close the request pipe (the forker exits on end of file) and wait for it."""
        for fd in (self.requests, self.replies):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


def _serve_forks(requests: int, replies: int, node: int) -> None:  # pragma: no cover
    """The forker's loop: one worker per request, its pid back; exit with the node."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)                   # PR_SET_PDEATHSIG: go with the node
    libc.prctl(PR_SET_NAME, FORKER_NAME.encode())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.freeze()            # what it inherited: the collection below then touches none of it
    while True:
        try:
            size = struct.unpack("I", _read_exactly(requests, 4))[0]
            config = WorkerConfig(**json.loads(_read_exactly(requests, size)))
        except (OSError, EOFError):
            os._exit(0)
        gc.collect()       # its free lists emptied: a worker's first sweep (wire/freelists.py)
        handoff_r, handoff_w = os.pipe()   # would free their objects in pages it shares
        middle = os.fork()
        if middle == 0:
            worker = os.fork()
            if worker == 0:
                for fd in (requests, replies, handoff_r, handoff_w):
                    os.close(fd)
                _run_reparented(config, node)
            os.write(handoff_w, struct.pack("i", worker))
            os._exit(0)
        os.close(handoff_w)
        pid = _read_exactly(handoff_r, 4)
        os.close(handoff_r)
        os.waitpid(middle, 0)                       # the worker is the node's child now
        os.write(replies, pid)


def _run_reparented(config: WorkerConfig, node: int) -> None:  # pragma: no cover
    """In the new worker: wait until it is the node's child, then serve."""
    deadline = time.monotonic() + REPARENT_SECONDS
    while os.getppid() != node and time.monotonic() < deadline:
        time.sleep(0.001)
    _serve_and_exit(config)


def _serve_and_exit(config: WorkerConfig) -> None:  # pragma: no cover
    """A forked child becomes a worker and never returns into its parent's code.

    What it inherited is frozen out of the collector first: a full collection writes to
    every tracked object's header, which copies the pages it shares with its parent (each
    worker took a one-time step of ~0.8 MiB of private memory in the long run)."""
    gc.freeze()
    ctypes.CDLL(None).prctl(PR_SET_NAME, WORKER_NAME.encode())
    code = 0
    try:
        from plait.executor import worker

        worker.main(config)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


def _read_exactly(fd: int, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise EOFError("the other end of the pipe closed")
        data += chunk
    return data


def reap(handle: WorkerHandle) -> int:
    """Collect a dead worker's exit status and close its pidfd."""
    _, status = os.waitpid(handle.pid, 0)
    os.close(handle.pidfd)
    return status


def stop_all(handles: list[WorkerHandle], grace_seconds: float) -> None:
    """Wait for workers told to stop; SIGKILL any still alive after ``grace_seconds``."""
    deadline = time.monotonic() + grace_seconds
    alive = {h.pidfd: h for h in handles}
    poller = select.poll()
    for fd in alive:
        poller.register(fd, select.POLLIN)
    while alive and (left := deadline - time.monotonic()) > 0:
        for fd, _ in poller.poll(left * 1000):
            poller.unregister(fd)
            reap(alive.pop(fd))
    for handle in alive.values():
        try:
            os.kill(handle.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        reap(handle)
