"""The node's resources beside its CPU slots: GPUs, Ray's ``memory`` and custom ones.

A node offers named amounts (``plait.init(num_gpus=2, resources={"disk": 4})``, or
``plait start --num-gpus 2 --resources '{"disk": 4}'``). A task that asks for some holds
them from the moment it is handed to a worker until it ends; an actor holds them for its
life. The compiler has already put the task on a node that offers them *in all*
(compiler/placement.py); here it waits until they are *free*.

Amounts are counted in units of 1/10,000 (Ray's granularity), so half a GPU taken twice
and given back twice leaves exactly what there was, with no float residue.

GPUs are numbered 0..n-1. A task asking for whole GPUs gets that many unused ones; one
asking for a fraction shares the first GPU with that much left (as Ray assigns them). The
worker sets ``CUDA_VISIBLE_DEVICES`` to their ids and ``plait.get_gpu_ids()`` names them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

UNIT = 10_000         # amounts are whole multiples of 1/UNIT (Ray's resource granularity)

Amounts = tuple[tuple[str, float], ...]


def _units(amount: float) -> int:
    """An amount in whole units of 1/UNIT.

    >>> _units(0.5), _units(1), _units(1 / 3)
    (5000, 10000, 3333)
    """
    return int(round(amount * UNIT))


@dataclass
class Holding:
    """What one task or actor holds: amounts by name (in units) and GPU ids (with shares)."""

    amounts: dict[str, int]
    gpus: dict[int, int] = field(default_factory=dict)     # GPU id -> units of it


class Ledger:
    """Totals offered, what is free now, and who holds what (by task or ``actor <id>``)."""

    def __init__(self, offered: Amounts) -> None:
        self.total = {name: _units(amount) for name, amount in offered if amount > 0}
        self.free = dict(self.total)
        self.gpu_free = [UNIT] * (self.total.get("GPU", 0) // UNIT)
        self.held: dict[str, Holding] = {}

    def take(self, holder: str, asked: Amounts) -> bool:
        """Hold ``asked`` for ``holder`` if all of it is free now (False: nothing taken)."""
        want = {name: _units(amount) for name, amount in asked if amount > 0}
        if not want or holder in self.held:
            return True
        if any(self.free.get(name, 0) < units for name, units in want.items()):
            return False
        gpus = self.pick_gpus(want.get("GPU", 0))
        if gpus is None:
            return False
        for name, units in want.items():
            self.free[name] -= units
        for gpu, units in gpus.items():
            self.gpu_free[gpu] -= units
        self.held[holder] = Holding(want, gpus)
        return True

    def pick_gpus(self, units: int) -> dict[int, int] | None:
        """Whole GPUs nobody uses, or a share of the first GPU with room (None: none fit)."""
        if units == 0:
            return {}
        if units < UNIT:
            gpu = next((i for i, left in enumerate(self.gpu_free) if left >= units), None)
            return None if gpu is None else {gpu: units}
        unused = [i for i, left in enumerate(self.gpu_free) if left == UNIT]
        count = units // UNIT
        return {gpu: UNIT for gpu in unused[:count]} if len(unused) >= count else None

    def give_back(self, holder: str) -> bool:
        """``holder`` ends: what it held is free again (True if it held anything)."""
        holding = self.held.pop(holder, None)
        if holding is None:
            return False
        for name, units in holding.amounts.items():
            self.free[name] += units
        for gpu, units in holding.gpus.items():
            self.gpu_free[gpu] += units
        return True

    def assigned(self, holder: str) -> tuple[Amounts, tuple[int, ...]]:
        """What ``holder`` holds, as the worker reports it, and its GPU ids."""
        holding = self.held.get(holder)
        if holding is None:
            return (), ()
        amounts = tuple((name, units / UNIT) for name, units in sorted(holding.amounts.items()))
        return amounts, tuple(sorted(holding.gpus))

    def offers(self, asked: Amounts) -> bool:
        """Whether ``asked`` could ever be held here (all of it free at once).

        >>> Ledger((("GPU", 1.0),)).offers((("GPU", 2.0),))
        False
        """
        return all(self.total.get(name, 0) >= _units(amount) for name, amount in asked)

    def fits(self, asked: Amounts) -> bool:
        """Whether ``asked`` could be held now (the GPUs' split included)."""
        want = {name: _units(amount) for name, amount in asked if amount > 0}
        return all(self.free.get(name, 0) >= units for name, units in want.items()) \
            and self.pick_gpus(want.get("GPU", 0)) is not None

    def amounts(self, which: dict[str, int]) -> Amounts:
        return tuple((name, units / UNIT) for name, units in sorted(which.items()))
