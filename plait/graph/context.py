"""The seam between the lazy graph and whoever runs it.

The graph layer must not import the executor (graph <- compiler <- executor), yet an
ObjectRef has to tell someone when it dies, and ``ref.compute()`` has to run something. The
session (``plait.api``) installs itself here as the *runtime*; graph code only ever talks to
this small protocol.

This module is the floor of the graph layer: refs, tasks and remote functions import it, so
it names none of them. Where the runtime takes or returns a ref or a task, the protocol says
``Any``; the session (``plait.executor.driver.session``) states the precise types.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


class Runtime(Protocol):
    """What the graph layer needs from a running session."""

    def incref(self, object_id: str) -> None: ...
    def decref(self, object_id: str) -> None: ...
    def put(self, value: Any) -> Any: ...                 # an ObjectRef
    def dumps(self, value: Any) -> bytes: ...     # pickle a call's arguments (see encode_call)
    def get(self, refs: Any, timeout: float | None = None) -> Any: ...
    def describe(self, object_id: str) -> str: ...
    def new_id(self, stem: str) -> str: ...
    def created(self, task: Any) -> None: ...             # a Task
    def get_actor(self, name: str) -> Any: ...
    def runtime_context(self) -> RuntimeContext: ...
    def visualize(self, refs: list[Any], filename: str | None) -> str: ...   # ObjectRefs


@dataclass(frozen=True)
class RuntimeContext:
    """Where the calling code runs: ``plait.get_runtime_context()``.

    In the driver, ``task_id`` and ``worker_id`` are None; ``actor_id`` is set inside an
    actor's methods. The ``get_*`` methods are Ray's spelling of the same facts.
    """

    node_id: str
    worker_id: str | None
    task_id: str | None
    session_id: str
    actor_id: str | None = None
    canceled: Callable[[], bool] | None = field(default=None, compare=False, repr=False)

    def get_actor_id(self) -> str | None:
        return self.actor_id

    def is_canceled(self) -> bool:
        """Whether ``plait.cancel`` asked the running call to stop (an actor's sync method
        is never interrupted: it may check this and return early, as in Ray)."""
        return self.canceled() if self.canceled is not None else False

    def get_node_id(self) -> str:
        return self.node_id

    def get_worker_id(self) -> str | None:
        return self.worker_id

    def get_task_id(self) -> str | None:
        return self.task_id

    def get_job_id(self) -> str:
        return self.session_id


_active: Runtime | None = None
_starter: Callable[[], Runtime] | None = None


def install(runtime: Runtime | None) -> None:
    """Make ``runtime`` the one ObjectRefs report to (None: no session is running)."""
    global _active
    _active = runtime


def install_starter(starter: Callable[[], Runtime]) -> None:
    """Register how to start a session on first use (``plait.init`` with defaults)."""
    global _starter
    _starter = starter


def active() -> Runtime | None:
    """The running session, or None; never starts one (safe in ``__del__``)."""
    return _active


def runtime() -> Runtime:
    """The running session, starting the default one on first use (as Ray does)."""
    if _active is not None:
        return _active
    assert _starter is not None, "plait.api installs a starter on import"
    return _starter()
