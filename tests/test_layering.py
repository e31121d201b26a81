"""The import arrows of plait/__init__.py's diagram, kept true by reading every module's AST.

Every import counts, including the lazy ones inside functions and those under
``TYPE_CHECKING``: a lazy import is still a dependency of the layer.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "plait"

# Standard modules that would give the pure compiler a clock, randomness, processes or I/O.
IMPURE = {"time", "random", "socket", "os", "subprocess", "threading", "multiprocessing",
          "uuid", "datetime", "secrets", "asyncio", "select", "signal", "zmq"}
NO_SOCKETS = {"zmq", "socket", "subprocess", "multiprocessing"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    return (PACKAGE.parent / relative).with_suffix(".py").exists() or \
        (PACKAGE.parent / relative / "__init__.py").exists()


def _imports(path: Path) -> set[str]:
    """Full names of the modules ``path`` imports (``from a import b`` counts a.b if a module)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if _is_module(full) else base)
    found.discard("__future__")
    return found


IMPORTS = {_module_name(path): _imports(path) for path in sorted(PACKAGE.rglob("*.py"))}


def _in_layer(layer: str) -> dict[str, set[str]]:
    return {m: deps for m, deps in IMPORTS.items() if m == layer or m.startswith(layer + ".")}


def _plait_imports(deps: set[str]) -> set[str]:
    return {d for d in deps if d == "plait" or d.startswith("plait.")}


def _layer_of(name: str) -> str:
    return ".".join(name.split(".")[:2])


def _breaking(layer: str, allowed: set[str], forbidden_top: set[str] = frozenset()) -> list[str]:
    """``module -> import`` lines of ``layer`` that leave ``allowed`` or touch ``forbidden_top``."""
    broken = []
    for module, deps in _in_layer(layer).items():
        for dep in sorted(deps):
            if (dep == "plait" or dep.startswith("plait.")) and _layer_of(dep) not in allowed:
                broken.append(f"{module} -> {dep}")
            elif dep.split(".")[0] in forbidden_top:
                broken.append(f"{module} -> {dep}")
    return broken


def test_the_scan_sees_the_package():
    assert {"plait", "plait.errors", "plait.graph", "plait.compiler", "plait.store",
            "plait.executor", "plait.api"} <= set(IMPORTS)
    assert "plait.graph.graph" in IMPORTS["plait.compiler.passes"]
    assert "plait.compiler" in IMPORTS["plait.api"]          # `from plait import compiler`
    assert "plait.executor.head" in IMPORTS["plait.executor.invariants"]   # under TYPE_CHECKING


def test_errors_imports_nothing_of_plait():
    assert _plait_imports(IMPORTS["plait.errors"]) == set()


def test_graph_imports_only_graph_and_errors():
    assert _breaking("plait.graph", {"plait.graph", "plait.errors"}, NO_SOCKETS) == []


def test_compiler_imports_only_graph_compiler_errors_and_nothing_impure():
    allowed = {"plait.graph", "plait.compiler", "plait.errors"}
    assert _breaking("plait.compiler", allowed, IMPURE) == []


def test_store_imports_only_store_and_errors_and_no_sockets():
    assert _breaking("plait.store", {"plait.store", "plait.errors"}, NO_SOCKETS) == []


def test_executor_never_imports_the_session():
    allowed = {"plait.graph", "plait.compiler", "plait.store", "plait.executor", "plait.errors"}
    assert _breaking("plait.executor", allowed) == []


@pytest.mark.parametrize("layer", ["plait.graph", "plait.compiler", "plait.store",
                                   "plait.executor"])
def test_no_layer_imports_the_top_level_package(layer):
    assert [m for m, deps in _in_layer(layer).items() if "plait" in deps] == []


def test_importing_the_pure_layers_loads_no_zmq():
    code = ("import sys, plait.compiler, plait.graph, plait.store.serialization; "
            "assert 'zmq' not in sys.modules, sorted(m for m in sys.modules if 'zmq' in m)")
    done = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
