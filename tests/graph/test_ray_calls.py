"""What Ray checks where a call is written, without a cluster: a FakeRuntime stands in for
the session (tests/fakes.py), so nothing here starts a process."""

from __future__ import annotations

import json
import os
import pickle

import pytest

import plait
from plait.graph.signature import check_call, method_signatures, signature_of
from tests.fakes import installed_runtime


@pytest.fixture
def runtime():
    with installed_runtime() as fake:
        yield fake


@plait.remote
def scale(x, factor=2, *, offset=0):
    return x * factor + offset


@plait.remote
class Account:
    def __init__(self, owner, balance=0):
        self.owner, self.balance = owner, balance

    def deposit(self, amount):
        self.balance += amount
        return self.balance

    def log(self, *lines, **fields):
        return lines, fields

    @staticmethod
    def fee(amount, rate=0.01):
        return amount * rate

    @classmethod
    def opened_by(cls, owner):
        return owner


# -- arguments bound at .remote(), as Ray binds them -----------------------------------------

@pytest.mark.parametrize("args, kwargs", [((), {}), ((1, 2, 3), {}), ((1,), {"scale": 3}),
                                          ((1,), {"factor": 2, "x": 1})])
def test_a_task_call_that_does_not_fit_its_function_raises_type_error_at_the_call(
        runtime, args, kwargs):
    with pytest.raises(TypeError, match=r"^scale\.remote\(\): "):
        scale.remote(*args, **kwargs)
    assert runtime.created_tasks == []                 # nothing was added to the graph


def test_a_task_call_that_fits_is_added_and_options_keep_the_check(runtime):
    scale.remote(1)
    scale.remote(1, 3, offset=4)
    with pytest.raises(TypeError, match="too many positional arguments"):
        scale.options(name="scaled").remote(1, 2, 3)
    assert len(runtime.created_tasks) == 2


def test_a_call_is_checked_again_whenever_its_shape_is_new_though_one_like_it_fitted(runtime):
    scale.remote(1, factor=3)                          # fits: (1 positional, "factor")
    scale.remote(2, factor=4)                          # the same shape: remembered as fitting
    with pytest.raises(TypeError, match="multiple values for argument 'x'"):
        scale.remote(1, x=3)                           # 1 positional and "x": a new shape
    with pytest.raises(TypeError, match="multiple values for argument 'x'"):
        scale.options(name="scaled").remote(1, x=3)    # a copy shares what fitted, not this
    assert len(runtime.created_tasks) == 2


def test_an_actor_constructor_and_its_methods_check_their_arguments(runtime):
    with pytest.raises(TypeError, match=r"^Account\.remote\(\): missing a required argument"):
        Account.remote()
    with pytest.raises(TypeError, match="unexpected keyword argument 'limit'"):
        Account.remote("ann", limit=3)
    account = Account.remote("ann", 10)
    with pytest.raises(TypeError, match=r"^Account\.deposit\.remote\(\): missing"):
        account.deposit.remote()
    with pytest.raises(TypeError, match="too many positional arguments"):
        account.deposit.remote(1, 2)
    account.deposit.remote(amount=5)
    account.log.remote(1, 2, three=3)
    account.fee.remote(100)                      # a static method: no self to drop
    account.opened_by.remote("bob")              # a class method: cls is bound already
    with pytest.raises(TypeError):
        account.fee.remote()


def test_a_handle_checks_calls_after_it_travelled(runtime):
    account = pickle.loads(pickle.dumps(Account.remote("ann")))
    with pytest.raises(TypeError, match="too many positional arguments"):
        account.deposit.remote(1, 2)


def test_signatures_keep_only_what_binding_needs_so_they_pickle():
    unpicklable = lambda: None  # noqa: E731

    def f(a, b=unpicklable, *rest, c: int = 3, **extra) -> int: ...

    kept = pickle.loads(pickle.dumps(signature_of(f)))
    assert str(kept) == "(a, b=Ellipsis, *rest, c=Ellipsis, **extra)"
    check_call(kept, "f", (1,), {})
    with pytest.raises(TypeError):
        check_call(kept, "f", (), {"c": 1})


def test_methods_drop_self_but_static_and_class_methods_do_not():
    class Shape:
        def area(self, unit): ...

        @staticmethod
        def unit(name): ...

        @classmethod
        def make(cls, sides): ...

        def anything(*args): ...

    found = method_signatures(Shape, ["area", "unit", "make", "anything"])
    assert {name: str(s) for name, s in found.items()} == {
        "area": "(unit)", "unit": "(name)", "make": "(sides)", "anything": "(*args)"}


