"""WHERE and WHEN: ``compile(graph, cluster_view, options) -> Plan``. Pure: no I/O, no clock.

The names load on first use: the head and the wire need only ``view`` (what a cluster looks
like), not the passes, so a node starts without importing them (see plait/__init__.py).
"""

import importlib as _importlib
import typing as _typing

_HOMES = {
    "compile": "plait.compiler.compile",
    **dict.fromkeys(("Placement", "Plan", "Stage", "Transfer"), "plait.compiler.plan"),
    "slots_of": "plait.compiler.placement",
    "validate": "plait.compiler.validate",
    **dict.fromkeys(("ClusterView", "CompileOptions", "NodeView", "ObjectInfo"),
                    "plait.compiler.view"),
    "PlanError": "plait.errors",
}


def __getattr__(name: str) -> _typing.Any:
    """Load a name from its module on first use, then keep it here."""
    if name not in _HOMES:
        raise AttributeError(f"module 'plait.compiler' has no attribute {name!r}")
    value = getattr(_importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


if _typing.TYPE_CHECKING:
    from plait.compiler.compile import compile
    from plait.compiler.placement import slots_of
    from plait.compiler.plan import Placement, Plan, Stage, Transfer
    from plait.compiler.validate import validate
    from plait.compiler.view import ClusterView, CompileOptions, NodeView, ObjectInfo
    from plait.errors import PlanError

__all__ = ["ClusterView", "CompileOptions", "NodeView", "ObjectInfo", "Placement", "Plan", "Stage",
           "PlanError", "Transfer", "compile", "slots_of", "validate"]
