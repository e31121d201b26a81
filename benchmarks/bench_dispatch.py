"""Micro-benchmark: the cost of dispatching one message to its handler, per style.

``python benchmarks/bench_dispatch.py``: nanoseconds per dispatch (best of 5 runs of
200,000) for the styles plait used (a getattr on the message's name; a chain of
isinstance, whose cost grows with the branch taken; each style ends in a call of the
handler, as in plait) and those it could use (a table keyed
by type, in a dict or behind a MappingProxyType; functools.singledispatchmethod).
"""

from __future__ import annotations

import functools
import timeit
from types import MappingProxyType

from plait.executor.wire import protocol as p
from plait.executor.wire.dispatch import handlers

N = 200_000
CHAIN = (p.WorkerReady, p.Alloc, p.TasksDone, p.Blocked, p.Unblocked, p.PutInline, p.Seal)


class Old:
    def by_name(self, message: p.Message) -> None:
        handler = getattr(self, f"on_{type(message).__name__}", None)
        if handler is None:
            raise p.MalformedMessage(type(message).__name__)
        handler(message)

    def by_chain(self, message: p.Message) -> None:
        if isinstance(message, p.WorkerReady):
            self.on_Seal(message)
        elif isinstance(message, p.Alloc):
            self.on_Seal(message)
        elif isinstance(message, p.TasksDone):
            self.on_TasksDone(message)
        elif isinstance(message, p.Blocked) and self:
            self.on_Seal(message)
        elif isinstance(message, p.Blocked):
            self.on_Seal(message)
        elif isinstance(message, p.Unblocked):
            self.on_Seal(message)
        elif isinstance(message, p.PutInline):
            self.on_Seal(message)
        elif isinstance(message, p.Seal):
            self.on_Seal(message)

    def on_TasksDone(self, message: p.TasksDone) -> None:
        pass

    def on_Seal(self, message: p.Seal) -> None:
        pass


PLAIN = handlers(Old, "on_")
PROXY = MappingProxyType(PLAIN)


class New(Old):
    def by_proxy(self, message: p.Message) -> None:
        handler = PROXY.get(type(message))
        if handler is None:
            raise p.MalformedMessage(type(message).__name__)
        handler(self, message)

    def by_dict(self, message: p.Message) -> None:
        handler = PLAIN.get(type(message))
        if handler is None:
            raise p.MalformedMessage(type(message).__name__)
        handler(self, message)

    @functools.singledispatchmethod
    def by_single(self, message: p.Message) -> None:
        raise p.MalformedMessage(type(message).__name__)

    @by_single.register
    def _(self, message: p.TasksDone) -> None:
        pass

    @by_single.register
    def _(self, message: p.Seal) -> None:
        pass


def per_call(call, message) -> float:
    """Nanoseconds per call, best of 5."""
    return min(timeit.repeat(lambda: call(message), number=N, repeat=5)) / N * 1e9


def main() -> None:
    new = New()
    done, seal, first = p.TasksDone(()), p.Seal("x"), p.WorkerReady(0, 1)
    empty = per_call(lambda m: None, done)
    rows = [("getattr(self, f'on_{name}')", new.by_name, done),
            ("isinstance chain, 1st branch", new.by_chain, first),
            ("isinstance chain, 3rd (TasksDone)", new.by_chain, done),
            ("isinstance chain, 8th (Seal)", new.by_chain, seal),
            ("table[type(m)], MappingProxyType", new.by_proxy, done),
            ("table[type(m)], dict", new.by_dict, done),
            ("functools.singledispatchmethod", new.by_single, done)]
    print(f"{'dispatch':40} ns/message (call overhead {empty:.0f} ns subtracted)")
    for name, call, message in rows:
        print(f"{name:40} {per_call(call, message) - empty:6.0f}")


if __name__ == "__main__":
    main()
