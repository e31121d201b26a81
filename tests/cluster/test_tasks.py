"""Remote functions on a real cluster: laziness, argument passing, options, results."""

from __future__ import annotations

import os
import select
import time

import numpy as np
import pytest

import plait
from tests.cluster.gates import wait_exit, wait_for_file

pytestmark = pytest.mark.cluster


@plait.remote
def inc(x):
    return x + 1


@plait.remote
def add(x, y):
    return x + y


@plait.remote
def total(array):
    return float(array.sum())


@plait.remote
def sum_nested(items):
    assert all(isinstance(item, plait.ObjectRef) for item in items)
    return sum(plait.get(items))


@plait.remote(num_returns=2)
def split(x):
    return x, -x


@plait.remote
def append_line(path, text):
    with open(path, "a") as f:
        f.write(text + "\n")
    return text


def lines(path) -> list[str]:
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def test_top_level_refs_arrive_as_values(cluster):
    a, b = plait.put(np.arange(10)), plait.put(np.arange(10))
    assert np.array_equal(plait.get(add.remote(a, b)), np.arange(10) * 2)


def test_nested_refs_arrive_as_refs_and_can_be_got(cluster):
    assert plait.get(sum_nested.remote([plait.put(2), inc.remote(3)])) == 6


@plait.remote
def write_to(path, data):
    with open(path, "wb") as f:          # a FIFO: blocks until the test reads it
        f.write(data)


def test_a_call_runs_without_a_get_once_the_driver_is_quiet(cluster, tmp_path):
    import os
    import select

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        write_to.remote(str(fifo), b"ran")        # never requested, and no get follows
        readable, _, _ = select.select([reader], [], [], 30)
        assert readable and os.read(reader, 3) == b"ran"
    finally:
        os.close(reader)


def test_a_call_whose_ref_was_dropped_runs_for_its_side_effects(cluster, tmp_path):
    path = tmp_path / "fire-and-forget"
    append_line.remote(str(path), "side effect")
    plait.wait([inc.remote(1)], timeout=30)
    plait.get(inc.remote(2))
    assert lines(path) == ["side effect"]


def test_a_result_is_computed_once(cluster, tmp_path):
    path = tmp_path / "count"
    ref = append_line.remote(str(path), "x")
    child = inc.remote(plait.put(1))
    assert plait.get(ref) == "x" and plait.get(ref) == "x"
    assert plait.compute(ref, child) == ("x", 2)
    assert lines(path) == ["x"]


def waiting_in(thread, function_name: str, seconds: float = 30) -> bool:
    """Whether ``thread`` is inside ``function_name`` within ``seconds`` (read off its
    stack: the test must know that the thread waits before it goes on)."""
    import sys

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        frame = sys._current_frames().get(thread.ident)
        while frame is not None:
            if frame.f_code.co_name == function_name:
                return True
            frame = frame.f_back
        time.sleep(0.005)
    return False


def test_a_get_in_one_thread_does_not_hold_up_another_threads_calls(cluster, tmp_path):
    """As in Ray, each thread's get waits for its own objects. plait's held the session's
    lock while it waited, so the other thread's put and get waited for the first get."""
    import threading

    gate = tmp_path / "go"
    held = wait_for_file.remote(str(gate))
    first = threading.Thread(target=plait.get, args=(held,), kwargs={"timeout": 60})
    second = threading.Thread(target=lambda: results.append(
        plait.get(add.remote(plait.put(1), 2), timeout=60)))
    results: list[int] = []
    first.start()
    try:
        assert waiting_in(first, "fetch")
        second.start()
        second.join(timeout=20)
        assert results == [3]                 # while the first get still waits
    finally:
        gate.touch()
        first.join(timeout=60)
        second.join(timeout=60)


def test_chains_and_fan_out(cluster):
    ref = plait.put(0)
    for _ in range(50):
        ref = inc.remote(ref)
    assert plait.get(ref) == 50
    assert plait.get([inc.remote(i) for i in range(500)]) == list(range(1, 501))


