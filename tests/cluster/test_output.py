"""What workers print reaches the driver, as Ray's log_to_driver: ``(f pid=123) line``."""

from __future__ import annotations

import os
import sys
import time

import pytest

import plait

pytestmark = pytest.mark.cluster

DEADLINE_SECONDS = 20.0


@plait.remote
def speak(word):
    print(f"said {word}")
    print(f"warned {word}", file=sys.stderr)
    os.system(f"echo child of {word}")          # what a child process writes too
    return os.getpid()


@plait.remote
def noop():
    return None


@plait.remote
class Parrot:
    def __init__(self):
        print("parrot made")

    def say(self, word):
        print(f"parrot says {word}")
        return os.getpid()


def printed(capfd, *wanted: str) -> tuple[str, str]:
    """The driver's stdout and stderr once every line of ``wanted`` is in one of them
    (lines arrive by a socket of their own: each call into plait takes in what came)."""
    out = err = ""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        captured = capfd.readouterr()
        out, err = out + captured.out, err + captured.err
        if all(line in out or line in err for line in wanted):
            return out, err
        assert time.monotonic() < deadline, f"never printed: {wanted!r}\n{out}\n{err}"
        plait.get(noop.remote())


def test_a_tasks_and_an_actors_output_reach_the_driver_with_rays_prefix(fresh, capfd):
    plait.init(num_workers=1)
    pid = plait.get(speak.remote("hi"))
    parrot = Parrot.remote()
    actor_pid = plait.get(parrot.say.remote("hello"))
    out, err = printed(capfd, f"(speak pid={pid}) said hi", f"(speak pid={pid}) warned hi",
                       f"(speak pid={pid}) child of hi", f"(Parrot pid={actor_pid}) parrot made",
                       f"(Parrot pid={actor_pid}) parrot says hello")
    assert f"(speak pid={pid}) said hi\n" in out and f"(speak pid={pid}) warned hi\n" in err
    assert f"(Parrot pid={actor_pid}) parrot says hello\n" in out


def test_log_to_driver_false_shows_nothing(fresh, capfd):
    plait.init(num_workers=1, log_to_driver=False)
    pid = plait.get(speak.remote("quietly"))
    for _ in range(20):                          # calls that would take in any lines
        plait.get(noop.remote())
    captured = capfd.readouterr()
    assert "quietly" not in captured.out + captured.err and pid > 0
