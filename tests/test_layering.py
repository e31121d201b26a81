"""The import arrows of plait/__init__.py's diagram, kept true by reading every module's AST.

Every import counts, including the lazy ones inside functions and those under
``TYPE_CHECKING``: a lazy import is still a dependency of the layer, and a circle closed by
one is still a circle. ``MAY_IMPORT`` is the one table of which layer may import which (the
executor's processes are layers of their own inside it); ``ACYCLIC`` names the layers whose
modules must not import each other in a circle, and ``DECLARED`` the one circle that is
allowed, with its reason.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import networkx
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "plait"

# Which plait layers each layer may import, besides itself. plait.errors imports nothing of
# plait; every layer may import it.
MAY_IMPORT: dict[str, set[str]] = {
    "plait.errors": set(),
    "plait.graph": {"plait.errors"},
    "plait.compiler": {"plait.graph", "plait.errors"},
    "plait.store": {"plait.errors"},
    "plait.executor": {"plait.graph", "plait.compiler", "plait.store", "plait.errors"},
    # The executor's parts, drawn in plait/executor/__init__.py: what they may import of the
    # executor besides themselves (each may import what plait.executor may). The wire is
    # what all processes share; head and driver speak only it; the rest follow the data.
    "plait.executor.wire": set(),
    "plait.executor.engine": set(),
    "plait.executor.head": {"plait.executor.wire"},
    "plait.executor.driver": {"plait.executor.wire", "plait.executor.engine"},
    "plait.executor.worker": {"plait.executor.wire", "plait.executor.driver",
                              "plait.executor.calls"},
    "plait.executor.calls": {"plait.executor.wire", "plait.executor.driver"},
    "plait.executor.node": {"plait.executor.wire", "plait.executor.head",
                            "plait.executor.worker"},
    "plait.executor.cli": {"plait.executor.wire", "plait.executor.driver"},
    # The dashboard is a client of the head like a driver: it speaks the wire through the
    # driver's connection and draws plans with the compiler's pictures.
    "plait.dashboard": {"plait.executor", "plait.executor.wire", "plait.executor.driver",
                        "plait.compiler", "plait.store", "plait.errors"},
    # Engines run plans on someone else's cluster (Ray, Dask): they implement the executor's
    # Engine seam, record its trace events and reuse the driver's idle flusher; they touch
    # none of its processes.
    "plait.engines": {"plait.graph", "plait.compiler", "plait.store", "plait.errors",
                      "plait.executor.engine", "plait.executor.wire",
                      "plait.executor.driver"},
}

# Standard modules that would give the pure compiler a clock, randomness, processes or I/O.
IMPURE = {"time", "random", "socket", "os", "subprocess", "threading", "multiprocessing",
          "uuid", "datetime", "secrets", "asyncio", "select", "signal", "zmq"}
NO_SOCKETS = {"zmq", "socket", "subprocess", "multiprocessing"}
MAY_NOT_USE: dict[str, set[str]] = {
    "plait.graph": NO_SOCKETS, "plait.compiler": IMPURE, "plait.store": NO_SOCKETS}

# Layers whose modules import one another without a circle.
ACYCLIC = ("plait.graph", "plait.compiler", "plait.executor", "plait.dashboard")

# The circles allowed, as (importer, imported package): Plan's methods explain() and
# visualize() call into the drawing that reads plans, importing it only when called, so
# compiling (and `import plait`) never loads the drawing code.
DECLARED = {("plait.compiler.plan", "plait.compiler.draw")}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    return (PACKAGE.parent / relative).with_suffix(".py").exists() or \
        (PACKAGE.parent / relative / "__init__.py").exists()


def _import_nodes(tree: ast.AST, lazy: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every import statement, and whether it runs only when a function is called."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, lazy
        inside = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        yield from _import_nodes(node, inside)


def _targets(node: ast.AST, package: str) -> Iterator[str]:
    """Full names of the modules one import statement imports (``from a import b``: a.b if
    that is a module, else a)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:
        anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(anchor + ([node.module] if node.module else []))
    for alias in node.names:
        full = f"{base}.{alias.name}"
        yield full if _is_module(full) else base