def test_large_arrays_as_arguments_and_results(cluster):
    big = np.arange(4 << 20, dtype=np.float64)          # 32 MiB: put implicitly
    assert plait.get(total.remote(big)) == float(big.sum())
    doubled = plait.get(add.remote(big, big))
    assert np.array_equal(doubled, big * 2) and not doubled.flags.writeable


def test_num_returns_and_options(cluster):
    x, y = split.remote(5)
    assert plait.get([x, y]) == [5, -5]
    a, b = split.options(num_returns=2, max_retries=0).remote(1)
    assert plait.get(b) == -1
    with pytest.raises(plait.InvalidOptionError, match="unknown option"):
        inc.options(retries=2)


def test_calling_a_remote_function_directly_is_a_type_error(cluster):
    with pytest.raises(TypeError, match=r"inc\.remote"):
        inc(1)


def test_put_takes_rays_owner_keyword(cluster):
    """An object lives while any ref to it does: Ray's ``_owner`` is taken, not needed."""
    assert plait.get(plait.put([1, 2], _owner=None), timeout=30) == [1, 2]


def test_wait_compute_persist(cluster):
    refs = [inc.remote(i) for i in range(4)]
    ready, pending = plait.wait(refs, num_returns=4, timeout=30)
    assert len(ready) == 4 and pending == []
    assert plait.compute(inc.remote(1), inc.remote(2)) == (2, 3)
    kept = plait.persist(inc.remote(10))            # a tuple, even of one (as dask.persist)
    assert isinstance(kept, tuple) and len(kept) == 1
    assert "ready" in repr(kept[0]) and kept[0].compute() == 11


@plait.remote
def count_of(*values):
    return len(values)


def test_a_wait_or_get_with_no_time_left_sees_what_is_done_already(cluster):
    """timeout=0 polls, as in Ray: tasks finished before it (here, known finished because
    a task reading them all has ended) are ready, never asked about before or not."""
    refs = [inc.remote(i) for i in range(4)]
    assert plait.get(count_of.remote(*refs), timeout=60) == 4       # all 4 are done
    ready, pending = plait.wait(refs, num_returns=4, timeout=0)
    assert len(ready) == 4 and pending == []
    again = [inc.remote(i) for i in range(10, 13)]
    assert plait.get(count_of.remote(*again), timeout=60) == 3
    assert plait.get(again[0], timeout=0) == 11
    assert sorted(plait.util.as_completed(again, timeout=0)) == [11, 12, 13]


def test_compile_and_explain_without_running(cluster, tmp_path):
    path = tmp_path / "never"
    ref = append_line.remote(str(path), "no")
    plan = plait.compile(inc.remote(ref))
    text = plan.explain()
    assert "append_line" in text and "inc" in text and "node-0" in text
    assert [s.node for s in plan.stages] == ["node-0"]
    assert lines(path) == []


def test_graph_built_in_one_call_runs_in_one_stage_message(cluster):
    refs = [inc.remote(i) for i in range(20)]
    plan = plait.compile(*refs)
    assert len(plan.stages) == 1 and len(plan.stages[0].task_ids) == 20


def test_visualize_shorthands_write_the_plan(cluster, tmp_path):
    ref = inc.remote(inc.remote(1))
    svg = ref.visualize()
    assert svg.startswith("<svg") or "<svg" in svg[:200]
    path = tmp_path / "plan.html"
    plait.visualize(ref, filename=str(path))
    assert "<svg" in path.read_text() and "inc" in path.read_text()


@plait.remote
def whereami():
    ctx = plait.get_runtime_context()
    return ctx.get_node_id(), ctx.get_worker_id(), ctx.get_task_id()


def test_runtime_context_names_node_worker_and_task(cluster):
    ref = whereami.remote()
    node, worker, task = plait.get(ref)
    assert node == "node-0" and worker.startswith("node-0.w") and task == ref.id
    driver = plait.get_runtime_context()
    assert driver.get_node_id() == "node-0" and driver.get_task_id() is None


