"""WHAT to compute: ObjectRef, RemoteFunction, Task and the plain-data Graph. No I/O here."""

from plait.graph.decorator import remote
from plait.graph.graph import Graph, TaskNode, collect
from plait.graph.options import TaskOptions
from plait.graph.refs import ObjectRef
from plait.graph.remote_function import RemoteFunction
from plait.graph.task import Task

__all__ = ["Graph", "ObjectRef", "RemoteFunction", "Task", "TaskNode", "TaskOptions", "collect",
           "remote"]
