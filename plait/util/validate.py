"""``validate_state()``: ask the running cluster whether its books still balance."""

from __future__ import annotations


def validate_state(timeout: float = 30.0) -> list[str]:
    """The invariants the head and every node find broken right now; empty when all hold.

    A debugging aid in the spirit of dask's ``Scheduler.validate_state()``: every pending
    object has a producer, every stored object a live copy, no pin or worker slot outlives
    its holder (the full lists are in ``plait.executor.head.invariants`` and
    ``plait.executor.node.invariants``). Tests call it in their teardown and the chaos soak
    after every round. It needs a running cluster, and raises GetTimeoutError if a node does
    not answer within ``timeout`` seconds.
    """
    from plait import api

    return list(api.session().validate_state(timeout))
