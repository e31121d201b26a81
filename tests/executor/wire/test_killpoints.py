"""PLAIT_KILL_AT parsing and matching; real kills happen in a child interpreter."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from plait.executor.wire import killpoints
from plait.executor.wire.killpoints import Killer, KillPointError, KillSpec, parse


def test_parse_reads_points_labels_and_counts():
    assert parse("task-after-compute:3,mid-transfer@node-2") == (
        KillSpec("task-after-compute", None, 3), KillSpec("mid-transfer", "node-2", 1))
    assert parse("") == ()


@pytest.mark.parametrize("text", ["no-such-point", "mid-spill:0", "task-before-start@f:0"])
def test_parse_rejects_unknown_points_and_bad_counts(text):
    with pytest.raises(KillPointError):
        parse(text)


def test_unset_variable_costs_one_empty_call():
    if "PLAIT_KILL_AT" not in os.environ:
        assert killpoints.reached is killpoints._ignore
        assert killpoints.hook("mid-spill", "node-0") is None


def run_child(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


CALLS = ("from plait.executor.wire import killpoints as k\n"
         "for label in ['f', 'g', 'f', 'f']:\n"
         "    k.reached('task-before-start', label)\n"
         "    print(label, flush=True)\n")


def test_the_nth_matching_call_kills_the_process():
    done = run_child(CALLS, PLAIT_KILL_AT="task-before-start@f:2")
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split() == ["f", "g"]


def test_only_one_process_claims_a_once_kill(tmp_path):
    marker = tmp_path / "killed"
    env = {"PLAIT_KILL_AT": "task-before-start@g", "PLAIT_KILL_ONCE": str(marker)}
    assert run_child(CALLS, **env).returncode == -signal.SIGKILL
    assert marker.read_text().split()[0] == "task-before-start"
    again = run_child(CALLS, **env)
    assert again.returncode == 0 and again.stdout.split() == ["f", "g", "f", "f"]


def test_the_spill_hook_passes_the_object_as_a_label(tmp_path):
    killer = Killer(parse("mid-spill@obj-1"), str(tmp_path / "once"))
    (tmp_path / "once").touch()              # already claimed: matching must not kill us
    killer.reached("mid-spill", "node-0", "obj-1")
    assert killer.seen[KillSpec("mid-spill", "obj-1")] == 1
