"""What drivers killed with their nodes leave on a host is removed by the next driver."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from plait.executor.driver.cluster import sweep_dead_sessions
from plait.store.arena import SHM_DIR


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_dead_drivers_arenas_and_dirs_go_and_a_live_ones_and_a_cli_clusters_stay():
    dead, live = f"{dead_pid():x}", f"{os.getpid():x}"
    tmp = tempfile.gettempdir()
    gone = [os.path.join(SHM_DIR, f"plait-{dead}-1-node-0"),
            os.path.join(SHM_DIR, f"plait-{dead}-c2-node-1"),
            os.path.join(tmp, f"plait-{dead}-1-node-0-spill")]
    kept = [os.path.join(SHM_DIR, f"plait-{live}-1-node-0"),
            os.path.join(SHM_DIR, f"plait-{dead}-c-node-0")]     # `plait start`'s: it lives on
    run_dir = tempfile.mkdtemp(prefix=f"plait-{dead}-1-")
    try:
        for path in gone[:2] + kept:
            open(path, "w").close()
        os.mkdir(gone[2])
        sweep_dead_sessions()
        assert [p for p in gone + [run_dir] if os.path.exists(p)] == []
        assert all(os.path.exists(p) for p in kept)
    finally:
        for path in kept + gone[:2]:
            if os.path.exists(path):
                os.unlink(path)
        for path in (gone[2], run_dir):
            if os.path.isdir(path):
                os.rmdir(path)
