"""benchmarks/scale.py sim, small: the real head and 20 simulated nodes (issue 15).

The full envelope (10 to 1,000 nodes, 100k-task graphs) is a benchmark; this runs every
scenario of it at 20 nodes and 2,000 tasks, in a child process as a user would run it,
so that a change to the head or the protocol that breaks the simulator is seen in CI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import assert_nothing_leaked

pytestmark = pytest.mark.cluster

SCALE = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "scale.py")


def test_twenty_simulated_nodes_run_every_scenario_and_none_is_declared_dead(tmp_path):
    out = tmp_path / "sim.json"
    n = 2000
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), *sys.path]))
    subprocess.run([sys.executable, SCALE, "sim", "--nodes", "20", "--tasks", str(n),
                    "--graphs", str(n), "--gets", str(n), "--cancel", str(n), "--loss", str(n),
                    "--sizes", "8", "200000", "--json", str(out)],
                   check=True, timeout=240, env=env, stdout=subprocess.DEVNULL)
    (row,) = json.loads(out.read_text())
    assert row["nodes"] == 20 and row["throughput"]["tasks"] == n
    assert row["one_get"][0]["objects"] == n and row["cancel"]["tasks"] == n
    assert row["node_loss"]["tasks"] == n
    assert row["live_nodes_declared_dead"] == 0
    assert row["nodes_alive_at_end"] == 19                  # all but the one killed
    assert row["state_problems"] == []                      # validate_state, sims included
    assert_nothing_leaked()