def test_a_task_with_num_cpus_2_holds_both_worker_slots(cluster, tmp_path):
    gate = tmp_path / "go"
    wide = wait_for_file.options(num_cpus=2).remote(str(gate), "wide")
    narrow = inc.remote(1)
    ready, _ = plait.wait([wide, narrow], num_returns=1, timeout=1.0)
    assert ready == []                  # the 2-CPU task holds both slots of this node
    gate.touch()
    assert plait.get([wide, narrow], timeout=30) == ["wide", 2]


def test_resources_no_node_has_are_refused_at_compile(cluster):
    with pytest.raises(plait.PlanError, match="worker slots"):
        plait.get(inc.options(num_cpus=3).remote(1), timeout=30)
    with pytest.raises(plait.PlanError, match="GPU"):
        plait.get(inc.options(num_gpus=1).remote(1), timeout=30)



def test_a_cancelled_call_raises_cancelled_while_other_calls_are_pending(cluster):
    inc.remote(1)
    ref = inc.remote(2)
    plait.cancel(ref)
    with pytest.raises(plait.TaskCancelledError):
        plait.get(ref, timeout=30)


@plait.remote
def count(items):
    return len(items)


@plait.remote
def hand_on(gate):
    """Start a child that waits for ``gate`` and return its ref without waiting for it."""
    return [wait_for_file.remote(gate, "child")]


def test_a_task_starts_while_refs_nested_in_its_arguments_are_pending(cluster, tmp_path):
    gate = tmp_path / "go"
    assert plait.get(count.remote([wait_for_file.remote(str(gate))]), timeout=30) == 1
    gate.touch()


@plait.remote
def hand_back_children(n):
    """Submit children and return their refs, not their values: the result holds them."""
    return [inc.remote(i) for i in range(n)]


def test_refs_a_task_hands_back_outlive_the_tasks_own_refs_to_them(cluster):
    """The task's session frees its refs as it ends, while its result (which holds them
    too) still travels through the node: the head waits for that result before letting
    go (Free.after), every time."""
    for _ in range(10):
        refs = plait.get(hand_back_children.remote(3), timeout=30)
        assert plait.get(refs, timeout=30) == [1, 2, 3]


def test_cancelling_a_blocked_child_a_task_handed_back_fails_its_get_at_once(cluster, tmp_path):
    gate = tmp_path / "go"
    (child,) = plait.get(hand_on.remote(str(gate)), timeout=30)
    with pytest.raises(plait.GetTimeoutError):
        plait.get(child, timeout=0.2)
    plait.cancel(child)
    started = time.monotonic()
    with pytest.raises(plait.TaskCancelledError):
        plait.get(child, timeout=10)
    assert time.monotonic() - started < 5


@plait.remote
def report_pid_and_wait(fifo):
    """Write this process's pid into ``fifo``, then wait (30 s at most) to be killed."""
    with open(fifo, "w") as f:
        f.write(str(os.getpid()))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.01)


@plait.remote
def wait_on_a_child(fifo):
    return plait.get(report_pid_and_wait.remote(fifo))


def test_a_forced_cancel_of_a_task_kills_the_workers_of_the_tasks_it_submitted(cluster,
                                                                             tmp_path):
    """force=True: the workers go (without force the children are interrupted instead:
    test_ray_semantics)."""
    fifo = tmp_path / "pid"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        parent = wait_on_a_child.remote(str(fifo))
        assert select.select([reader], [], [], 30)[0], "the child never started"
        child_pid = int(os.read(reader, 32))
    finally:
        os.close(reader)
    plait.cancel(parent, force=True)
    with pytest.raises(plait.TaskCancelledError):
        plait.get(parent, timeout=10)
    assert wait_exit(child_pid, timeout=10)       # its worker was killed with it


