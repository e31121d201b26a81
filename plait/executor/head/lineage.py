"""Lineage: which task made each object, kept as long as a lost object may need it again.

A task result whose only copy is lost (its node died, its spill file went) is made again
by running its task again. That task's own inputs may be gone by then: the readers that
needed them finished, so the directory reclaimed them. They are made again the same way,
from *their* producers, which is why a record is kept not only while its object lives
but also while a kept record reads it (Ray's "lineage pinning")::

    leaf-1 --\\
              add-1 (alive, held by the driver)     add-1's record reads leaf-1, leaf-2:
    leaf-2 --/                                       their records stay, their values go

A record goes when its object has left the directory and no kept record reads it; the
records it kept may go in turn. Objects made by ``put`` have no record: losing the only
copy of one is for good, as in Ray. The records of a long chain whose end stays alive all
stay too (Ray caps them by bytes; plait does not yet).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from plait.executor.wire import protocol as p


def reads(spec: p.TaskSpec) -> tuple[str, ...]:
    """Every object a task reads (its top-level arguments and the refs nested in them)."""
    return tuple(dict.fromkeys(spec.deps + spec.nested))


class Lineage:
    """Object id -> the task that made it, with the counts that decide how long it stays."""

    def __init__(self) -> None:
        self.made_by: dict[str, p.TaskSpec] = {}
        self.uses: Counter[str] = Counter()        # object -> kept records that read it
        self.reruns: Counter[str] = Counter()      # task -> times re-run to rebuild a loss

    def record(self, object_id: str, spec: p.TaskSpec) -> None:
        """``spec`` made ``object_id`` (once: a re-run does not count its inputs twice)."""
        if object_id in self.made_by:
            return
        self.made_by[object_id] = spec
        for oid in reads(spec):
            self.uses[oid] += 1

    def producer(self, object_id: str) -> p.TaskSpec | None:
        return self.made_by.get(object_id)

    def count_rerun(self, spec: p.TaskSpec) -> int:
        """One more re-run of ``spec``; returns how many there have been."""
        self.reruns[spec.id] += 1
        return self.reruns[spec.id]

    def forget(self, object_id: str, alive: Callable[[str], bool]) -> None:
        """``object_id`` left the directory: drop its record unless a kept record reads it,
        then the records only it kept, and so on down the graph."""
        stack = [object_id]
        while stack:
            oid = stack.pop()
            if self.uses[oid] > 0 or alive(oid):
                continue
            spec = self.made_by.pop(oid, None)
            if spec is None:
                continue
            if not any(other in self.made_by for other in spec.outputs):
                self.reruns.pop(spec.id, None)
            for dep in reads(spec):
                self.uses[dep] -= 1
                if self.uses[dep] <= 0:
                    del self.uses[dep]
                    stack.append(dep)

    def problems(self) -> list[str]:
        """Broken invariants (for validate_state): use counts equal the kept records."""
        expected: Counter[str] = Counter()
        for spec in self.made_by.values():
            for oid in reads(spec):
                expected[oid] += 1
        if expected != +self.uses:
            wrong = sorted(set(expected) ^ set(+self.uses) | {
                oid for oid in expected if expected[oid] != self.uses[oid]})
            return [f"lineage use counts differ from the kept records for {wrong[:5]}"]
        return []
