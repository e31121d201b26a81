"""Actors: ``@plait.remote`` on a class. An actor is one process holding one instance.

``Counter.remote(...)`` adds the actor's *creation* to the graph (a task whose single
result, the actor's ready marker, has the actor's id) and returns an ``ActorHandle``.
``handle.incr.remote(...)`` adds a *call*: a task that runs in the actor's process, on the
actor's node (which runs it once the constructor has), and reads the ready marker as a
nested input, which keeps the actor alive while the call is pending. Calls are tasks like
any other for the rest of plait: their results are ObjectRefs, placed, traced and explained.

Like every ``.remote()``, actor creations and calls are submitted at the caller's next
``get``/``wait`` (all pending calls of the caller together, in the order they were made),
so a caller's calls run in the order it made them.

A handle pickles as the actor's id, its class name, its methods and the ready marker's
ref: it can be passed to tasks and to other actors, and the ref inside keeps the actor
alive, wherever it is kept (an actor's state, a stored object). Once no handle, pending
call or task holds it, the actor leaves after its queued calls, running its atexit
handlers, unless it was created with ``lifetime="detached"`` (node/actors.py).
"""

from __future__ import annotations

import inspect
from typing import Any, NoReturn

import cloudpickle

from plait.errors import (ActorAlreadyExistsError, ActorExitRequest, ActorNotFoundError,
                          InvalidOptionError)
from plait.graph import context
from plait.graph.options import ActorOptions, TaskOptions
from plait.graph.refs import ObjectRef
from plait.graph.remote_function import (RemoteFunction, is_generator_function, remote_with,
                                         returned)
from plait.graph.signature import check_call, method_signatures, signature_of
from plait.graph.task import Task, encode_call

METHOD_OPTIONS = "__plait_method_options__"
TERMINATE = "__ray_terminate__"     # every actor's method that ends it (Ray's name)
READY = "__ray_ready__"             # every actor's method that returns True once it is built
CALL = "__ray_call__"               # every actor's: fn(instance, *args, **kwargs), run in it
BUILT_IN = (TERMINATE, READY, CALL)  # the methods every actor has, whatever its class
# Dunder methods of the user's class a handle does not call: Python's copy and pickle look
# these up on the handle itself (copy.deepcopy asks the instance for __deepcopy__), where
# a method of the actor would break copying the handle (as a Ray handle's copy breaks);
# __del__ is Ray's handle's own. Every other dunder the class defines is a method.
HANDLE_PROTOCOLS = frozenset({"__copy__", "__deepcopy__", "__del__", "__getnewargs__",
                              "__getnewargs_ex__", "__getstate__", "__reduce__",
                              "__reduce_ex__", "__setstate__"})


# What an actor call takes of its method's options (the rest of TaskOptions is its actor's)
CALL_OPTIONS = ("num_returns", "max_retries", "retry_exceptions", "name")


def method(*args: Any, **options: Any) -> Any:
    """``@plait.method(num_returns=2)`` on an actor method (Ray's ``ray.method``).

    ``max_task_retries`` (Ray's name; default: the actor's) counts re-runs of a call whose
    process died, and with ``retry_exceptions`` (True, or exception types) of a call that
    raised one of them, as ``retry_exceptions`` does for a task. A retried call runs after
    the calls already queued behind it (Ray keeps no order for retried calls either).
    """
    if len(args) == 1 and not options and callable(args[0]):
        return method()(args[0])                  # bare ``@plait.method``, as Ray allows
    if args:
        raise TypeError("use @plait.method(option=value, ...)")
    changes = _call_options(options)              # checked now, where the mistake is

    def mark(function: Any) -> Any:
        setattr(function, METHOD_OPTIONS, changes)
        return function

    return mark


def _call_options(options: dict[str, Any]) -> dict[str, Any]:
    """Method options, checked, in TaskOptions' words (Ray's ``max_task_retries`` is
    ``max_retries``)."""
    changes = {k: v for k, v in options.items() if k != "max_task_retries"}
    TaskOptions().merged(**changes)
    if "max_task_retries" in options:
        ActorOptions().merged(max_task_retries=options["max_task_retries"])
        changes["max_retries"] = options["max_task_retries"]
    return changes


