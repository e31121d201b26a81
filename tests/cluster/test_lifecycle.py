"""Starting and stopping: implicit init, shutdown and interpreter exit leave nothing behind."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

import plait
from plait.executor.wire.config import NODE_MAIN, ipc_addresses
from tests.conftest import assert_nothing_leaked

pytestmark = pytest.mark.cluster


def test_first_put_starts_the_cluster_and_shutdown_cleans_up(fresh):
    assert not plait.is_initialized()
    assert plait.get(plait.put([1, 2])) == [1, 2]
    assert plait.is_initialized()
    (node,) = plait.nodes()
    assert node.id == "node-0" and node.is_head and node.workers >= 1
    plait.shutdown()
    assert not plait.is_initialized()
    assert_nothing_leaked()


@plait.remote
def start_a_process(how):
    """A process a task leaves running: a subprocess, or a fork of its worker."""
    import time

    if how == "subprocess":
        return subprocess.Popen(["sleep", "300"], stdout=subprocess.DEVNULL).pid
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        time.sleep(300)
        os._exit(0)
    return pid


def test_processes_tasks_left_running_go_with_shutdown(fresh):
    """They outlived plait.shutdown() (and plait stop); Ray kills a worker's children."""
    from tests.cluster.gates import wait_exit

    plait.init(num_workers=1)
    pids = plait.get([start_a_process.remote("subprocess"), start_a_process.remote("fork")],
                     timeout=30)
    assert all(os.path.exists(f"/proc/{pid}") for pid in pids)
    plait.shutdown()
    assert all(wait_exit(pid, timeout=10) for pid in pids)


def test_a_node_starting_as_its_cluster_shuts_down_stops_quietly_leaving_nothing(fresh):
    """A node that joins a driver's cluster (cluster_utils' add_node, a soak's replacement)
    may still be starting when the driver shuts the cluster down and the head removes the
    run dir where the node's sockets go. It says so in one line and stops, its arena and
    worker with it (the chaos soak printed a ZMQError traceback from such a node)."""
    plait.init(num_workers=1)
    cluster = plait.api._session.cluster
    template = cluster.configs[0]
    config = dataclasses.replace(template, node="node-7", head_address=template.client_address,
                                 **ipc_addresses(template.run_dir, "node-7"))
    plait.shutdown()
    assert not pathlib.Path(config.run_dir).exists()
    late = subprocess.run([sys.executable, "-m", NODE_MAIN,
                           json.dumps(dataclasses.asdict(config))],
                          capture_output=True, text=True, timeout=60)
    assert late.returncode == 0, late.stderr
    assert "Traceback" not in late.stderr
    assert f"node-7: the cluster's run directory {config.run_dir} is gone" in late.stderr
    assert_nothing_leaked()


def test_init_twice_is_an_error_unless_ignored(fresh):
    plait.init(num_workers=1)
    with pytest.raises(plait.ClusterError, match="twice"):
        plait.init(num_workers=1)
    plait.init(ignore_reinit_error=True)
    assert plait.nodes()[0].workers == 1


def test_init_returns_the_clusters_shape_for_a_terminal_and_a_notebook(fresh):
    """As Ray's RayContext: shown in a terminal and a notebook; a with-block shuts down."""
    with plait.init(num_workers=1, store_memory="64MiB") as info:
        assert repr(info).splitlines()[0] == (f"plait cluster {info.session}: 1 node(s), 1 "
                                              f"worker(s), 64.0 MiB of store")
        assert info.dashboard_url is None and "dashboard" not in repr(info)
        assert "<td>node-0 (head)</td><td>1</td><td>64.0 MiB</td>" in info._repr_html_()
        assert plait.init(ignore_reinit_error=True).session == info.session
    assert not plait.is_initialized()


def test_init_rejects_bad_arguments(fresh):
    with pytest.raises(ValueError):
        plait.init(num_workers=0)
    with pytest.raises(TypeError, match="bogus"):
        plait.init(bogus=1)


@plait.remote
def environment(*names):
    import os

    return [os.environ.get(name) for name in names]