def _scan(source: str, module: str, is_package: bool = False) -> dict[str, bool]:
    """Modules ``source`` imports -> whether every import of it is lazy."""
    package = module if is_package else module.rpartition(".")[0]
    found: dict[str, bool] = {}
    for node, lazy in _import_nodes(ast.parse(source, module)):
        for target in _targets(node, package):
            found[target] = found.get(target, True) and lazy
    found.pop("__future__", None)
    return found


SCANS = {_module_name(path): _scan(path.read_text(), _module_name(path), path.name == "__init__.py")
         for path in sorted(PACKAGE.rglob("*.py"))}
IMPORTS = {module: set(deps) for module, deps in SCANS.items()}


def _inside(name: str, layer: str) -> bool:
    return name == layer or name.startswith(layer + ".")


def _in_layer(layer: str) -> dict[str, set[str]]:
    return {m: deps for m, deps in IMPORTS.items() if _inside(m, layer)}


def _layer_of(name: str) -> str:
    """The innermost layer of MAY_IMPORT that holds ``name`` (else its top-level part)."""
    return max((layer for layer in MAY_IMPORT if _inside(name, layer)), key=len,
               default=".".join(name.split(".")[:2]))


def _outer(layer: str) -> str | None:
    """The layer that ``layer`` is a part of, if any (plait.executor for its parts)."""
    return max((other for other in MAY_IMPORT if layer.startswith(other + ".")), key=len,
               default=None)


def _allowed(layer: str) -> set[str]:
    """What ``layer`` may import: its row, itself, and what the layer around it may."""
    outer = _outer(layer)
    return MAY_IMPORT[layer] | {layer} | (_allowed(outer) - {outer} if outer else set())


def _breaking(layer: str) -> list[str]:
    """``module -> import`` lines of ``layer`` that leave MAY_IMPORT or use MAY_NOT_USE."""
    allowed = _allowed(layer)
    broken = []
    for module, deps in _in_layer(layer).items():
        if _layer_of(module) != layer:
            continue                        # a part of its own, with its own row
        for dep in sorted(deps):
            if _inside(dep, "plait") and _layer_of(dep) not in allowed:
                broken.append(f"{module} -> {dep}")
            elif dep.split(".")[0] in MAY_NOT_USE.get(layer, ()):
                broken.append(f"{module} -> {dep}")
    return broken


def _declared(module: str, dep: str) -> bool:
    return any(module == importer and _inside(dep, imported) for importer, imported in DECLARED)


def _circles(layer: str) -> list[list[str]]:
    """Groups of ``layer``'s modules that import each other in a circle, DECLARED aside."""
    arrows = networkx.DiGraph()
    for module, deps in _in_layer(layer).items():
        arrows.add_node(module)
        arrows.add_edges_from((module, dep) for dep in deps
                              if _inside(dep, layer) and dep != module
                              and not _declared(module, dep))
    return sorted(sorted(group) for group in networkx.strongly_connected_components(arrows)
                  if len(group) > 1)


def test_the_scan_sees_every_kind_of_import():
    source = ("from typing import TYPE_CHECKING\nimport plait.errors\n"
              "from plait.graph import refs\nfrom . import task\n"
              "if TYPE_CHECKING:\n    from plait.graph.ids import IdGenerator\n"
              "def later():\n    from plait.compiler.plan import Plan\n")
    assert _scan(source, "plait.graph.probe") == {
        "typing": False, "plait.errors": False, "plait.graph.refs": False,
        "plait.graph.task": False, "plait.graph.ids": False, "plait.compiler.plan": True}


def test_the_scan_sees_the_package():
    assert set(MAY_IMPORT) | {"plait", "plait.api"} <= set(IMPORTS)
    assert "plait.graph.graph" in IMPORTS["plait.compiler.passes"]
    assert "plait.compiler" in IMPORTS["plait.api"]          # `from plait import compiler`


def test_the_table_draws_no_circle():
    arrows = networkx.DiGraph((layer, other) for layer, others in MAY_IMPORT.items()
                              for other in others)
    assert list(networkx.simple_cycles(arrows)) == []


def test_every_part_of_the_executor_has_a_row():
    """A new module of the executor belongs to one of its processes (or to the wire)."""
    assert sorted(m for m in _in_layer("plait.executor") if _layer_of(m) == "plait.executor") \
        == ["plait.executor"]


