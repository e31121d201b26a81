"""The ring of trace events the head and the other engines keep for plait.trace.

Each event is kept as a plain tuple, its "row": its class's index in EVENT_KINDS, then its
fields in order. CPython stops tracking a tuple of strings and numbers at the first
collection it lives through, where an event object stays tracked and every full collection
walks the whole ring again. Positions count every event ever recorded, so a reader learns
how many of the events it asked for the ring let go.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator

from plait.executor.wire.protocol import MAX_EVENTS, TaskEvent, TransferEvent

EVENT_KINDS = (TaskEvent, TransferEvent)


def event_from_row(row: tuple) -> TaskEvent | TransferEvent:
    """The event a kept row stands for.

    >>> event_from_row((1, "put-1", "node-0", "node-1", 8, 2.0, 2.0))
    TransferEvent(object_id='put-1', src='node-0', dst='node-1', nbytes=8, start=2.0, end=2.0)
    """
    return EVENT_KINDS[row[0]](*row[1:])


class EventRing:
    """The newest ``size`` events, as rows; past it the oldest goes.

    >>> ring = EventRing(2)
    >>> for i in range(3):
    ...     ring.record((1, f"put-{i}", "node-0", "node-1", 8, 2.0, 2.0))
    >>> [e.object_id for e in ring.since(0)], ring.end, ring.dropped
    (['put-1', 'put-2'], 3, 1)
    """

    def __init__(self, size: int = MAX_EVENTS) -> None:
        self.rows: deque[tuple] = deque(maxlen=size)
        self.dropped = 0                  # position of rows[0] in the whole log

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[tuple]:
        return iter(self.rows)

    @property
    def end(self) -> int:
        """The position the next event will have."""
        return self.dropped + len(self.rows)

    def record(self, row: tuple) -> None:
        if len(self.rows) == self.rows.maxlen:
            self.dropped += 1
        self.rows.append(row)

    def since(self, position: int, newest: int = 0) -> tuple[TaskEvent | TransferEvent, ...]:
        """The events from ``position`` on that the ring still has (none for a position
        below 0); ``newest`` > 0: only the last that many of them."""
        if position < 0:
            return ()
        start = max(position, self.dropped)
        if newest > 0:
            start = max(start, self.end - newest)
        return tuple(map(event_from_row, itertools.islice(self.rows, start - self.dropped,
                                                          None)))