def test_a_quick_result_is_not_held_back_by_a_long_batch_mate(fresh, tmp_path):
    plait.init(num_workers=1)
    gate, open_gate = tmp_path / "go", tmp_path / "open"
    open_gate.touch()
    quick, long, *rest = [wait_for_file.remote(str(path), i) for i, path in
                          enumerate([open_gate, gate, open_gate, open_gate])]
    assert plait.get(quick, timeout=10) == 0      # sent in one message with ``long``
    gate.touch()
    assert plait.get([long, *rest], timeout=30) == [1, 2, 3]


def test_a_call_no_node_can_run_waits_alone_and_its_readers_raise_at_get(cluster):
    bad = inc.options(num_gpus=1).remote(1)
    reader = inc.remote(bad)
    assert plait.get(inc.remote(41), timeout=30) == 42       # the rest still runs
    for ref in (bad, reader):
        with pytest.raises(plait.PlanError, match="GPU") as caught:
            plait.get(ref, timeout=30)
        assert caught.value.task_id == bad.task.id


@plait.remote(num_returns="streaming")
def chunks(n):
    for i in range(n):
        yield np.full(i * 65536, i)        # 0, 512 KiB, 1 MiB: stored, not inline


@plait.remote(num_returns="dynamic")
def squares(n):
    for i in range(n):
        yield i * i


def test_generator_tasks_yield_one_object_per_value(cluster):
    generator = chunks.remote(3)
    assert isinstance(generator, plait.ObjectRefGenerator)
    arrays = [plait.get(ref, timeout=30) for ref in generator]
    assert [a.size for a in arrays] == [0, 65536, 131072] and arrays[2][0] == 2
    assert [plait.get(ref, timeout=30) for ref in plait.get(squares.remote(4))] == [0, 1, 4, 9]


# -- the node's store, shared by its workers (last: it starts its own cluster) ------------

def shm_location(array: np.ndarray) -> tuple[str, int]:
    """The file mapped where ``array``'s bytes lie, and their offset in it, read from this
    process's /proc/self/maps: two processes that name the same pair read one block."""
    address = array.__array_interface__["data"][0]
    with open("/proc/self/maps") as maps:
        for line in maps:
            span, _, file_offset, _, _, *path = line.split(maxsplit=5)
            start, end = (int(bound, 16) for bound in span.split("-"))
            if start <= address < end:
                return "".join(path).strip(), address - start + int(file_offset, 16)
    raise AssertionError(f"{address:#x} is in no mapping of process {os.getpid()}")


@plait.remote
def locate(array, gate):
    """Where this worker reads ``array``, once another worker has it too (so the two calls
    run at once in two processes; TimeoutError after 30 s rather than a hang)."""
    open(os.path.join(gate, str(os.getpid())), "w").close()
    deadline = time.monotonic() + 30
    while len(os.listdir(gate)) < 2:
        if time.monotonic() > deadline:
            raise TimeoutError("no other worker ran a locate call beside this one")
        time.sleep(0.005)
    return os.getpid(), shm_location(array), array.flags.writeable


def test_worker_processes_share_the_node_store(fresh, tmp_path):
    """Two workers of one node, running at once, read a put array at the same offset of
    the node's one /dev/shm/plait-* segment, where the driver's get reads it too, and
    read-only: mapped, not copied. (A cluster of its own: calls other tests left unrun
    would be submitted with these, and a batch of them could take both to one worker.)"""
    plait.init(num_workers=2)
    ref = plait.put(np.arange(1 << 17, dtype=np.float64))        # 1 MiB: stored, not inline
    (pid_a, at_a, writable_a), (pid_b, at_b, writable_b) = plait.get(
        [locate.remote(ref, str(tmp_path)) for _ in range(2)])
    assert len({pid_a, pid_b, os.getpid()}) == 3
    assert at_a == at_b == shm_location(plait.get(ref))
    assert at_a[0].startswith("/dev/shm/plait-") and not writable_a and not writable_b


@plait.remote
def leave_tuples():
    """Tuples of each length CPython keeps freed ones of (1 to 19), made and dropped as a
    worker's messages make them; the Python blocks allocated after."""
    import sys

    made = [tuple(range(n % 19 + 1)) for n in range(19_000)]
    del made
    return sys.getallocatedblocks()


