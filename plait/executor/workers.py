"""The node's worker processes: start, watch (pidfd), replace, stop.

The first workers are forked from the node process before it creates its ZeroMQ context,
so they start in milliseconds with numpy and cloudpickle already imported and no threads
copied. A worker started later (to replace one that died) is spawned fresh with
``python -m plait.executor.worker``: forking a process that runs ZeroMQ's I/O threads is
not safe.
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import signal
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from plait.executor.worker import WorkerConfig, identity_of


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
    blocked: bool = False            # its task waits for tasks it submitted
    extra: bool = False              # started to stand in for a blocked worker
    retiring: bool = False           # told to stop: not to be replaced
    oom: str = ""                    # why plait killed it for its memory, if it did
    stopped_since: float = 0.0       # when it was first seen stopped (SIGSTOP), 0 if not
    actor: str = ""                  # the actor it holds: runs only that actor's calls

    def state(self) -> str:
        """The process state letter from /proc ("T" when stopped by a signal)."""
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return "X"

    def rss(self) -> int:
        """Resident bytes of the worker process (0 once it is gone)."""
        try:
            with open(f"/proc/{self.pid}/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            return 0

    def describe(self, node: str, status: int) -> str:
        code = os.waitstatus_to_exitcode(status)
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        return f"{node} worker {self.index} (pid {self.pid}) died with {how}"


def fork_worker(config: WorkerConfig) -> WorkerHandle:
    """Fork a worker; only call before the node process starts any thread."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
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
    return WorkerHandle(config.index, pid, os.pidfd_open(pid), identity_of(config.index, pid))


def spawn_worker(config: WorkerConfig) -> WorkerHandle:
    """Start a fresh interpreter running a worker (safe at any time)."""
    argv = [sys.executable, "-m", "plait.executor.worker", json.dumps(dataclasses.asdict(config))]
    pid = os.posix_spawn(sys.executable, argv, dict(os.environ))
    return WorkerHandle(config.index, pid, os.pidfd_open(pid), identity_of(config.index, pid))


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