class ActorClass:
    """A class whose ``.remote(...)`` starts an actor and returns its handle."""

    def __init__(self, cls: type, options: ActorOptions) -> None:
        self._cls = cls
        self._options = options
        self._function = RemoteFunction(cls, TaskOptions(name=cls.__name__))
        self._methods = _methods_of(cls)
        self._signatures = method_signatures(cls, list(self._methods))
        self._signatures["__init__"] = signature_of(cls)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        name = self._cls.__name__
        raise TypeError(f"actor class {name} cannot be instantiated directly; use "
                        f"{name}.remote(...) to start an actor")

    def __getattr__(self, name: str) -> Any:
        """The class's own attributes through the actor class, as in Ray: ``Cls.LIMIT``,
        ``Cls.make()`` (a static or class method) work on the driver and inside the
        actor's methods, where the class's name is this actor class too."""
        cls = self.__dict__.get("_cls")       # absent while unpickling: nothing to look in
        if cls is None or (name.startswith("__") and name.endswith("__")):
            raise AttributeError(f"{type(self).__name__} object has no attribute {name!r}")
        return getattr(cls, name)

    def __dir__(self) -> list[str]:
        """What completes after ``Cls.`` (Ray's ``dir``): the methods, options, remote."""
        return sorted([*self._methods, "options", "remote"])

    def __mro_entries__(self, bases: tuple) -> tuple:
        """``class Derived(SomeActorClass)``: refused with a word, as Ray refuses it."""
        name = self._cls.__name__
        raise TypeError(f"Inheriting from actor classes is not currently supported: derive "
                        f"from the plain class {name} (before @plait.remote) and decorate the "
                        f"subclass with @plait.remote")

    def options(self, **changes: Any) -> ActorClass:
        """A copy whose actors use ``changes`` (node, name, max_restarts, ...)."""
        copy = ActorClass.__new__(ActorClass)
        copy._cls, copy._function, copy._methods = self._cls, self._function, self._methods
        copy._signatures = self._signatures
        copy._options = self._options.merged(**changes)
        return copy

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        """Add the actor's creation to the graph; returns its handle at once (with
        ``get_if_exists``, the handle of the live actor of that name if there is one)."""
        name = self._cls.__name__
        check_call(self._signatures["__init__"], name, args, kwargs)
        runtime = context.runtime()
        given = self._options
        if given.name is not None or given.get_if_exists:
            existing = _named_actor(given)
            if existing is not None:
                return existing
        self._function.pickled()       # the class as it is now (as Ray exports it)
        payload, deps, nested = encode_call(name, args, kwargs, runtime.put, runtime.dumps)
        options = TaskOptions(name=name, node=given.node, max_retries=given.max_restarts,
                              num_cpus=given.num_cpus, num_gpus=given.num_gpus,
                              resources=given.resources, memory=given.memory,
                              env_vars=given.env_vars,
                              scheduling_strategy=given.scheduling_strategy)
        actor_id = runtime.new_id(name)
        task = Task(actor_id, self._function, options, payload, deps, nested,
                    actor=actor_id, method="__init__")
        task.detached = self._options.lifetime == "detached"
        task.concurrency = concurrency_of(self._cls, given.max_concurrency)
        handle = ActorHandle(actor_id, name, self._methods, ObjectRef(actor_id, task),
                             self._options.max_task_retries, self._signatures)
        if given.name:
            task.named = (registered_name(given.name, given.namespace), cloudpickle.dumps(handle))
            task.if_exists = given.get_if_exists
        runtime.created(task)
        return handle

    def _remote(self, args: Any = None, kwargs: Any = None, **options: Any) -> ActorHandle:
        return remote_with(self, args, kwargs, options)

    def get_or_create(self, *args: Any, **kwargs: Any) -> ActorHandle:
        """The live actor of this name, or a new one made with these arguments (Ray's)."""
        if not self._options.name:
            raise ValueError("get_or_create needs a name: Cls.options(name=...).get_or_create()")
        return self.options(get_if_exists=True).remote(*args, **kwargs)

    def __repr__(self) -> str:
        return f"ActorClass({self._cls.__name__})"