@plait.remote
class Environment:
    def read(self, name):
        import os

        return os.environ.get(name)


def test_runtime_env_vars_reach_every_worker_and_not_the_driver(fresh, monkeypatch):
    monkeypatch.delenv("PLAIT_TEST_VAR", raising=False)
    plait.init(num_workers=1, num_nodes=2, runtime_env={
        "env_vars": {"PLAIT_TEST_VAR": "set", "OMP_NUM_THREADS": "3"}, "working_dir": "."})
    calls = [environment.options(node=node).remote("PLAIT_TEST_VAR", "OMP_NUM_THREADS")
             for node in ("node-0", "node-1")]
    assert plait.get(calls, timeout=30) == [["set", "3"], ["set", "3"]]
    assert plait.get(Environment.remote().read.remote("PLAIT_TEST_VAR"), timeout=30) == "set"
    assert "PLAIT_TEST_VAR" not in os.environ


def test_a_tasks_and_an_actors_runtime_env_vars_are_theirs_alone(fresh, monkeypatch):
    monkeypatch.delenv("PLAIT_TEST_VAR", raising=False)
    plait.init(num_workers=1)                       # one worker: the same process each time
    reading = ("PLAIT_TEST_VAR",)
    with_var = environment.options(runtime_env={"env_vars": {"PLAIT_TEST_VAR": "task"}})
    assert plait.get([environment.remote(*reading), with_var.remote(*reading),
                      environment.remote(*reading)], timeout=30) == [[None], ["task"], [None]]
    actor = Environment.options(runtime_env={"env_vars": {"PLAIT_TEST_VAR": "actor"}}).remote()
    assert plait.get([actor.read.remote("PLAIT_TEST_VAR")] * 2, timeout=30) == ["actor"] * 2
    assert plait.get(environment.remote(*reading), timeout=30) == [None]


def test_address_local_starts_a_cluster_of_its_own(fresh):
    from plait.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        plait.init(address="local", num_workers=1)        # not the cluster of 2 nodes here
        assert [node.id for node in plait.nodes()] == ["node-0"]
        plait.shutdown()
    finally:
        cluster.shutdown()


def test_refs_from_a_finished_session_are_lost_not_stale(fresh):
    ref = plait.put(b"x" * 1000)
    plait.shutdown()
    with pytest.raises(plait.ObjectLostError):
        plait.get(ref)


def run_script(body: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(body)], capture_output=True,
                          text=True, timeout=120)


def test_interpreter_exit_without_shutdown_leaves_nothing():
    result = run_script("""
        import os, numpy as np, plait
        ref = plait.put(np.ones(1 << 20))
        print(plait.nodes()[0].pid, plait.nodes()[0].arena, flush=True)
    """)
    assert result.returncode == 0, result.stderr
    pid, arena = result.stdout.split()
    assert not _alive(int(pid))
    assert not (pathlib.Path("/dev/shm") / arena).exists()


def test_a_driver_that_only_gets_small_results_never_loads_numpy():
    """Only a view of a stored object needs numpy (reading.py): a script without numpy pays
    no numpy import for its first get."""
    result = run_script("""
        import sys, plait
        plait.init(num_workers=1)
        double = plait.remote(lambda x: 2 * x)
        assert plait.get(double.remote(21)) == 42
        assert plait.get(plait.put(b"small")) == b"small"
        plait.shutdown()
        assert "numpy" not in sys.modules, "numpy loaded"
    """)
    assert result.returncode == 0, result.stderr


