"""``@plait.remote``: a function becomes a RemoteFunction, a class an ActorClass.

The decorator sits above both kinds it makes, so neither ``remote_function`` nor ``actor``
needs to know of the other to turn a class into an actor.
"""

from __future__ import annotations

import inspect
from typing import Any

from plait.errors import InvalidOptionError
from plait.graph.actor import ActorClass
from plait.graph.options import ActorOptions, TaskOptions
from plait.graph.remote_function import RemoteFunction


def remote(*args: Any, **options: Any) -> Any:
    """Decorator: ``@plait.remote`` or ``@plait.remote(num_returns=2, max_retries=1)``.

    As in Ray, empty parentheses are refused (``@plait.remote()`` names no option, and is
    most often a slip for ``@plait.remote``), and so is an ``async def`` function.
    """
    if len(args) == 1 and not options and callable(args[0]):
        return _make_remote(args[0], TaskOptions())
    if args or not options:
        raise TypeError("use @plait.remote without parentheses, or @plait.remote(option=value, "
                        "...) with at least one option")
    _check_either(options)
    return lambda target: _make_remote(target, _checked(target, options))


def _check_either(options: dict[str, Any]) -> None:
    """Refuse at once what neither a function nor a class could take (a typo, a bad value)."""
    task_keys = set(TaskOptions.__dataclass_fields__)
    for key, value in options.items():
        if key in task_keys:
            try:
                TaskOptions().merged(**{key: value})
                continue
            except InvalidOptionError:
                if key not in ActorOptions.__dataclass_fields__:
                    raise
        ActorOptions().merged(**{key: value})


def _checked(target: Any, options: dict[str, Any]) -> TaskOptions | ActorOptions:
    """Options checked as a class's (actor options) or a function's (task options)."""
    if isinstance(target, type):
        return ActorOptions().merged(**options)
    return TaskOptions().merged(**options)


def _make_remote(target: Any, options: TaskOptions | ActorOptions) -> Any:
    """A class becomes an actor class, anything else callable a remote function."""
    if isinstance(target, type):
        return ActorClass(target, options if isinstance(options, ActorOptions) else ActorOptions())
    if inspect.iscoroutinefunction(target):
        raise ValueError(f"@plait.remote on 'async def {target.__name__}': a task cannot be "
                         f"a coroutine function (Ray refuses it too); call asyncio.run(...) "
                         f"inside a plain function, or make it a method of an actor")
    return RemoteFunction(target, options)
