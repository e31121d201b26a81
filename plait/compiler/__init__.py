"""WHERE and WHEN: ``compile(graph, cluster_view, options) -> Plan``. Pure: no I/O, no clock."""

from plait.compiler.compile import compile
from plait.compiler.plan import Placement, Plan, Stage, Transfer
from plait.compiler.placement import slots_of
from plait.compiler.validate import validate
from plait.compiler.view import ClusterView, CompileOptions, NodeView, ObjectInfo
from plait.errors import PlanError

__all__ = ["ClusterView", "CompileOptions", "NodeView", "ObjectInfo", "Placement", "Plan", "Stage",
           "PlanError", "Transfer", "compile", "slots_of", "validate"]
