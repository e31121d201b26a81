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

import cloudpickle  # ray.cloudpickle: the pickler Ray programs reach through ray

from plait import actor, cluster_utils, exceptions, util
from plait.api import (available_resources, cancel, cluster_resources, compile, compute, free,
                       get, get_actor, get_gpu_ids, get_runtime_context, init, is_initialized,
                       kill, memory_summary, nodes, persist, put, shutdown, timeline, trace,
                       visualize, wait)
from plait.compiler.plan import Plan
from plait.errors import (ActorDiedError, ActorNotFoundError, ClusterError,
                          ClusterNotFoundError, DeserializationError,
                          GetTimeoutError, HeadUnavailableError, InvalidArgumentError,
                          InvalidOptionError, NotInitializedError,
                          ObjectCorruptedError, ObjectFreedError, ObjectLostError,
                          ObjectStoreFullError, ObjectTooLargeError, OutOfMemoryError,
                          PlaitError, PlanError, ReconstructionFailedError,
                          SerializationError, TaskCancelledError, TaskError,
                          WorkerCrashedError)
from plait.graph.actor import ActorClass, ActorHandle, method
from plait.graph.decorator import remote
from plait.graph.refs import ObjectRef
from plait.graph.refs import ObjectRef as ObjectID   # Ray's old name, kept by Ray as an alias
from plait.graph.remote_function import ObjectRefGenerator, RemoteFunction

__version__ = "0.1.0"

__all__ = [
    "ActorClass",
    "ActorDiedError",
    "ActorHandle",
    "ActorNotFoundError",
    "ClusterError",
    "ClusterNotFoundError",
    "DeserializationError",
    "GetTimeoutError",
    "HeadUnavailableError",
    "InvalidArgumentError",
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
    "cloudpickle",
    "cluster_resources",
    "cluster_utils",
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
