"""What runs inside an engine's worker, tested without an engine."""

from __future__ import annotations

import pickle

import cloudpickle
import pytest

from plait.engines.task import Function, report, run_call
from plait.errors import TaskError
from plait.graph.task import NO_ARGUMENTS, ArgRef


def function(body) -> Function:
    """(Workers cache a function by its id: one id per body here.)"""
    return Function(f"{body.__name__}@{id(body):x}", cloudpickle.dumps(body), body.__name__)


def test_a_call_runs_with_its_inputs_where_its_argrefs_stand_and_says_how_it_ran():
    payload = pickle.dumps(((ArgRef(0), 10), {"c": ArgRef(1)}))
    results, ran = run_call(None, "engine-node-7", function(lambda a, b, c: (a + b, c)),
                            "f-1", "node-2", payload, 2, (1, b"xyz"), {})
    assert results == [11, b"xyz"]
    node, pid, start, end, sizes = ran
    assert (node, start <= end, sizes[1]) == ("engine-node-7", True, 3)
    assert report("f-1", "f", ("f-1.0", "f-1.1"), ("put-1", "put-2"), ran)["inputs"] == \
        [("put-1", sizes[0]), ("put-2", 3)]


def test_a_call_without_arguments_is_the_empty_payload():
    assert run_call(None, "n", function(lambda: 42), "f-1", "node-0", NO_ARGUMENTS, 1, (),
                    {})[0] == [42]


def test_a_failure_names_its_task_and_node_and_is_the_users_type():
    def fails():
        raise KeyError("no key")

    with pytest.raises(TaskError) as raised:
        run_call(None, "n", function(fails), "fails-3", "node-1", NO_ARGUMENTS, 1, (), {})
    error = raised.value
    assert isinstance(error, KeyError)
    assert (error.function_name, error.task_id, error.node) == ("fails", "fails-3", "node-1")
    assert "no key" in error.remote_traceback
