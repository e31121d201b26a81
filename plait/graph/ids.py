"""Readable, deterministic ids: ``put-1``, ``inc-2a``, ``split-7.1`` (no uuid4).

Ids are a stem (the function's name, or ``put``) and a per-session counter in hex, with a
prefix that keeps processes apart when several submit into one cluster.
"""

from __future__ import annotations

import itertools
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_.<>]+")
STEMS_KEPT = 1024      # stems whose safe form is remembered (a regex costs ~1 us an id)


class IdGenerator:
    """Hands out ``{prefix}{stem}-{n:x}`` ids; one instance per session.

    >>> ids = IdGenerator()
    >>> ids.new("inc"), ids.new("inc"), ids.new("my func")
    ('inc-1', 'inc-2', 'my_func-3')
    """

    def __init__(self, prefix: str = "") -> None:
        self._prefix = prefix
        self._counter = itertools.count(1)
        self._stems: dict[str, str] = {}     # stem -> "{prefix}{safe stem}-": one regex each

    def new(self, stem: str) -> str:
        head = self._stems.get(stem)
        if head is None:
            if len(self._stems) >= STEMS_KEPT:        # names made per call: no growth
                self._stems.clear()
            head = self._stems[stem] = f"{self._prefix}{_UNSAFE.sub('_', stem)}-"
        return f"{head}{next(self._counter):x}"


def stem_of(task_id: str) -> str:
    """The stem (a function's name) of an id ``IdGenerator`` made, without its prefix
    (a prefix ends in a dot: a function's name has none).

    >>> stem_of("crash-2a"), stem_of("1f3a2.fan_out-7")
    ('crash', 'fan_out')
    """
    return task_id.rsplit("-", 1)[0].rsplit(".", 1)[-1]


def output_id(task_id: str, index: int, num_returns: int) -> str:
    """The object id of a task's ``index``-th result.

    >>> output_id("inc-1", 0, 1), output_id("split-2", 1, 2)
    ('inc-1', 'split-2.1')
    """
    return task_id if num_returns == 1 else f"{task_id}.{index}"


def yielded_id(task_id: str, index: int) -> str:
    """The object id of the ``index``-th value a generator task yielded: the same on every
    run of the task, so a re-run's values are known for the ones already seen.

    >>> yielded_id("numbers-4", 0), yielded_id("numbers-4", 12)
    ('numbers-4.0', 'numbers-4.12')
    """
    return f"{task_id}.{index}"


# The stem of a put's id (session.put, worker.put): a put's object has no task of its own.
PUT_STEM = "put"


def task_of(object_id: str) -> str:
    """The id of the task that made ``object_id`` (Ray's ``ref.task_id()``): the inverse of
    ``output_id`` and ``yielded_id``, read from the id alone, as a ref that travelled has
    nothing else.

    A put has no task: its object names the process that put it (``{prefix}put``, one for
    all of that process's puts, as all of a Ray driver's puts name the driver's task; in a
    worker, its tasks' puts share one, where Ray's differ per task). By its id alone a
    result of a task named "put" reads as a put; a ref that still holds its task is
    answered from the task (``ObjectRef.task_id``).

    >>> task_of("inc-1"), task_of("split-2.1"), task_of("node-0.w1.77:Counter.incr-5.12")
    ('inc-1', 'split-2', 'node-0.w1.77:Counter.incr-5')
    >>> task_of("put-7"), task_of("d2:put-9"), task_of("no counter")
    ('put', 'd2:put', 'no counter')
    """
    head, dash, count = object_id.rpartition("-")
    if not dash:                        # not an id IdGenerator made: itself
        return object_id
    if head.rpartition(":")[2] == PUT_STEM:
        return head
    return f"{head}-{count.partition('.')[0]}"
