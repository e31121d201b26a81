"""Dispatch: a process's handlers, keyed by the class of the message each one takes.

What flows in: a class whose handler for message ``X`` is the method ``<prefix>X``
(``Node.on_Assign``, ``Head.node_TasksDone``). What flows out: a table from message class
to that (unbound) method, built once, at import, next to the class::

    FROM_HEAD = handlers(Node, "on_")          # Assign -> Node.on_Assign, ...
    FROM_HEAD[type(message)](node, message)

A method named after no message of the protocol (a typo, or a message renamed) fails the
import instead of never being called; names that do not go on with a capital letter after
the prefix (``on_worker``, ``node_lost``) are ordinary methods and are left out. That every
message a process receives has its handler is checked by tests
(tests/executor/test_dispatch.py). A table holds the class's own functions: a subclass's
overrides are not seen (none exist).

One dict lookup on the exact type, then the call, is the cheapest dispatch measured here
(ns per message, CPython 3.11, benchmarks/bench_dispatch.py): 50, against 150 for
``getattr(self, f"on_{type(message).__name__}")``, 41 to 219 for the node's chain of eight
``isinstance`` (first to last branch), 62 behind a MappingProxyType and 295 for
functools.singledispatchmethod. The tables are plain dicts, typed read-only (Mapping).
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping

from plait.executor.wire import protocol as p

MESSAGES: Mapping[str, type] = {cls.__name__: cls for cls in typing.get_args(p.Message)}

Handler = Callable[..., None]


def handlers(cls: type, prefix: str) -> Mapping[type, Handler]:
    """The methods of ``cls`` named ``prefix`` + a message's name, keyed by that message.

    >>> class Echo:
    ...     def on_Bye(self, message): return "bye"
    ...     def on_time(self): ...
    >>> handlers(Echo, "on_") == {p.Bye: Echo.on_Bye}
    True
    >>> class Typo:
    ...     def on_Byee(self, message): ...
    >>> handlers(Typo, "on_")
    Traceback (most recent call last):
    ...
    TypeError: Typo.on_Byee handles no message: the protocol has no Byee
    """
    table: dict[type, Handler] = {}
    for name in dir(cls):
        message = name.removeprefix(prefix)
        if message == name or not message[:1].isupper():
            continue
        if message not in MESSAGES:
            raise TypeError(f"{cls.__qualname__}.{name} handles no message: the protocol has "
                            f"no {message}")
        table[MESSAGES[message]] = getattr(cls, name)
    return table
