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

import inspect
import json
import os
import warnings
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
    def actor_names(self) -> tuple[str, ...]: ...         # as registered (graph/actor.py)
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

    In the driver, ``task`` is None and ``worker_id``, given as None, becomes the
    driver's own (``driver_worker_id``: Ray's driver is a worker too); ``actor`` is set
    inside an actor's methods. The ``get_*`` methods and properties are Ray's spelling of
    the same facts; ids are ``Id`` strings (``.hex()`` works, as on Ray's ids).
    ``session_id`` is the cluster's session, shared by every driver and task of it (Ray's
    job id). Ray's older properties (``node_id``, ``task_id``, ``actor_id``, ``job_id``)
    and ``get()`` answer too, with Ray's DeprecationWarning naming the ``get_*`` method to
    use instead.
    """

    node: str
    worker_id: str | None
    task: str | None
    session_id: str
    actor: str | None = None
    canceled: Callable[[], bool] | None = field(default=None, compare=False, repr=False)
    task_name: str | None = None                  # what traces call it: f, Counter.incr
    resources: dict[str, float] | None = None     # held while it runs (None: the driver)
    reconstructed: bool = False                   # the actor was restarted at least once
    actor_handle: Callable[[], Any] | None = field(default=None, compare=False, repr=False)
    gpu_ids: tuple[int, ...] = ()                 # the GPUs it holds (CUDA_VISIBLE_DEVICES)
    function_name: str | None = None              # Ray's descriptor: module.f, module.A.m
    actor_name: str | None = None                 # "" in an actor created without a name
    env_vars: tuple[tuple[str, str], ...] = ()    # its runtime_env's (an actor's: its own)

    def __post_init__(self) -> None:
        if self.worker_id is None and self.task is None:     # made in the driver, for it
            object.__setattr__(self, "worker_id", driver_worker_id(self.session_id,
                                                                   os.getpid()))
        for name in ("node", "worker_id", "task", "session_id", "actor"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Id):
                object.__setattr__(self, name, Id(value))

    @property
    def node_id(self) -> str:
        _deprecated("get_node_id")
        return self.node

    @property
    def task_id(self) -> str | None:
        _deprecated("get_task_id")
        return self.task

    @property
    def actor_id(self) -> str | None:
        _deprecated("get_actor_id")
        return self.actor

    @property
    def job_id(self) -> str:
        _deprecated("get_job_id")
        return self.session_id

    @property
    def namespace(self) -> str:
        """Ray's anonymous namespace of a job: here the session, the one plait has."""
        return self.session_id

    def get(self) -> dict[str, Any]:
        """Ray's dict of the context: job, node and namespace; the task and actor ids only
        where there are some."""
        _deprecated("get_xxx_id", "methods to get relevant ids")
        found = {"job_id": self.session_id, "node_id": self.node, "namespace": self.namespace}
        if self.task is not None:
            found["task_id"] = self.task
        if self.actor is not None:
            found["actor_id"] = self.actor
        return found

    def get_actor_id(self) -> str | None:
        return self.actor

    def get_actor_name(self) -> str | None:
        """The actor's name (``options(name=...)``), "" if it has none; None outside an
        actor."""
        return self.actor_name if self.actor is not None else None

    @property
    def current_actor(self) -> Any:
        """The handle of the actor this call runs in (to call its own methods)."""
        if self.actor_handle is None:
            raise RuntimeError("current_actor is only available inside an actor's methods")
        return self.actor_handle()

    @property
    def was_current_actor_reconstructed(self) -> bool:
        """Whether this actor's process was started again (``max_restarts``)."""
        if self.actor is None:
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
        return self.node

    def get_worker_id(self) -> str | None:
        return self.worker_id

    def get_task_id(self) -> str | None:
        return self.task

    def get_placement_group_id(self) -> None:
        """Ray's id of the placement group the code runs in: plait has none (Ray's answer
        outside one)."""
        return None

    def get_node_labels(self) -> dict[str, str]:
        """Ray's labels of the node: a plait node has only the one Ray always sets, its
        id (a dict of one's own, the caller may change it)."""
        return {NODE_ID_LABEL: str(self.node)}

    @property
    def runtime_env(self) -> dict[str, Any]:
        """Ray's runtime_env of the running code, as a dict (``get_runtime_env_string``'s)."""
        return json.loads(self.get_runtime_env_string())

    @property
    def should_capture_child_tasks_in_placement_group(self) -> bool:
        """Ray's: plait has no placement groups, so never."""
        return False

    def get_runtime_env_string(self) -> str:
        """Ray's JSON of the running code's runtime_env, "{}" without one: of plait's
        runtime_env, the ``env_vars`` a task or actor was given (those ``plait.init`` gave
        every worker are not told apart from the rest of its environment)."""
        if not self.env_vars:
            return "{}"
        return json.dumps({"env_vars": dict(self.env_vars)}, separators=(",", ":"))

    def get_task_name(self) -> str | None:
        return self.task_name

    def get_task_function_name(self) -> str | None:
        """The running code's module and name (``module.f``, ``module.Actor.method``);
        None in the driver."""
        return self.function_name

    def get_job_id(self) -> str:
        return self.session_id


NODE_ID_LABEL = "ray.io/node-id"      # the label Ray sets on every node: the node's id


def driver_worker_id(session_id: str, pid: int) -> str:
    """The driver's worker id (Ray gives its driver one, as every worker): beside a
    worker's ``node-0.w3``, the session's and the driver's process id, so each driver of
    a cluster has its own, the same for its whole life.

    >>> driver_worker_id("9f-1", 4242)
    '9f-1.driver-4242'
    """
    return f"{session_id}.driver-{pid}"


def _deprecated(method: str, what: str = "") -> None:
    """Ray's warning on its old id properties, in its words (code searching for them finds
    them): the ``get_*`` methods return the same ids."""
    warnings.warn(f"Use {method}() {what + ' ' if what else ''}instead", DeprecationWarning,
                  stacklevel=3)


def function_descriptor(function: Any, method: str | None = None) -> str:
    """Ray's name of a task's code: ``module.name`` of a function, ``module.Class.method``
    of an actor's method; of an ``async def`` method Ray names its full ``__qualname__``
    (``module.outer.<locals>.Class.method``), and so does this.

    >>> function_descriptor(function_descriptor)
    'plait.graph.context.function_descriptor'
    >>> function_descriptor(Id, "hex")
    'plait.graph.context.Id.hex'
    """
    module = getattr(function, "__module__", None) or "__main__"
    if method is None:
        return f"{module}.{getattr(function, '__name__', repr(function))}"
    code = getattr(function, method, None)
    if inspect.iscoroutinefunction(code) or inspect.isasyncgenfunction(code):
        return f"{code.__module__}.{code.__qualname__}"
    return f"{module}.{function.__name__}.{method}"


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
