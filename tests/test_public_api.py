"""``plait.__all__`` is the one list of public names: sorted, complete, and nothing more."""

from __future__ import annotations

import inspect

import plait

RAY_CORE = {"init", "shutdown", "is_initialized", "put", "get", "wait", "remote", "exceptions"}


def _exported() -> set[str]:
    """Public names the package namespace holds: no underscores, no modules but the five
    Ray programs reach through it (ray.exceptions, ray.actor, ray.util, ray.cluster_utils
    and ray.cloudpickle)."""
    return {name for name, value in vars(plait).items() if not name.startswith("_")
            and (not inspect.ismodule(value) or name in ("exceptions", "actor", "util",
                                                     "cluster_utils", "cloudpickle"))}


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
