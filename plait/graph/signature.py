"""A call's arguments checked against what it calls, at ``.remote()`` (as Ray does).

A task with too few or too many arguments, or a keyword its function does not take, would
otherwise fail only when it runs, far from the line that made it. ``.remote()`` binds the
arguments to the signature first and raises ``TypeError`` where the call is written.

Signatures travel inside actor handles (a handle checks its method calls wherever it is
used), so what is kept is only what binding reads: parameter names, kinds and whether each
has a default. The defaults themselves (any object, maybe unpicklable) stay behind.
"""

from __future__ import annotations

import inspect
from typing import Any

_HAS_DEFAULT = ...        # stands for every default: binding asks only whether there is one


def signature_of(target: Any, *, drops_self: bool = False) -> inspect.Signature | None:
    """The signature calls of ``target`` are checked against; None if Python cannot tell.

    ``drops_self``: ``target`` is a plain function found on a class (an instance method),
    whose first positional parameter the actor fills.

    >>> def add(a, b=2, *rest, scale, **extra): ...
    >>> signature_of(add)
    <Signature (a, b=Ellipsis, *rest, scale, **extra)>
    >>> def incr(self, by=1): ...
    >>> signature_of(incr, drops_self=True)
    <Signature (by=Ellipsis)>
    >>> signature_of(print) is None or True    # builtins may have none: nothing is checked
    True
    """
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    parameters = list(signature.parameters.values())
    if drops_self and parameters and parameters[0].kind in (
            inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
        parameters = parameters[1:]
    return inspect.Signature([_bare(parameter) for parameter in parameters])


def method_signatures(cls: type, names: list[str]) -> dict[str, inspect.Signature | None]:
    """The signatures of the methods ``names`` of ``cls`` as callers see them: without
    ``self`` for instance methods, as they are for static and class methods."""
    signatures = {}
    for name in names:
        raw = inspect.getattr_static(cls, name, None)
        bound = isinstance(raw, (staticmethod, classmethod))
        signatures[name] = signature_of(getattr(cls, name), drops_self=not bound
                                        and inspect.isfunction(inspect.unwrap(raw)))
    return signatures


def check_call(signature: inspect.Signature | None, label: str, args: tuple,
               kwargs: dict[str, Any]) -> None:
    """Raise TypeError, naming the call, if ``args`` and ``kwargs`` do not fit ``signature``.

    >>> def add(a, b): ...
    >>> check_call(signature_of(add), "add", (1,), {})
    Traceback (most recent call last):
    TypeError: add.remote(): missing a required argument: 'b'
    >>> check_call(signature_of(add), "add", (1, 2), {})
    """
    if signature is None:
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as error:
        raise TypeError(f"{label}.remote(): {error}") from None


def _bare(parameter: inspect.Parameter) -> inspect.Parameter:
    """The parameter without its annotation, and with a stand-in for its default."""
    default = parameter.empty if parameter.default is parameter.empty else _HAS_DEFAULT
    return parameter.replace(default=default, annotation=parameter.empty)
