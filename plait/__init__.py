"""plait: a dataflow graph compiler and executor for large immutable objects.

Layers (arrows point the way imports may go; a test keeps them true)::

    plait.graph  <-  plait.compiler  <-  plait.executor  <-  plait.api  <-  plait
         ^                                    |
         +---------- plait.store  <-----------+          plait.errors: imported by all,
                                                           imports nothing of plait

graph is WHAT to compute (ObjectRef, remote functions, the lazy Graph); compiler is WHERE
and WHEN (pure: graph + cluster view -> Plan); store is BYTES on one node (serialisation,
the shared-memory arena); executor is DOING it (ZeroMQ protocol, node and worker
processes). ``import plait as ray`` runs plain Ray Core scripts.
"""

import importlib as _importlib
import typing as _typing

# Where each public name lives, loaded on first use (PEP 562): a node or worker process
# imports ``plait.executor...``, which runs this file first, and needs none of the session,
# the compiler's passes or the graph's decorators. Loading them all here cost a node 0.17 s
# of CPU on its way to the first Welcome (45% of its imports; cold init was 0.59 s).
_HOMES = {
    "actor": "plait.actor", "exceptions": "plait.exceptions", "util": "plait.util",
    **dict.fromkeys(
        ("available_resources", "cancel", "cluster_resources", "compile", "compute", "free",
         "get", "get_actor", "get_gpu_ids", "get_runtime_context", "init", "is_initialized",
         "kill", "memory_summary", "nodes", "persist", "put", "shutdown", "timeline", "trace",
         "visualize", "wait"), "plait.api"),
    "Plan": "plait.compiler.plan",
    **dict.fromkeys(
        ("ActorDiedError", "ActorNotFoundError", "ClusterError", "DeserializationError",
         "GetTimeoutError", "HeadUnavailableError", "InvalidOptionError", "NotInitializedError",
         "ObjectCorruptedError", "ObjectFreedError", "ObjectLostError", "ObjectStoreFullError",
         "ObjectTooLargeError", "OutOfMemoryError", "PlaitError", "PlanError",
         "ReconstructionFailedError", "SerializationError", "TaskCancelledError", "TaskError",
         "WorkerCrashedError"), "plait.errors"),
    **dict.fromkeys(("ActorClass", "ActorHandle", "method"), "plait.graph.actor"),
    "remote": "plait.graph.decorator",
    "ObjectRef": "plait.graph.refs",
    "ObjectID": "plait.graph.refs",          # Ray's old name, kept by Ray as an alias
    **dict.fromkeys(("ObjectRefGenerator", "RemoteFunction"), "plait.graph.remote_function"),
}
_ALIASES = {"ObjectID": "ObjectRef"}


def __getattr__(name: str) -> _typing.Any:
    """Load a public name from its home on first use, then keep it here. The session comes
    first whatever the name: it installs how ``f.remote()`` starts the default cluster."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'plait' has no attribute {name!r}")
    _importlib.import_module("plait.api")
    module = _importlib.import_module(home)
    value = module if home == f"plait.{name}" else getattr(module, _ALIASES.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if _typing.TYPE_CHECKING:  # what type checkers and readers see: the names, eagerly
    from plait import actor, exceptions, util
    from plait.api import (available_resources, cancel, cluster_resources, compile, compute,
                           free, get, get_actor, get_gpu_ids, get_runtime_context, init,
                           is_initialized, kill, memory_summary, nodes, persist, put, shutdown,
                           timeline, trace, visualize, wait)
    from plait.compiler.plan import Plan
    from plait.errors import (ActorDiedError, ActorNotFoundError, ClusterError,
                              DeserializationError, GetTimeoutError, HeadUnavailableError,
                              InvalidOptionError, NotInitializedError, ObjectCorruptedError,
                              ObjectFreedError, ObjectLostError, ObjectStoreFullError,
                              ObjectTooLargeError, OutOfMemoryError, PlaitError, PlanError,
                              ReconstructionFailedError, SerializationError,
                              TaskCancelledError, TaskError, WorkerCrashedError)
    from plait.graph.actor import ActorClass, ActorHandle, method
    from plait.graph.decorator import remote
    from plait.graph.refs import ObjectRef
    from plait.graph.refs import ObjectRef as ObjectID
    from plait.graph.remote_function import ObjectRefGenerator, RemoteFunction

__version__ = "0.1.0"

__all__ = [
    "ActorClass",
    "ActorDiedError",
    "ActorHandle",
    "ActorNotFoundError",
    "ClusterError",
    "DeserializationError",
    "GetTimeoutError",
    "HeadUnavailableError",
    "InvalidOptionError",
    "NotInitializedError",
    "ObjectCorruptedError",
    "ObjectFreedError",
    "ObjectID",
    "ObjectLostError",
    "ObjectRef",
    "ObjectRefGenerator",
    "ObjectStoreFullError",
    "ObjectTooLargeError",
    "OutOfMemoryError",
    "PlaitError",
    "Plan",
    "PlanError",
    "ReconstructionFailedError",
    "RemoteFunction",
    "SerializationError",
    "TaskCancelledError",
    "TaskError",
    "WorkerCrashedError",
    "actor",
    "available_resources",
    "cancel",
    "cluster_resources",
    "compile",
    "compute",
    "exceptions",
    "free",
    "get",
    "get_actor",
    "get_gpu_ids",
    "get_runtime_context",
    "init",
    "is_initialized",
    "kill",
    "memory_summary",
    "method",
    "nodes",
    "persist",
    "put",
    "remote",
    "shutdown",
    "timeline",
    "trace",
    "util",
    "visualize",
    "wait",
]
