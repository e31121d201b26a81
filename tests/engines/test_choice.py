"""Choosing an engine: Ray and Dask are imported only when chosen, and a wrong choice is
refused at init by name (no cluster is started)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import plait


def test_import_plait_loads_neither_engine():
    code = ("import sys, plait, plait.api, plait.executor.driver.session\n"
            "print(sorted({'ray', 'dask', 'distributed'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_an_unknown_engine_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown engine 'spark'"):
        plait.init(engine="spark")
    assert not plait.is_initialized()


def test_ray_takes_its_nodes_from_ray():
    with pytest.raises(ValueError, match="num_nodes"):
        plait.init(engine="ray", num_nodes=3)
    assert not plait.is_initialized()


def test_every_name_of_rays_exceptions_is_in_plait_exceptions_with_rays_bases():
    """``except ray.exceptions.X`` stays valid under ``import plait as ray`` for every X."""
    exceptions = pytest.importorskip("ray.exceptions")
    import plait.exceptions as ours

    for name in dir(exceptions):
        theirs = getattr(exceptions, name)
        if not (isinstance(theirs, type) and issubclass(theirs, BaseException)):
            continue
        mine = getattr(ours, name, None)
        assert isinstance(mine, type) and issubclass(mine, plait.PlaitError), name
        for builtin in (ValueError, TypeError, TimeoutError, AssertionError, MemoryError):
            if issubclass(theirs, builtin):
                assert issubclass(mine, builtin), (name, builtin)