# -- plait.wait ----------------------------------------------------------------------------

def test_wait_on_nothing_returns_nothing_and_a_non_list_is_a_type_error(runtime):
    assert plait.wait([]) == ([], [])
    with pytest.raises(TypeError):
        plait.wait(1)
    with pytest.raises(TypeError):
        plait.wait([1])


def test_wait_refuses_a_ref_given_twice(runtime):
    ref = scale.remote(1)
    with pytest.raises(ValueError, match="twice"):
        plait.wait([ref, ref])
    same = plait.ObjectRef(ref.id)                  # another handle of the same object
    with pytest.raises(ValueError, match="twice"):
        plait.wait([ref, scale.remote(2), same], num_returns=1)


@pytest.mark.parametrize("num_returns", [0, -1, 3, 1.5])
def test_wait_refuses_num_returns_outside_one_to_the_refs_given_as_ray_does(runtime,
                                                                             num_returns):
    with pytest.raises(ValueError, match=f"num_returns={num_returns}"):
        plait.wait([scale.remote(1), scale.remote(2)], num_returns=num_returns)


# -- the decorator -------------------------------------------------------------------------

def test_empty_parentheses_are_refused_on_a_class_as_on_a_function():
    for target in (type("Plain", (), {}), lambda: 1):
        with pytest.raises(TypeError, match="without parentheses"):
            plait.remote()(target)
    assert type(plait.remote(max_restarts=1)(type("Plain", (), {}))).__name__ == "ActorClass"


def test_an_async_def_task_is_refused_at_decoration_but_async_methods_are_fine():
    async def fetch():
        return 1

    with pytest.raises(ValueError, match="async def fetch"):
        plait.remote(fetch)
    with pytest.raises(ValueError, match="async def fetch"):
        plait.remote(max_retries=1)(fetch)

    class Service:
        async def fetch(self):
            return 1

    assert type(plait.remote(Service)).__name__ == "ActorClass"


# -- @plait.method -------------------------------------------------------------------------

@plait.remote(max_task_retries=1)
class Fetcher:
    @plait.method(max_task_retries=4, retry_exceptions=[ConnectionError])
    def fetch(self):
        return 1

    @plait.method
    def plain(self):
        return 2

    def default(self):
        return 3


def test_method_options_reach_each_call_and_options_override_them(runtime):
    fetcher = Fetcher.remote()
    options = fetcher.fetch.remote().task.options
    assert (options.max_retries, options.retry_exceptions) == (4, [ConnectionError])
    assert fetcher.default.remote().task.options.max_retries == 1      # the actor's
    assert fetcher.plain.remote().task.options.max_retries == 1        # bare @plait.method
    changed = fetcher.fetch.options(max_task_retries=0, retry_exceptions=False).remote()
    assert (changed.task.options.max_retries, changed.task.options.retry_exceptions) == (0, False)


def test_method_options_are_checked_where_they_are_written():
    with pytest.raises(plait.InvalidOptionError, match="max_task_retries must be an int"):
        plait.method(max_task_retries="twice")
    with pytest.raises(plait.InvalidOptionError, match="retry_exceptions"):
        plait.method(retry_exceptions="ConnectionError")
    with pytest.raises(plait.InvalidOptionError, match="unknown option 'max_task_retry'"):
        plait.method(max_task_retry=1)


# -- plait.cancel --------------------------------------------------------------------------

def test_cancel_with_force_refuses_an_actor_call_as_ray_does(runtime):
    call = Account.remote("ann").deposit.remote(1)
    with pytest.raises(ValueError, match="plait.kill"):
        plait.cancel(call, force=True)
    with pytest.raises(ValueError, match="plait.kill"):
        plait.cancel([scale.remote(1), call], force=True, recursive=False)


# -- the runtime context -------------------------------------------------------------------

def test_a_drivers_context_is_rays_shape_and_refuses_what_only_a_task_has():
    from plait.graph.context import RuntimeContext

    context = RuntimeContext("node-0", None, None, "9f-1")
    with pytest.warns(DeprecationWarning, match=r"Use get_xxx_id\(\) methods"):
        found = context.get()
    assert found == {"job_id": "9f-1", "node_id": "node-0", "namespace": "9f-1"}
    assert found["node_id"].hex() == "node-0" == context.get_node_id().hex()
    assert context.get_job_id() == "9f-1" and context.get_actor_name() is None
    assert context.get_task_function_name() is None
    for ask in (lambda: context.current_actor, context.get_assigned_resources,
                lambda: context.was_current_actor_reconstructed):
        with pytest.raises(RuntimeError, match="only available inside"):
            ask()
    assert pickle.loads(pickle.dumps(found)) == found


