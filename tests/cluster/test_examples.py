"""The examples a user reads first run as they are (the seed tutorial under import plait as ray)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.cluster

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def test_object_store_tutorial_runs_unchanged():
    result = subprocess.run([sys.executable, str(EXAMPLES / "object_store.py")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "large_matrix has: 1.00 GB" in out
    assert "equal: True" in out and "same object: False" in out
    results = eval(out.split("same object: False\n")[1].splitlines()[0])
    assert len(results) == 10 and len(set(results)) == 1
