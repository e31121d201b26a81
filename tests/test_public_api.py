"""``plait.__all__`` is the one list of public names: sorted, complete, and nothing more."""

from __future__ import annotations

import inspect

import plait

RAY_CORE = {"init", "shutdown", "is_initialized", "put", "get", "wait", "remote", "exceptions"}


def _exported() -> set[str]:
    """Public names the package namespace holds once every name is loaded (they load on
    first use): no underscores, no submodules but the three Ray programs reach through it
    (ray.exceptions, ray.actor, ray.util)."""
    for name in dir(plait):
        getattr(plait, name)
    return {name for name, value in vars(plait).items() if not name.startswith("_")
            and (not inspect.ismodule(value) or name in ("exceptions", "actor", "util"))}


def test_all_is_sorted_without_duplicates():
    assert plait.__all__ == sorted(plait.__all__)
    assert len(plait.__all__) == len(set(plait.__all__))


def test_every_name_in_all_exists():
    missing = [name for name in plait.__all__ if not hasattr(plait, name)]
    assert missing == []


def test_all_is_exactly_the_public_namespace():
    assert set(plait.__all__) == _exported()


def test_star_import_gives_all():
    namespace: dict[str, object] = {}
    exec("from plait import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(plait.__all__)


def test_ray_core_names_are_there_for_import_plait_as_ray():
    assert RAY_CORE <= set(plait.__all__)
    assert plait.remote(lambda: None).options(num_returns=1) is not None


def test_version_is_a_string():
    assert isinstance(plait.__version__, str) and plait.__version__.count(".") == 2


def test_object_id_is_rays_old_name_for_object_ref():
    assert plait.ObjectID is plait.ObjectRef


def test_names_load_on_first_use_so_a_node_imports_no_session_or_passes():
    """A node process imports ``plait.executor...``, which runs plait/__init__.py first: the
    public names load on first use, so the node's cold start pays for what it runs."""
    import subprocess
    import sys

    script = ("import sys, plait.executor.node.server, plait.executor.worker\n"
              "print(' '.join(sorted(m for m in sys.modules if m.startswith('plait'))))")
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, check=True).stdout.split()
    assert "plait.executor.node.server" in loaded
    assert [m for m in ("plait.api", "plait.executor.driver.session") if m in loaded] == []


def test_a_name_loaded_on_first_use_is_the_one_its_module_defines():
    assert plait.get is __import__("plait.api", fromlist=["get"]).get
    try:
        plait.no_such_name  # noqa: B018
    except AttributeError as error:
        assert "no_such_name" in str(error)
    else:
        raise AssertionError("plait.no_such_name should raise AttributeError")