def test_a_context_gives_rays_node_labels_and_runtime_env_string():
    from plait.graph.context import RuntimeContext

    driver = RuntimeContext("node-0", None, None, "9f-1")
    assert driver.get_node_labels() == {"ray.io/node-id": "node-0"}     # Ray's only label
    assert driver.get_runtime_env_string() == "{}"
    task = RuntimeContext("node-1", "node-1.w0", "f-2", "9f-1",
                          env_vars=(("A", "1"), ("B", "x y")))
    assert json.loads(task.get_runtime_env_string()) == {"env_vars": {"A": "1", "B": "x y"}}
    assert task.get_node_labels() == {"ray.io/node-id": "node-1"}
    assert task.get_placement_group_id() is None and driver.get_placement_group_id() is None


def test_a_drivers_worker_id_is_its_own_and_a_workers_is_kept():
    from plait.graph.context import RuntimeContext, driver_worker_id

    driver = RuntimeContext("node-0", None, None, "9f-1")
    assert driver.get_worker_id() == driver_worker_id("9f-1", os.getpid())
    assert driver.get_worker_id().hex() == RuntimeContext("node-0", None, None,
                                                          "9f-1").get_worker_id()
    assert driver_worker_id("9f-1", 41) != driver_worker_id("9f-1", 42)  # one per process
    assert RuntimeContext("node-0", "node-0.w3", "f-2", "9f-1").get_worker_id() == "node-0.w3"


# -- class attributes through the actor class -----------------------------------------------

def test_the_actor_class_answers_for_its_class_attributes_and_pickles():
    class Base:
        BASE = 2

        @staticmethod
        def double(x):
            return 2 * x

    @plait.remote
    class Limits(Base):
        LIMIT = 3

        @classmethod
        def made(cls):
            return cls.LIMIT

    assert (Limits.LIMIT, Limits.BASE, Limits.double(4), Limits.made()) == (3, 2, 8, 3)
    with pytest.raises(AttributeError, match="no attribute 'MISSING'"):
        getattr(Limits, "MISSING")  # noqa: B009
    import cloudpickle

    again = pickle.loads(cloudpickle.dumps(Limits))
    assert (again.LIMIT, again.made()) == (3, 3)
    assert not hasattr(again, "__wrapped__")


def test_a_class_cannot_derive_from_an_actor_class():
    @plait.remote
    class Base:
        pass

    with pytest.raises(TypeError, match="Inheriting from actor classes is not"):
        class Derived(Base):
            pass


# -- dunder methods through the handle ------------------------------------------------------

class Sized:
    def __len__(self):
        return 3


@plait.remote
class Table(Sized):
    def __init__(self):
        self.rows = {"a": 1}

    def __getitem__(self, key):
        return self.rows[key]

    def __call__(self, value):
        return value

    def __repr__(self):
        return "Table()"

    def __deepcopy__(self, memo):
        return self


def test_a_handle_calls_the_dunder_methods_its_class_defines_as_rays_does(runtime):
    import copy

    table = Table.remote()
    for name in ("__len__", "__getitem__", "__call__"):    # __len__ from a plain base too
        assert type(getattr(table, name)).__name__ == "ActorMethod", name
    table.__len__.remote()
    table.__getitem__.remote("a")
    with pytest.raises(TypeError, match=r"^Table\.__getitem__\.remote\(\): missing"):
        table.__getitem__.remote()
    assert repr(table).startswith("Actor(Table") and table.__init__.__self__ is table
    for missing in ("__iter__", "__foo__", "nope"):      # the class defines none of these
        with pytest.raises(AttributeError, match=repr(missing)):
            getattr(table, missing)
    assert not hasattr(table, "__deepcopy__")         # Python's copy protocol: the handle's
    assert copy.deepcopy(table) == table
    assert pickle.loads(pickle.dumps(table)).__len__.remote() is not None


def test_a_ref_names_its_object_as_text_and_as_bytes_as_rays_does():
    ref = plait.ObjectRef("put-7")
    assert ref.hex() == "put-7" and ref.binary() == b"put-7"
    assert {ref.binary(): 1}[plait.ObjectRef("put-7").binary()] == 1
    assert plait.ObjectRef.nil().is_nil() and not ref.is_nil()      # Ray's ref to nothing


@plait.remote(num_returns=2)
def pair():
    return 1, 2


