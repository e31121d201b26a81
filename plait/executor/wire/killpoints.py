"""Named kill points: a process SIGKILLs itself at a chosen place, so failure tests need no sleeps.

Fault tests must kill a process at an exact moment ("after the task computed, before its
result is stored"), which a timer in the test cannot hit reliably. The code calls
``reached(point, *labels)`` at each such place; when the environment variable
``PLAIT_KILL_AT`` names the point, the process kills itself there with SIGKILL, as the
kernel's OOM killer or a crash would, leaving no chance to clean up.

``PLAIT_KILL_AT`` is a comma-separated list of ``POINT[@LABEL][:N]``:

- ``POINT`` is one of ``POINTS`` below;
- ``@LABEL`` only counts calls that carry that label: the task's function name or node for
  the task points, the receiving node or the object for ``mid-transfer``, the node or the
  object for ``mid-spill``;
- ``:N`` kills on the N-th matching call in this process (default 1).

Node processes and workers inherit the driver's environment, so setting the variable
before ``plait.init`` reaches all of them; a label names the one that should die. Each
process counts for itself, so a replacement worker would die again at the same point: to
kill only once in the whole cluster, set ``PLAIT_KILL_ONCE`` to a path. The first process
to reach the point creates that file (``O_EXCL``, so exactly one wins), writes what it was
doing into it, and dies; every later one finds the file and goes on. A test reads the file
to know the kill really happened.

The variables are read once, at import: with ``PLAIT_KILL_AT`` unset, ``reached`` is a
function that returns at once, and the places that call it cost one call each (the
spiller, in the store layer, gets a ``hook`` that is None then, and costs nothing).
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

ENV_POINTS = "PLAIT_KILL_AT"
ENV_ONCE = "PLAIT_KILL_ONCE"

POINTS = {
    "task-before-start": "worker, its arguments loaded, just before the function is called",
    "task-after-compute": "worker, the function returned, before its results are stored",
    "mid-transfer": "receiving node, a replica block allocated and (across hosts) the first "
                    "chunk received, before the copy is sealed",
    "mid-spill": "node, the first chunk of a spill file written, before the file is complete",
}


class KillPointError(ValueError):
    """``PLAIT_KILL_AT`` names an unknown point or has a malformed count."""


@dataclass(frozen=True, slots=True)
class KillSpec:
    """One entry of ``PLAIT_KILL_AT``: die at the ``nth`` call of ``point`` with ``label``."""

    point: str
    label: str | None = None
    nth: int = 1


def parse(text: str) -> tuple[KillSpec, ...]:
    """The entries of a ``PLAIT_KILL_AT`` value.

    >>> parse("task-before-start@slow_fn:3, mid-spill")[0]
    KillSpec(point='task-before-start', label='slow_fn', nth=3)
    >>> parse("mid-spill")
    (KillSpec(point='mid-spill', label=None, nth=1),)
    """
    return tuple(_parse_one(entry.strip()) for entry in text.split(",") if entry.strip())


def _parse_one(entry: str) -> KillSpec:
    head, colon, count = entry.rpartition(":")
    if not colon or not count.isdigit():
        head, count = entry, "1"
    point, _, label = head.partition("@")
    if point not in POINTS:
        raise KillPointError(f"{ENV_POINTS}: unknown kill point {point!r} in {entry!r}; "
                             f"known: {', '.join(sorted(POINTS))}")
    if int(count) < 1:
        raise KillPointError(f"{ENV_POINTS}: the count in {entry!r} must be 1 or more")
    return KillSpec(point, label or None, int(count))


class Killer:
    """The kill specs of this process and how often each matched so far."""

    def __init__(self, specs: tuple[KillSpec, ...], once_path: str | None) -> None:
        self.specs = specs
        self.once_path = once_path
        self.seen: Counter[KillSpec] = Counter()

    def reached(self, point: str, *labels: str) -> None:
        for spec in self.specs:
            if spec.point != point or (spec.label is not None and spec.label not in labels):
                continue
            self.seen[spec] += 1
            if self.seen[spec] == spec.nth and self.claim(point, labels):
                os.kill(os.getpid(), signal.SIGKILL)

    def claim(self, point: str, labels: tuple[str, ...]) -> bool:
        """Whether this process may die: always, unless another already took the one kill."""
        if self.once_path is None:
            return True
        try:
            fd = os.open(self.once_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(f"{point} {os.getpid()} {' '.join(labels)}\n")
        return True


def _ignore(point: str, *labels: str) -> None:
    """``reached`` when no kill point is set: nothing to do."""


def _from_environment():
    text = os.environ.get(ENV_POINTS, "")
    if not text.strip():
        return _ignore
    return Killer(parse(text), os.environ.get(ENV_ONCE) or None).reached


reached = _from_environment()


def hook(point: str, *labels: str) -> Callable[[str], None] | None:
    """A callback for a layer that may not import this one (the store's spiller): None when
    no kill point is set, so the caller skips even the call.
    """
    if reached is _ignore:
        return None
    return lambda object_id: reached(point, *labels, object_id)