@plait.remote
def allocated_blocks(_=None):
    import sys

    return sys.getallocatedblocks()


def test_a_worker_gives_back_the_tuples_its_tasks_dropped(fresh):
    """CPython keeps them on its free lists until a full collection, which a worker (its
    imports frozen by its node) seldom has: its memory rose with them over a long run
    (issue 11). It sweeps them every SWEEP_EVERY_TASKS tasks (wire/freelists.py)."""
    from plait.executor.wire.freelists import SWEEP_EVERY_TASKS

    plait.init(num_workers=1)
    held = plait.get(leave_tuples.remote())
    plait.get([allocated_blocks.remote(i) for i in range(SWEEP_EVERY_TASKS)])
    assert plait.get(allocated_blocks.remote()) < held - 15_000


@plait.remote
def meet(folder, name, count):
    """Arrive in ``folder`` and wait there until ``count`` tasks have: only tasks that run
    at once all return (TimeoutError after 20 s, so a test never hangs)."""
    open(os.path.join(folder, name), "w").close()
    deadline = time.monotonic() + 20
    while len(os.listdir(folder)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(os.listdir(folder))} of {count} met")
        time.sleep(0.005)
    return plait.get_runtime_context().get_assigned_resources()


def test_tasks_that_ask_for_no_cpu_run_beside_the_tasks_that_hold_them(cluster, tmp_path):
    zero = [meet.options(num_cpus=0).remote(str(tmp_path), f"z{i}", 5) for i in range(3)]
    whole = [meet.remote(str(tmp_path), f"w{i}", 5) for i in range(2)]
    assert plait.get(zero, timeout=60) == [{}] * 3      # as Ray: no CPU assigned
    assert plait.get(whole, timeout=60) == [{"CPU": 1.0}] * 2


def test_tasks_that_ask_for_half_a_cpu_run_two_to_a_cpu_and_no_more(cluster, tmp_path):
    halves = [meet.options(num_cpus=0.5).remote(str(tmp_path), f"h{i}", 4) for i in range(4)]
    assert plait.get(halves, timeout=60) == [{"CPU": 0.5}] * 4
    gate = tmp_path / "gate"
    os.mkdir(gate)
    first = [wait_for_file.options(num_cpus=0.5).remote(str(gate / "go"), i) for i in range(4)]
    fifth = inc.options(num_cpus=0.5).remote(1)
    ready, _ = plait.wait([fifth], timeout=1.0)
    assert ready == []                 # the two CPUs are taken by the four halves
    (gate / "go").touch()
    assert plait.get([*first, fifth], timeout=60) == [0, 1, 2, 3, 2]


def test_a_task_of_one_and_a_half_cpus_leaves_half_of_one_to_others(cluster, tmp_path):
    wide = meet.options(num_cpus=1.5).remote(str(tmp_path), "wide", 2)
    narrow = meet.options(num_cpus=0.5).remote(str(tmp_path), "narrow", 2)
    assert plait.get([wide, narrow], timeout=60) == [{"CPU": 1.5}, {"CPU": 0.5}]


@plait.remote
def quick(i):
    return i


def test_tasks_sent_behind_a_long_one_run_on_a_free_worker_meanwhile(cluster, tmp_path):
    """Sent together, some short tasks are queued behind the long one on its worker (in
    its batch, or in a batch sent behind it); that worker hands them back, and the free
    worker runs them while the long one still runs, as Ray queues nothing behind a running
    task (before, they waited for it)."""
    for round_ in range(3):                   # batches fall differently each time
        gate = str(tmp_path / f"go-{round_}")
        long = wait_for_file.remote(gate)
        short = [quick.remote(i) for i in range(10)]
        try:
            assert plait.get(short, timeout=20) == list(range(10))  # the long one runs on
        finally:
            open(gate, "w").close()
        assert plait.get(long, timeout=30) == "done"