def test_a_refs_task_id_names_the_task_that_made_it_as_rays_does(runtime):
    ref = scale.remote(1)
    assert ref.task_id().hex() == runtime.created_tasks[-1]
    assert repr(ref.task_id()) == f"TaskID({runtime.created_tasks[-1]})"
    first, second = pair.remote()
    assert first.task_id() == second.task_id() == pickle.loads(pickle.dumps(second)).task_id()
    assert hash(first.task_id()) == hash(second.task_id()) != hash(ref.task_id())
    assert first.task_id().hex() == runtime.created_tasks[-1]
    assert first.task_id().binary() == first.task_id().hex().encode()
    put, other = runtime.put(1), runtime.put(2)        # as Ray: a caller's puts share one id
    assert put.task_id() == other.task_id() and put.task_id() not in (ref.task_id(),
                                                                      first.task_id())
    assert plait.ObjectRef("node-0.w1.77:Counter.incr-5.12").task_id().hex() == \
        "node-0.w1.77:Counter.incr-5"


@pytest.mark.parametrize("call", [
    lambda ref, timeout: plait.get(ref, timeout=timeout),
    lambda ref, timeout: plait.wait([ref], timeout=timeout),
    lambda ref, timeout: plait.compute(ref, timeout=timeout),
])
def test_a_timeout_is_seconds_or_none_as_rays(runtime, call):
    ref = plait.ObjectRef("put-1")
    with pytest.raises(TypeError, match="timeout must be a number of seconds or None"):
        call(ref, "10")


def test_a_negative_timeout_is_no_limit_for_get_and_an_error_for_wait_as_in_ray(runtime):
    ref = runtime.put(7)
    assert plait.get(ref, timeout=-1) == 7 and plait.compute(ref, timeout=-1) == (7,)
    with pytest.raises(ValueError, match="timeout must be >= 0"):
        plait.wait([ref], timeout=-1)


def test_cancel_refuses_what_is_not_a_ref_and_points_an_actor_to_kill(runtime):
    with pytest.raises(TypeError, match="plait.cancel expects ObjectRefs .* got int"):
        plait.cancel(5)
    with pytest.raises(TypeError, match="to stop an actor, use plait.kill"):
        plait.cancel([plait.ObjectRef("put-1"), "x"])


@pytest.mark.parametrize("call", [lambda: plait.kill("x"), lambda: plait.cancel(5),
                                  lambda: plait.wait(plait.ObjectRef("put-1"))])
def test_what_is_not_a_ref_or_a_handle_is_both_errors_ray_may_raise(runtime, call):
    """Ray raises ValueError for some (ray.kill("x")) and TypeError for others: a script
    catching either keeps working."""
    for caught in (TypeError, ValueError, plait.InvalidArgumentError):
        with pytest.raises(caught):
            call()


def test_cpu_and_gpu_are_not_custom_resources(runtime):
    @plait.remote
    def f():
        return 1

    with pytest.raises(plait.InvalidOptionError, match="use num_cpus and num_gpus"):
        f.options(resources={"CPU": 1})


def test_rays_options_asking_for_nothing_are_taken_and_the_rest_refused_by_name():
    @plait.remote(num_cpus=None, placement_group=None, enable_task_events=False)
    def f():
        return 1

    @plait.remote
    class A:
        pass

    assert f.default_options.num_cpus == 1                 # None: the default, as in Ray
    A.options(num_cpus=None, max_pending_calls=-1, runtime_env={}, label_selector={})
    assert f.options(runtime_env={"env_vars": {"B": "2", "A": "1"}}).default_options.env_vars \
        == (("A", "1"), ("B", "2"))
    with pytest.raises(NotImplementedError, match="runtime_env's pip is not supported"):
        f.options(runtime_env={"pip": ["requests"]})
    with pytest.raises(plait.InvalidOptionError, match="max_pending_calls=10 is not supported"):
        A.options(max_pending_calls=10)
    with pytest.raises(plait.InvalidOptionError, match="placement_group='pg' is not supported"):
        f.options(placement_group="pg")
    with pytest.raises(plait.InvalidOptionError, match="unknown option 'placement_groop'"):
        f.options(placement_groop=None)


@pytest.mark.parametrize("name", [None, "", 5])
def test_get_actor_without_a_name_is_refused_before_asking_the_cluster(name):
    # Ray raises a ValueError ("Please supply a non-empty value to get_actor"); plait's
    # InvalidArgumentError is one (and a TypeError, as plait raised for None before)
    with pytest.raises(plait.exceptions.InvalidArgumentError, match="non-empty name"):
        plait.get_actor(name)
    with pytest.raises(ValueError):
        plait.get_actor(name)
