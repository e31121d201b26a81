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

    def incref(self, object_id: str, found: bool = True) -> None: ...   # see ObjectRef
    def decref(self, object_id: str) -> None: ...
    def put(self, value: Any) -> Any: ...                 # an ObjectRef
    def dumps(self, value: Any) -> bytes: ...     # pickle a call's arguments (see encode_call)
    def get(self, refs: Any, timeout: float | None = None) -> Any: ...
    def future(self, ref: Any) -> Any: ...       # a concurrent.futures.Future of its value
    def describe(self, object_id: str) -> str: ...
    def new_id(self, stem: str) -> str: ...
    def created(self, task: Any) -> None: ...             # a Task
    def get_actor(self, name: str) -> Any: ...
    def runtime_context(self) -> RuntimeContext: ...
    def visualize(self, refs: list[Any], filename: str | None) -> str: ...   # ObjectRefs
    # a generator task's stream (``ObjectRefGenerator``): its refs as they come
    def stream_opened(self, generator: Any) -> None: ...
    def await_yielded(self, generator: Any, timeout: float | None) -> bool: ...
    def stream_failed(self, generator: Any) -> bool | None: ...


class Id(str):
    """An id as Ray hands it out: Ray's ids are objects read with ``.hex()``; plait's are
    readable strings, and this one answers ``.hex()`` with itself."""

    __slots__ = ()

    def hex(self) -> str:
        return str(self)


@dataclass(frozen=True)
class RuntimeContext:
    """Where the calling code runs: ``plait.get_runtime_context()``.

    In the driver, ``task_id`` and ``worker_id`` are None; ``actor_id`` is set inside an
    actor's methods. The ``get_*`` methods and properties are Ray's spelling of the same
    facts; ids are ``Id`` strings (``.hex()`` works, as on Ray's ids). ``session_id`` is the
    cluster's session, shared by every driver and task of it (Ray's job id).
    """

    node_id: str
    worker_id: str | None
    task_id: str | None
    session_id: str
    actor_id: str | None = None
    canceled: Callable[[], bool] | None = field(default=None, compare=False, repr=False)
    task_name: str | None = None                  # what traces call it: f, Counter.incr
    resources: dict[str, float] | None = None     # held while it runs (None: the driver)
    reconstructed: bool = False                   # the actor was restarted at least once
    actor_handle: Callable[[], Any] | None = field(default=None, compare=False, repr=False)
    gpu_ids: tuple[int, ...] = ()                 # the GPUs it holds (CUDA_VISIBLE_DEVICES)

    def __post_init__(self) -> None:
        for name in ("node_id", "worker_id", "task_id", "session_id", "actor_id"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Id):
                object.__setattr__(self, name, Id(value))

    @property
    def job_id(self) -> str:
        return self.session_id

    @property
    def namespace(self) -> str:
        """Ray's anonymous namespace of a job: here the session, the one plait has."""
        return self.session_id

    def get(self) -> dict[str, Any]:
        """Ray's dict of the context: job, node and namespace; the task and actor ids only
        where there are some."""
        found = {"job_id": self.session_id, "node_id": self.node_id, "namespace": self.namespace}
        if self.task_id is not None:
            found["task_id"] = self.task_id
        if self.actor_id is not None:
            found["actor_id"] = self.actor_id
        return found

    def get_actor_id(self) -> str | None:
        return self.actor_id

    @property
    def current_actor(self) -> Any:
        """The handle of the actor this call runs in (to call its own methods)."""
        if self.actor_handle is None:
            raise RuntimeError("current_actor is only available inside an actor's methods")
        return self.actor_handle()

    @property
    def was_current_actor_reconstructed(self) -> bool:
        """Whether this actor's process was started again (``max_restarts``)."""
        if self.actor_id is None:
            raise RuntimeError("was_current_actor_reconstructed is only available inside an "
                               "actor")
        return self.reconstructed

    def get_accelerator_ids(self) -> dict[str, list[str]]:
        """Ray's ``{"GPU": ["0", ...]}``: the GPUs the running task or actor holds."""
        return {"GPU": [str(gpu) for gpu in self.gpu_ids]}

    def get_assigned_resources(self) -> dict[str, float]:
        """What the running task or actor holds, as Ray says it: ``{"CPU": 1.0}`` for a
        task, ``{}`` for an actor that asked for no CPUs, with its GPUs, memory and custom
        resources beside."""
        if self.resources is None:
            raise RuntimeError("get_assigned_resources is only available inside a task or "
                               "an actor")
        return dict(self.resources)

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

    def get_task_name(self) -> str | None:
        return self.task_name

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