def test_killed_driver_takes_its_cluster_down():
    result = run_script("""
        import os, signal, plait
        plait.put(1)
        node = plait.nodes()[0]
        print(node.pid, node.arena, node.address.removeprefix("ipc://"), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    pid, arena, socket = result.stdout.split()
    _wait_gone(int(pid))
    assert not (pathlib.Path("/dev/shm") / arena).exists()
    assert not pathlib.Path(socket).parent.exists()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    """The node notices its parent is gone within PARENT_CHECK_SECONDS; wait for that."""
    import os
    import select

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"node {pid} still running {timeout} s after its driver died"
    finally:
        os.close(fd)


@plait.remote
def append_line(path, text):
    with open(path, "a") as f:
        f.write(text + "\n")
    return text


def test_calls_made_before_shutdown_finish_before_the_cluster_stops(fresh, tmp_path):
    path = tmp_path / "at-exit"
    plait.init(num_workers=1)
    for word in ("a", "b"):
        append_line.remote(str(path), word)
    plait.shutdown()
    assert sorted(path.read_text().split()) == ["a", "b"]


def test_an_exception_class_defined_in_the_drivers_script_is_caught_by_its_type(fresh):
    result = run_script("""
        import plait

        class MyError(Exception):
            pass

        @plait.remote
        def fail():
            raise MyError("from the task")

        try:
            plait.get(fail.remote())
        except MyError as error:
            print("caught", isinstance(error, plait.TaskError), error.cause.args)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "caught True ('from the task',)"


def test_a_function_is_taken_as_it_was_at_its_first_call(fresh):
    result = run_script("""
        import plait

        setting = 3

        @plait.remote
        def read_setting():
            return setting

        ref = read_setting.remote()
        setting = 4                  # changed after the call, before it was submitted
        print(plait.get(ref), plait.get(read_setting.remote()))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3", "3"]       # as Ray: the function is exported once


def test_with_submit_after_idle_none_calls_wait_for_the_next_get(fresh, tmp_path):
    path = tmp_path / "ran"
    plait.init(num_workers=1, submit_after_idle=None)
    ref = append_line.remote(str(path), "once")
    plait.put(0)
    plait.compile(ref)                           # planning runs nothing
    assert "lazy" in repr(ref) and not path.exists()
    assert plait.get(ref) == "once"
    assert path.read_text().split() == ["once"]


def test_a_remote_traceback_names_the_users_file_and_lines(fresh, tmp_path):
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent("""
        import plait

        def helper(x):
            return 1 / x

        @plait.remote
        def task(x):
            return helper(x)

        try:
            plait.get(task.remote(0))
        except ZeroDivisionError as error:
            print(error.remote_traceback)
    """))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert f'File "{script}", line 9, in task' in result.stdout
    assert f'File "{script}", line 5, in helper' in result.stdout
    assert "return 1 / x" in result.stdout and "<dynamic-code>" not in result.stdout


def test_with_rays_auto_connect_off_a_call_before_init_fails_and_starts_nothing(fresh,
                                                                                monkeypatch):
    @plait.remote
    class Counter:
        def value(self) -> int:
            return 3

    monkeypatch.setenv("RAY_ENABLE_AUTO_CONNECT", "0")
    with pytest.raises(plait.NotInitializedError, match="RAY_ENABLE_AUTO_CONNECT=0"):
        Counter.remote()
    assert not plait.is_initialized()
    plait.init(num_workers=1)
    assert plait.get(Counter.remote().value.remote(), timeout=60) == 3


@plait.remote
def plus_one(x):
    return x + 1


@plait.remote
def first_of(values):
    return plait.get(values[0])


def test_a_task_cancelled_before_it_was_submitted_fails_its_readers_and_nothing_else(fresh):
    """Its readers fail with TaskCancelledError, as Ray's; the rest of the batch runs
    (before, the head knew nothing of its result, and the batch raised ObjectLostError)."""
    plait.init(num_workers=1, submit_after_idle=None)
    unrelated = plus_one.remote(100)
    a = plus_one.remote(0)
    b = plus_one.remote(a)
    c = plus_one.remote(b)
    plait.cancel(b)                              # nothing was submitted yet
    d = plus_one.remote(b)                       # made after the cancel
    nested = first_of.remote([b])
    assert plait.get(unrelated, timeout=30) == 101 and plait.get(a, timeout=30) == 1
    for reader in (b, c, d):
        with pytest.raises(plait.TaskCancelledError):
            plait.get(reader, timeout=30)
    with pytest.raises(plait.TaskCancelledError):        # its own get raises, in the task
        plait.get(nested, timeout=30)