class ActorHandle:
    """The handle of a running (or starting) actor: ``handle.method.remote(...)``."""

    def __init__(self, actor_id: str, class_name: str, methods: dict[str, dict[str, Any]],
                 ready: ObjectRef, max_task_retries: int = 0,
                 signatures: dict[str, Any] | None = None) -> None:
        self._actor_id = actor_id
        self._class_name = class_name
        self._methods = methods
        self._ready = ready
        self._max_task_retries = max_task_retries
        self._signatures = signatures or {}       # method -> what its calls must fit

    @property
    def actor_id(self) -> str:
        return self._actor_id

    def __getattr__(self, name: str) -> ActorMethod:
        """The actor's method ``name``. Asked only for what the handle lacks, so the
        handle's own ``__init__``, ``__repr__``, ``__eq__`` ... stay its own, as in Ray."""
        if name in BUILT_IN:
            return ActorMethod(self, name, {})
        if name not in self._methods:
            raise AttributeError(f"actor class {self._class_name} has no method {name!r}")
        return ActorMethod(self, name, self._methods[name])

    def __dir__(self) -> list[str]:
        """What completes after ``handle.`` (Ray's ``dir``): the methods one may call."""
        return sorted(["__init__", *BUILT_IN, *self._methods])

    def __reduce__(self):
        return (ActorHandle, (self._actor_id, self._class_name, self._methods, self._ready,
                              self._max_task_retries, self._signatures))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __hash__(self) -> int:
        return hash(self._actor_id)

    def __repr__(self) -> str:
        return f"Actor({self._class_name}, {self._actor_id})"


class ActorMethod:
    """One method of an actor: ``.remote(...)`` adds a call, ``.options(...)`` changes it."""

    def __init__(self, handle: ActorHandle, name: str, options: dict[str, Any]) -> None:
        self._handle = handle
        self._name = name
        self._options = options

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"actor method {self._name}() cannot be called directly; use "
                        f"handle.{self._name}.remote(...)")

    def __dir__(self) -> list[str]:
        return ["options", "remote"]

    def options(self, **changes: Any) -> ActorMethod:
        changes = _call_options(changes)
        return ActorMethod(self._handle, self._name, {**self._options, **changes})

    def remote(self, *args: Any, **kwargs: Any) -> ObjectRef | list[ObjectRef]:
        """Add one call of this method to the graph; returns its result ref(s)."""
        handle = self._handle
        runtime = context.runtime()
        label = f"{handle._class_name}.{self._name}"
        check_call(handle._signatures.get(self._name), label, args, kwargs)
        payload, deps, nested = encode_call(label, args, kwargs, runtime.put, runtime.dumps)
        options = TaskOptions(name=label, max_retries=handle._max_task_retries).merged(
            **{k: v for k, v in self._options.items() if k in CALL_OPTIONS})
        ready = handle._ready
        task = Task(runtime.new_id(label), None, options, payload, deps, (*nested, ready),
                    actor=handle._actor_id, method=self._name)
        refs = [ObjectRef(object_id, task) for object_id in task.output_ids]
        runtime.created(task)           # counted first: another thread may submit it at once
        return returned(task.id, refs, options.num_returns)

    def _remote(self, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        return remote_with(self, args, kwargs, options)


def handle_of(actor_id: str, cls: type) -> ActorHandle:
    """A handle to the actor ``actor_id``, an instance of ``cls``, made in its own process
    (``get_runtime_context().current_actor``). Its calls use each method's own options; the
    actor's ``max_task_retries`` stayed with its creator, so they default to 0."""
    methods = _methods_of(cls)
    return ActorHandle(actor_id, cls.__name__, methods, ObjectRef(actor_id), 0,
                       {**method_signatures(cls, list(methods)), "__init__": signature_of(cls)})


def exit_actor() -> NoReturn:
    """End the actor this method runs in (Ray's ``ray.actor.exit_actor``): this call and
    every call queued behind it raise ActorDiedError, atexit handlers run, and the actor is
    not restarted. Outside an actor's method: TypeError, as in Ray."""
    active = context.active()
    if active is None or active.runtime_context().get_actor_id() is None:
        raise TypeError("exit_actor() ends the actor it is called in: call it inside an "
                        "actor's method (plait.kill(handle) stops an actor from outside)")
    raise ActorExitRequest("exit_actor() was called")


# Calls an async actor runs at once unless max_concurrency says otherwise (Ray's default).
ASYNC_CONCURRENCY = 1000


def is_async_class(cls: type) -> bool:
    """Whether an actor of ``cls`` runs its calls on an event loop: it has an ``async def``
    method (or an async generator), as Ray decides."""
    return any(inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member)
               for _, member in inspect.getmembers(cls, callable))


