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


EXPECTED = {
    "actors.py": ["balances after each call: [110, 80, 85]",
                  "refused: a withdrawal larger than the balance",
                  "after salaries: 185",
                  "history: [('deposit', 10), ('withdraw', 30), ('deposit', 5), "
                  "('deposit', 50), ('deposit', 50)]",
                  "balance: 185",
                  "after kill: the actor is dead"],
    "tree_of_tasks.py": ["sorted: True", "same values: True"],
    "pipelining.py": ["squares: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81, 100, 121]",
                      "sum of squares below 20: 2470"],
    "fault_tolerance.py": ["crashed workers, retried: [0, 10, 20]",
                           "retried on ConnectionError: [1, 2, 3]",
                           "no retries left: WorkerCrashedError",
                           "actor restarted, call retried: 1"],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_ray_pattern_examples_print_what_ray_prints(name):
    result = subprocess.run([sys.executable, str(EXAMPLES / name)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == EXPECTED[name]


def test_the_plan_example_explains_draws_and_traces_its_graph(tmp_path):
    result = subprocess.run([sys.executable, str(EXAMPLES / "plans.py"), str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    runs = [line for line in result.stdout.splitlines() if line.startswith("run ")]
    assert len(runs) == 2 and all(r.endswith("result matches numpy: True") for r in runs)
    assert "predicted 0 MiB" in runs[0] and "predicted 0 MiB" not in runs[1]   # sizes learned
    assert "why" in result.stdout and "pinned by node= option" in result.stdout
    assert {p.name for p in tmp_path.iterdir()} == {"plan.html", "plan.svg", "trace.json"}
