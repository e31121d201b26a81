"""put/get/free through a real cluster: values round-trip, arrays come back zero-copy."""

from __future__ import annotations

import time

import numpy as np
import pytest

import plait
from plait.api import session  # the running Session
from plait.executor.wire import protocol as p

pytestmark = pytest.mark.cluster

MIB = 1 << 20


@pytest.mark.parametrize("value", [0, 3.5, "text", b"bytes", None, [1, {"a": (2, 3)}],
                                   {"nested": np.arange(5)}, np.float32(2.5)])
def test_put_get_round_trips_an_equal_but_distinct_value(cluster, value):
    got = plait.get(plait.put(value))
    if isinstance(value, dict):
        assert np.array_equal(got["nested"], value["nested"])
    else:
        assert got == value
    if isinstance(value, (list, dict)):
        assert got is not value


@pytest.mark.parametrize("nbytes", [1 << 10, 1 << 20, 64 << 20])
def test_arrays_come_back_zero_copy_and_read_only(cluster, nbytes):
    array = np.arange(nbytes // 8, dtype=np.float64)
    ref = plait.put(array)
    first, second = plait.get(ref), plait.get(ref)
    assert np.array_equal(first, array) and first is not array
    assert not np.shares_memory(first, array)
    if nbytes > 100 * 1024:                      # stored in the arena: both views share it
        assert np.shares_memory(first, second)
        assert isinstance(session().values[ref.id], p.Stored)
    with pytest.raises(ValueError):
        first[0] = 1.0


@plait.remote
def assign_first(arr):
    arr[0] = 1                          # Ray's documentation example
    return arr


@plait.remote
def writable_arrays(value):
    """Whether each array a task was given (top level, or inside a list) is writable."""
    return [a.flags.writeable for a in (value if isinstance(value, list) else [value])]


@plait.remote
def make_arrays(n):
    return np.zeros(n), [np.ones(n)], {"deep": np.ones(n)}


@pytest.mark.parametrize("n", [100, 1 << 17], ids=["inline", "stored"])
def test_ray_doc_example_raises_read_only_at_every_size(cluster, n):
    with pytest.raises(ValueError, match="assignment destination is read-only"):
        plait.get(assign_first.remote(np.zeros(n)))


@pytest.mark.parametrize("n", [100, 1 << 17], ids=["inline", "stored"])
def test_task_arguments_are_read_only_at_every_size(cluster, n):
    assert plait.get(writable_arrays.remote(np.zeros(n))) == [False]
    assert plait.get(writable_arrays.remote(plait.put(np.zeros(n)))) == [False]
    assert plait.get(writable_arrays.remote([np.zeros(n), np.zeros(n)[::2]])) == [False, False]


@pytest.mark.parametrize("n", [100, 1 << 17], ids=["inline", "stored"])
def test_get_results_are_read_only_at_every_size(cluster, n):
    top, listed, nested = plait.get(make_arrays.remote(n))
    for array in (top, listed[0], nested["deep"]):
        assert not array.flags.writeable
    assert not plait.get(plait.put([np.zeros(n)[::2]]))[0].flags.writeable


@plait.remote
def zeros(nbytes):
    return np.zeros(nbytes, np.uint8)


@pytest.mark.parametrize("kib, kind", [(99, p.Inline), (101, p.Stored)])
def test_objects_under_100_kib_travel_inline_larger_ones_are_stored(cluster, kib, kind):
    """The README's promise (serialization.INLINE_THRESHOLD), for puts and for results:
    the bytes ride in the message, or are written once into a node's arena."""
    put, made = plait.put(np.zeros(kib * 1024, np.uint8)), zeros.remote(kib * 1024)
    assert len(plait.get(made)) == kib * 1024
    assert isinstance(session().values[put.id], kind)
    assert isinstance(session().values[made.id], kind)


def test_one_gib_array_round_trips_zero_copy(cluster):
    array = np.full(1 << 27, 7.0)                # 1 GiB of float64
    ref = plait.put(array)
    got = plait.get(ref)
    assert got.shape == array.shape and got[0] == 7.0 and got[-1] == 7.0
    assert np.shares_memory(got, plait.get(ref))
    assert not got.flags.writeable
    del got, ref, array


def test_a_view_outlives_its_ref(cluster):
    ref = plait.put(np.arange(1 << 20, dtype=np.int64))
    view = plait.get(ref)
    del ref
    plait.put(np.ones(1 << 20, dtype=np.int64))          # would reuse a freed block
    assert view[12345] == 12345 and view[-1] == (1 << 20) - 1


def test_freed_object_raises_object_freed_error(cluster):
    ref = plait.put(np.ones(1 << 18))
    plait.free(ref)
    with pytest.raises(plait.ObjectFreedError):
        plait.get(ref)


def test_get_rejects_non_refs(cluster):
    with pytest.raises(TypeError, match="ObjectRef"):
        plait.get(42)


def test_dropped_refs_return_their_memory(fresh):
    """With spilling off, a 64 MiB store takes sixteen 16 MiB puts in turn only if each
    dropped ref's block comes back: the fifth would fail with ObjectStoreFullError."""
    plait.init(num_workers=1, store_memory=64 * MIB, spilling=False)
    block = np.ones(2 * MIB)                            # 16 MiB
    for _ in range(16):
        ref = plait.put(block)
        del ref
    assert plait.get(plait.put(1)) == 1                # sends the last drop to the head
    deadline = time.monotonic() + 10                    # whose Delete follows its replies
    while session().memory_summary()[0].used and time.monotonic() < deadline:
        time.sleep(0.01)
    assert session().memory_summary()[0].used == 0
