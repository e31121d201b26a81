"""Resources beside CPU slots on one node: the ledger (pure), and the node's dispatch of
tasks that hold them (GPU, custom), of GPU tasks apart from others, and of max_calls."""

from __future__ import annotations

from plait.executor.node.resources import Ledger
from plait.executor.wire import protocol as p
from plait.executor.wire.instructions import Dispatch, FromHead, FromWorker
from tests.executor.node.decisions import sent, started, tell, to_head


def spec(task_id: str, **fields) -> p.TaskSpec:
    return p.TaskSpec(task_id, "f@1", "f", b"", (), (), (task_id,), 3, "node-0", **fields)


def done(task_id: str) -> p.TasksDone:
    return p.TasksDone((p.TaskResult(task_id, 0, ((task_id, p.Inline(b"v")),), 0.01),))


def running(node) -> dict[bytes, list[str]]:
    return {w.identity: list(w.inflight) for w in node.workers.values() if w.inflight}


def test_fractions_taken_and_given_back_leave_exactly_what_there_was():
    ledger = Ledger((("disk", 1.0),))
    for holder in "abc":
        assert ledger.take(holder, (("disk", 1 / 3),))
    assert not ledger.take("d", (("disk", 0.1),))       # 0.0001 left: not 0.1
    for holder in "abc":
        ledger.give_back(holder)
    assert ledger.free == ledger.total


def test_whole_gpus_are_unused_ones_and_fractions_share_the_first_with_room():
    ledger = Ledger((("GPU", 2.0),))
    assert ledger.take("half", (("GPU", 0.5),))
    assert ledger.assigned("half") == ((("GPU", 0.5),), (0,))
    assert not ledger.take("two", (("GPU", 2),))         # GPU 0 is partly used
    assert ledger.take("one", (("GPU", 1),))
    assert ledger.assigned("one")[1] == (1,)
    assert ledger.take("other half", (("GPU", 0.5),))
    assert ledger.assigned("other half")[1] == (0,)
    assert not ledger.fits((("GPU", 0.5),))


def test_a_task_waits_aside_for_its_resources_while_others_run(node):
    node.ledger = Ledger((("custom", 1.0),))
    node.functions["f@1"] = b""
    asks = (("custom", 1.0),)
    tell(node, FromHead(p.Assign((), (spec("a", resources=asks), spec("b", resources=asks),
                                      spec("plain")))))
    tell(node, Dispatch())
    assert running(node) == {b"w0": ["a"], b"w1": ["plain"]}
    assert node.resource_waiting == ["b"]
    item = next(m for _, m in sent(node) if isinstance(m, p.RunTasks)).items[0]
    assert item.resources == asks
    tell(node, FromWorker(b"w0", done("a")))
    tell(node, Dispatch())
    assert running(node) == {b"w0": ["b"], b"w1": ["plain"]}


def test_a_gpu_task_never_runs_in_a_process_that_ran_other_tasks(node):
    node.ledger = Ledger((("GPU", 1.0),))
    node.functions["f@1"] = b""
    for worker in node.workers.values():
        worker.functions.add("f@1")                    # both ran CPU tasks already
    tell(node, FromHead(p.Assign((), (spec("gpu", resources=(("GPU", 1.0),)),))))
    tell(node, Dispatch())
    assert running(node) == {}                         # a fresh process is started for it
    assert len(started(node)) == 1
    assert sum(w.retiring for w in node.workers.values()) == 1
    assert (b"w1", p.Bye()) in sent(node)


def test_a_worker_leaves_after_max_calls_of_a_function_and_is_replaced_at_once(node):
    node.functions["f@1"] = b""
    tell(node, FromHead(p.Assign((), (spec("once", max_calls=1),))))
    tell(node, Dispatch())
    worker = next(w for w in node.workers.values() if w.inflight)
    assert worker.retiring and len(started(node)) == 1  # takes nothing more from now
    assert (worker.identity, p.Bye()) not in sent(node)
    tell(node, FromWorker(worker.identity, done("once")))
    assert (worker.identity, p.Bye()) in sent(node)     # its call ran: it leaves


def test_an_idle_gpu_worker_makes_way_for_a_cpu_worker_when_cpu_tasks_wait(node):
    node.functions["f@1"] = b""
    node.workers[b"w0"].gpu = True
    node.workers[b"w1"].inflight["busy"] = 0
    tell(node, FromHead(p.Assign((), (spec("plain"),))))
    tell(node, Dispatch())
    assert node.workers[b"w0"].retiring and (b"w0", p.Bye()) in sent(node)
    assert len(started(node)) == 1 and "plain" not in node.workers[b"w0"].inflight


def test_a_task_asking_for_what_its_node_never_has_fails_naming_it(node):
    """Only a task moved here from a lost node can be (the compiler placed it elsewhere)."""
    node.functions["f@1"] = b""
    tell(node, FromHead(p.Assign((), (spec("gpu", resources=(("GPU", 1.0),)),))))
    tell(node, Dispatch())
    failed = [v for m in to_head(node) if isinstance(m, p.TasksDone)
              for r in m.results for _, v in r.outputs]
    assert len(failed) == 1 and b"does not offer" in failed[0].error


def test_tasks_of_no_cpu_get_workers_of_their_own_kept_while_more_wait(node):
    """Ray runs a task of num_cpus=0 whatever the CPUs: the node adds a worker when none is
    idle. One that finishes while others wait to start does not send the added workers
    away, and a task of one CPU still waits for a CPU, idle workers or not."""
    from plait.executor.node.workers import WorkerHandle
    from plait.executor.wire.instructions import WorkerStarted

    node.functions["f@1"] = b""
    zeros = tuple(spec(f"z{i}", slots=0) for i in range(4))
    tell(node, FromHead(p.Assign((), zeros + (spec("one"), spec("two"), spec("three")))))
    tell(node, Dispatch())
    assert running(node) == {b"w0": ["z0"], b"w1": ["z1"]}
    (asked,) = started(node)                       # no worker idle: one more, one at a time
    tell(node, WorkerStarted(WorkerHandle(asked.index, -2, -2, b"w2", ready=True), True, ""))
    tell(node, Dispatch())
    assert running(node)[b"w2"] == ["z2"]
    first, asked = started(node)
    tell(node, FromWorker(b"w2", done("z2")))       # z3 and three tasks of a CPU wait
    tell(node, WorkerStarted(WorkerHandle(asked.index, -3, -3, b"w3", ready=True), True, ""))
    tell(node, Dispatch())
    assert not any(w.parked_since for w in node.workers.values())   # none sent away
    assert running(node) == {b"w0": ["z0"], b"w1": ["z1"], b"w2": ["z3"], b"w3": ["one"]}
    *_, asked = started(node)                      # "two": a CPU is free, no worker idle
    tell(node, WorkerStarted(WorkerHandle(asked.index, -4, -4, b"w4", ready=True), True, ""))
    tell(node, Dispatch())
    assert running(node)[b"w4"] == ["two"]
    tell(node, FromWorker(b"w0", done("z0")))
    tell(node, Dispatch())
    assert "three" not in [t for ts in running(node).values() for t in ts]   # 2 CPUs taken
    assert len(started(node)) == 3