def concurrency_of(cls: type, max_concurrency: int | None) -> int:
    """How many calls an actor of ``cls`` runs at once: ``max_concurrency`` if given, else
    1,000 for an async actor and 1 (one at a time, in order) for any other."""
    if max_concurrency is not None:
        return max_concurrency
    return ASYNC_CONCURRENCY if is_async_class(cls) else 1


# Ends the namespace in a registered name: a character no name is written with, where "/"
# made the name "f1/foo" (no namespace) the same as "foo" in namespace "f1".
NAMESPACE_END = "\x1f"


def registered_name(name: str, namespace: str | None) -> str:
    """The name an actor is registered and looked up under: Ray's ``namespace`` scopes
    names, so "foo" in namespace "f1" is not "foo" in "f2" nor "foo" with none.

    >>> registered_name("foo", None), registered_name("foo", "f1")
    ('foo', 'f1\\x1ffoo')
    """
    return f"{namespace}{NAMESPACE_END}{name}" if namespace else name


def name_and_namespace(registered: str) -> tuple[str, str]:
    """A registered name taken apart: the actor's name and its namespace ("" for none).

    >>> name_and_namespace(registered_name("a/b", None)), name_and_namespace("f1\\x1ffoo")
    (('a/b', ''), ('foo', 'f1'))
    """
    namespace, _, name = registered.rpartition(NAMESPACE_END)
    return name, namespace


def _named_actor(options: ActorOptions) -> ActorHandle | None:
    """For a named actor's creation: the live actor of that name if ``get_if_exists``, or
    None (a new one is made). A name already taken is refused here, at the call, as Ray
    refuses it (the head would fail the second actor's creation later)."""
    if not options.name:
        raise InvalidOptionError("an actor's name cannot be empty; leave it out for an "
                                 "unnamed actor" if options.name == "" else
                                 "get_if_exists needs a name: Cls.options(name=..., "
                                 "get_if_exists=True)")
    existing = _live_actor(registered_name(options.name, options.namespace))
    if existing is not None and not options.get_if_exists:
        raise ActorAlreadyExistsError(f"the actor name {options.name!r} is taken by the live actor "
                                 f"{existing._actor_id}; get it with plait.get_actor("
                                 f"{options.name!r}), or choose another name")
    return existing


def _live_actor(name: str) -> ActorHandle | None:
    """The handle of the live actor named ``name``, or None."""
    try:
        return context.runtime().get_actor(name)
    except ActorNotFoundError:
        return None


def _methods_of(cls: type) -> dict[str, dict[str, Any]]:
    """The class's methods, ``_private`` ones and the dunder methods it (or a base of its)
    defines too, as Ray's handles call them (not ``object``'s: those are no functions; not
    ``HANDLE_PROTOCOLS``), and their ``@plait.method`` options; a generator method streams
    its values unless told otherwise (as in Ray)."""
    methods = {}
    for name, member in inspect.getmembers(cls, callable):
        defined = inspect.isfunction(member) or inspect.ismethod(member)
        if name != "__init__" and name not in HANDLE_PROTOCOLS and (
                defined or not name.startswith("_")):
            options = dict(getattr(member, METHOD_OPTIONS, {}))
            if options.get("num_returns") is None and is_generator_function(member):
                options["num_returns"] = "streaming"
            methods[name] = options
    return methods