def test_a_part_may_import_what_the_executor_may_and_its_row():
    assert _allowed("plait.executor.wire") == {"plait.executor.wire", "plait.graph",
                                               "plait.compiler", "plait.store", "plait.errors"}
    assert _allowed("plait.executor.node") - _allowed("plait.executor.wire") == {
        "plait.executor.node", "plait.executor.head", "plait.executor.worker"}


def test_the_table_check_sees_the_head_reach_into_its_node(monkeypatch):
    monkeypatch.setitem(IMPORTS, "plait.executor.head.head", IMPORTS[
        "plait.executor.head.head"] | {"plait.executor.node.node"})
    assert _breaking("plait.executor.head") == [
        "plait.executor.head.head -> plait.executor.node.node"]


def test_errors_imports_nothing_of_plait():
    assert [dep for dep in IMPORTS["plait.errors"] if _inside(dep, "plait")] == []


@pytest.mark.parametrize("layer", sorted(MAY_IMPORT))
def test_each_layer_imports_only_what_the_table_allows(layer):
    assert _breaking(layer) == []


@pytest.mark.parametrize("layer", ["plait.graph", "plait.compiler", "plait.store",
                                   "plait.executor"])
def test_no_layer_imports_the_top_level_package(layer):
    assert [m for m, deps in _in_layer(layer).items() if "plait" in deps] == []


@pytest.mark.parametrize("layer", ACYCLIC)
def test_no_import_circle_inside_the_layer(layer):
    assert _circles(layer) == []


def test_the_circle_check_sees_a_circle_closed_by_a_lazy_import(monkeypatch):
    monkeypatch.setitem(IMPORTS, "plait.graph.ids", IMPORTS["plait.graph.ids"] | {
        "plait.graph.task"})
    assert any({"plait.graph.ids", "plait.graph.task"} <= set(group)
               for group in _circles("plait.graph"))


@pytest.mark.parametrize(("importer", "imported"), sorted(DECLARED))
def test_a_declared_circle_is_used_and_only_lazily(importer, imported):
    uses = {dep: lazy for dep, lazy in SCANS[importer].items() if _inside(dep, imported)}
    assert uses, f"{importer} no longer imports {imported}: drop it from DECLARED"
    assert all(uses.values()), f"{importer} imports {imported} at import time: {uses}"


def _run(code: str) -> None:
    done = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_importing_the_pure_layers_loads_no_zmq():
    _run("import sys, plait.compiler, plait.graph, plait.store.serialization; "
         "assert 'zmq' not in sys.modules, sorted(m for m in sys.modules if 'zmq' in m)")


def test_import_plait_and_compiling_load_no_drawing_code():
    _run("import sys, plait\n"
         "from plait.compiler import ClusterView, NodeView, compile\n"
         "from plait.graph import Graph, TaskNode\n"
         "drawing = lambda: sorted(m for m in sys.modules if m.startswith('plait.compiler.draw'))\n"
         "assert drawing() == [], drawing()\n"
         "plan = compile(Graph({'t': TaskNode('t', 'f', 'f@1', (), ('t',))}, ('t',)),\n"
         "               ClusterView((NodeView('node-0', 1),)))\n"
         "assert drawing() == [], drawing()\n"
         "assert 'node-0' in plan.explain() and 'plait.compiler.draw.explain' in drawing()\n")


def test_init_can_start_its_nodes_before_it_loads_zmq():
    """plait.init launches the node processes first and imports the socket side while
    they boot (driver/cluster.py): finding and starting a cluster needs no ZeroMQ."""
    _run("import sys, plait\n"
         "from plait.executor.driver.cluster import LocalCluster\n"
         "from plait.executor.driver.discovery import cluster_here\n"
         "assert cluster_here() is None\n"
         "assert 'zmq' not in sys.modules, sorted(m for m in sys.modules if 'zmq' in m)\n")


def test_a_node_and_its_workers_load_no_asyncio_without_a_cluster_key():
    """zmq.auth.thread (asyncio, ssl) is for keyed clusters only: not on every node's start."""
    _run("import sys, plait.executor.node.server, plait.executor.worker\n"
         "assert 'asyncio' not in sys.modules and 'zmq.auth.thread' not in sys.modules\n")
