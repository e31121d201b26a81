"""Ray's semantics where a running cluster is needed: per-method retries, cancel's keywords,
the runtime context, an actor ending itself, class attributes inside methods, ActorPool."""

from __future__ import annotations

import pytest

import plait

pytestmark = pytest.mark.cluster


# -- @plait.method(max_task_retries=..., retry_exceptions=...) ------------------------------

@plait.remote
class Flaky:
    def __init__(self):
        self.calls = 0
        self.log = []

    @plait.method(max_task_retries=2, retry_exceptions=[ConnectionError])
    def connect(self, failures):
        """Fails ``failures`` times in a row (counted over the actor's life), then answers."""
        self.calls += 1
        self.log.append("connect")
        if self.calls <= failures:
            raise ConnectionError(f"attempt {self.calls} refused")
        return self.calls

    @plait.method(max_task_retries=5, retry_exceptions=[ConnectionError])
    def parse(self):
        self.calls += 1
        raise ValueError("not retried: not a ConnectionError")

    def note(self, word):
        self.log.append(word)
        return word

    def history(self):
        return self.calls, list(self.log)


def test_a_method_retried_on_the_exceptions_it_names_up_to_max_task_retries(cluster):
    assert plait.get(Flaky.remote().connect.remote(2), timeout=30) == 3
    with pytest.raises(ConnectionError, match="attempt 3 refused"):
        plait.get(Flaky.remote().connect.remote(3), timeout=30)


def test_other_exceptions_and_options_overrides_are_not_retried(cluster):
    flaky = Flaky.remote()
    with pytest.raises(ValueError):
        plait.get(flaky.parse.remote(), timeout=30)
    assert plait.get(flaky.history.remote(), timeout=30)[0] == 1
    with pytest.raises(ConnectionError):
        plait.get(flaky.connect.options(max_task_retries=0).remote(5), timeout=30)
    assert plait.get(flaky.history.remote(), timeout=30)[0] == 2


def test_a_retried_call_is_not_lost_behind_the_calls_queued_after_it(cluster):
    flaky = Flaky.remote()
    first = flaky.connect.remote(1)
    after = [flaky.note.remote(w) for w in ("a", "b")]
    assert plait.get(first, timeout=30) == 2
    assert plait.get(after, timeout=30) == ["a", "b"]
    calls, log = plait.get(flaky.history.remote(), timeout=30)
    assert calls == 2 and log.count("connect") == 2 and log.index("a") < log.index("b")


# -- plait.cancel(ref, force=..., recursive=...) -------------------------------------------

@plait.remote
def sleep_then(seconds, value):
    import time

    time.sleep(seconds)
    return value


@pytest.mark.parametrize("force", [False, True])
def test_cancel_takes_rays_keywords_and_stops_a_running_task_either_way(cluster, force):
    running = sleep_then.remote(60, "never")
    plait.wait([running], timeout=0.5)                    # submitted, and started by now
    plait.cancel(running, force=force, recursive=force)
    with pytest.raises(plait.TaskCancelledError):
        plait.get(running, timeout=30)
    assert plait.get(sleep_then.remote(0, "after"), timeout=30) == "after"
