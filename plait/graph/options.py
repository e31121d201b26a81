"""Options of a remote function or of one call (``@plait.remote(...)``, ``.options(...)``).

Unknown names are an error rather than silently ignored, so a typo never changes behaviour
without a word. Resources are Ray's: a worker slot is one CPU (``num_cpus`` above 1 holds
that many slots); ``num_gpus``, ``memory`` and custom ``resources`` are quantities a node
offers (``plait.init(num_gpus=1, resources={"disk": 2})``), held while a task runs (an actor:
for its life). ``max_calls`` (tasks only) retires a worker after that many calls of the
function, as Ray does, so what a library leaks in a process goes with it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from plait.errors import InvalidOptionError


# A task that yields its results (Ray's generator tasks): each value yielded is an object
# of its own, handed out as it comes by an ObjectRefGenerator ("streaming", the default
# for a generator function, as in Ray) or listed in the task's one result ("dynamic").
GENERATOR_RETURNS = ("streaming", "dynamic")


def result_count(num_returns: int | str | None) -> int:
    """How many result objects a task has (a generator task: one, its end or its list;
    ``num_returns=0``: one nobody gets a ref to, freed when the task ends).

    >>> result_count(None), result_count(3), result_count("streaming"), result_count(0)
    (1, 3, 1, 1)
    """
    return max(num_returns, 1) if isinstance(num_returns, int) else 1


@dataclass(frozen=True, slots=True)
class NodeAffinitySchedulingStrategy:
    """Ray's way to pin a call to a node (``plait.util.scheduling_strategies``): the same
    as ``node=node_id``. A ``soft`` pin runs the task elsewhere when the node is not in the
    cluster or cannot run it (Ray's rule); plait retries a pinned task on another node
    when its node dies, as Ray does for soft pins."""

    node_id: str
    soft: bool = False


def _with_strategy(before: Any, options: Any, changes: dict[str, Any]) -> Any:
    """Options with a NodeAffinitySchedulingStrategy turned into the node pin it means. A
    strategy given in place of a node-affinity one takes its pin away (Ray's last
    strategy wins); a pin by ``node=`` stays."""
    if "scheduling_strategy" not in changes:
        return options
    strategy = changes["scheduling_strategy"]
    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        return dataclasses.replace(options, node=str(strategy.node_id))
    if isinstance(before.scheduling_strategy, NodeAffinitySchedulingStrategy) \
            and "node" not in changes:
        return dataclasses.replace(options, node=None)
    return options


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """How to run a call: results, retries, placement pin, display name.

    ``num_returns`` None (not given) means one result, or "streaming" for a generator
    function (as in Ray); given as 1 on a generator, the one result is its one value.
    """

    num_returns: int | str | None = None
    max_retries: int = 3
    retry_exceptions: bool = False
    node: str | None = None
    name: str | None = None
    num_cpus: float = 1
    num_gpus: float = 0
    resources: dict[str, float] | None = None
    memory: int | None = None
    scheduling_strategy: Any = None
    max_calls: int = 0               # calls of it a worker runs before it is replaced (0: any)
    env_vars: tuple[tuple[str, str], ...] = ()   # runtime_env's, set while it runs

    def merged(self, **changes: Any) -> TaskOptions:
        """These options with ``changes`` applied, each one checked."""
        return _merged(self, "option", changes)


@dataclass(frozen=True, slots=True)
class ActorOptions:
    """How to run an actor: where, how often its process may be restarted, its calls' retries.

    ``max_restarts`` (Ray's default 0; -1: forever) counts restarts of a dead actor process,
    each running the constructor again; ``max_task_retries`` counts re-runs of a call that
    was running when the process died (0: it fails with ActorDiedError). ``max_concurrency``
    is how many calls run at once: an actor with ``async def`` methods runs them on its
    event loop (Ray's default 1,000), one without runs them in that many threads (default
    1: one at a time, in order). ``lifetime="detached"`` keeps the actor when its handles
    are gone (until shutdown). Ray's resource options are accepted: an actor has a process
    of its own, outside the task slots.
    """

    node: str | None = None
    name: str | None = None
    max_restarts: int = 0
    max_task_retries: int = 0
    lifetime: str | None = None
    namespace: str | None = None
    max_concurrency: int | None = None   # calls at once; None: Ray's (1000 async, else 1)
    get_if_exists: bool = False          # with a name: the live actor of that name, if any
    num_cpus: float = 0                  # slots held for its lifetime (Ray: 0 while running)
    num_gpus: float = 0
    resources: dict[str, float] | None = None
    memory: int | None = None
    scheduling_strategy: Any = None
    env_vars: tuple[tuple[str, str], ...] = ()   # runtime_env's, set in its process

    def merged(self, **changes: Any) -> ActorOptions:
        return _merged(self, "actor option", changes)


# Ray's options for what plait has not (placement groups, labels, accelerator types,
# backpressure) or does anyway (every task is traced), taken when
# they ask for nothing: generic code passes them so. Anything else is refused by name.
RAY_DEFAULTS: dict[str, tuple[Any, ...]] = {
    "placement_group": (None, "default"), "placement_group_bundle_index": (-1,),
    "placement_group_capture_child_tasks": (None, False), "accelerator_type": (None,),
    "label_selector": (None, {}), "fallback_strategy": (None,),
    "enable_task_events": (True, False), "max_pending_calls": (-1,), "_metadata": (None,)}
# Ray's options that take None for their default value.
NONE_IS_DEFAULT = {"num_cpus", "num_gpus", "memory", "resources"}


def _merged(options: Any, kind: str, changes: dict[str, Any]) -> Any:
    """``options`` with ``changes`` applied, each checked; a node-affinity strategy pins."""
    known = {f.name for f in dataclasses.fields(options)}
    for key, value in changes.items():
        if key in RAY_DEFAULTS and key not in known:
            if not any(value == taken and type(value) is type(taken)
                       for taken in RAY_DEFAULTS[key]):
                raise InvalidOptionError(f"{key}={value!r} is not supported by plait (only "
                                         f"{' or '.join(map(repr, RAY_DEFAULTS[key]))})")
    changes = {key: value for key, value in changes.items()
               if not (key in RAY_DEFAULTS and key not in known)
               and not (value is None and key in NONE_IS_DEFAULT)}
    if "runtime_env" in changes:              # Ray's spelling of what plait keeps as env_vars
        changes["env_vars"] = tuple(sorted(env_vars_of(changes.pop("runtime_env")).items()))
    for key, value in changes.items():
        if key not in known:
            raise InvalidOptionError(
                f"unknown {kind} {key!r}; valid options are {', '.join(sorted(known))}")
        _check(key, value)
    if changes.get("node") is not None:   # a plain str: get_node_id()'s Id (a str with
        changes = {**changes, "node": str(changes["node"])}   # .hex()) cannot go on the wire
    return _with_strategy(options, dataclasses.replace(options, **changes), changes)


def env_vars_of(runtime_env: Any) -> dict[str, str]:
    """Ray's ``runtime_env={"env_vars": {...}}`` (of a task, an actor or ``plait.init``):
    the variables to set. What else a runtime_env may name (working_dir, py_modules, pip,
    conda, containers) plait does not install: refused by name."""
    if runtime_env is None:
        return {}
    if not isinstance(runtime_env, dict):
        raise TypeError(f"runtime_env must be a dict, got {type(runtime_env).__name__}")
    env_vars = runtime_env.get("env_vars") or {}
    if not isinstance(env_vars, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env_vars.items()):
        raise TypeError(f"runtime_env's env_vars must map names to str values, got "
                        f"{env_vars!r}")
    others = sorted(set(runtime_env) - {"env_vars"})
    if others:
        raise NotImplementedError(f"runtime_env's {', '.join(others)} is not supported: "
                                  f"plait's workers run in the driver's directory and "
                                  f"Python environment; only env_vars is set for them")
    return dict(env_vars)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(key: str, value: Any) -> None:
    if key == "num_returns" and not (_is_int(value) and value >= 0) \
            and value not in GENERATOR_RETURNS and value is not None:
        raise InvalidOptionError(f"num_returns must be an int >= 0, 'streaming' or 'dynamic', "
                                 f"got {value!r}")
    if key == "max_calls" and not (_is_int(value) and value >= 0):
        raise InvalidOptionError(f"max_calls must be an int >= 0 (0: no limit), got {value!r}")
    if key == "num_gpus" and _is_number(value) and value > 1 and value != int(value):
        raise InvalidOptionError(f"num_gpus above 1 must be a whole number (a fraction shares "
                                 f"one GPU), got {value!r}")
    if key == "max_retries" and not (_is_int(value) and value >= -1):
        raise InvalidOptionError(f"max_retries must be an int >= 0 (or -1: forever), got {value!r}")
    if key == "node" and value is not None and not (isinstance(value, str) and value):
        raise InvalidOptionError(f"node must be a node id such as 'node-1', got {value!r}")
    if key == "name" and value is not None and not isinstance(value, str):
        raise InvalidOptionError(f"name must be a string, got {value!r}")
    if key in ("num_cpus", "num_gpus") and not (_is_number(value) and value >= 0):
        raise InvalidOptionError(f"{key} must be a number >= 0, got {value!r}")
    if key == "memory" and value is not None and not (_is_int(value) and value >= 0):
        raise InvalidOptionError(f"memory must be a number of bytes, got {value!r}")
    if key == "resources" and value is not None and not (
            isinstance(value, dict) and all(isinstance(k, str) and _is_number(v) and v >= 0
                                            for k, v in value.items())):
        raise InvalidOptionError(f"resources must map names to amounts, got {value!r}")
    if key == "resources" and value and {"CPU", "GPU"} & set(value):
        raise InvalidOptionError("use num_cpus and num_gpus, not 'CPU' and 'GPU' in resources "
                                 "(as Ray asks)")
    if key in ("max_restarts", "max_task_retries") and not (_is_int(value) and value >= -1):
        raise InvalidOptionError(f"{key} must be an int >= 0 (or -1: forever), got {value!r}")
    if key == "lifetime" and value not in (None, "detached", "non_detached"):
        raise InvalidOptionError(f"lifetime must be None or 'detached', got {value!r}")
    if key == "namespace" and value is not None and not isinstance(value, str):
        raise InvalidOptionError(f"namespace must be a string, got {value!r}")
    if key in ("name", "namespace") and isinstance(value, str) and "\x1f" in value:
        raise InvalidOptionError(f"{key} {value!r} holds the character \\x1f, which plait "
                                 f"keeps to end a namespace in an actor's registered name")
    if key == "get_if_exists" and not isinstance(value, bool):
        raise InvalidOptionError(f"get_if_exists must be a bool, got {value!r}")
    if key == "max_concurrency" and not (value is None or _is_int(value) and value >= 1):
        raise InvalidOptionError(f"max_concurrency must be an int >= 1 (calls an actor runs "
                                 f"at once), got {value!r}")
    if key == "scheduling_strategy" and not (
            value is None or value in ("DEFAULT", "SPREAD")
            or isinstance(value, NodeAffinitySchedulingStrategy)):
        raise InvalidOptionError(f"scheduling_strategy {value!r} is not supported: use "
                                 f"'DEFAULT', 'SPREAD' (plait spreads small tasks anyway) or "
                                 f"NodeAffinitySchedulingStrategy(node_id)")
    if key == "retry_exceptions" and not (isinstance(value, bool) or (
            isinstance(value, (list, tuple)) and all(
                isinstance(kind, type) and issubclass(kind, BaseException) for kind in value))):
        raise InvalidOptionError(f"retry_exceptions must be a bool or a list of exception "
                                 f"classes, got {value!r}")
