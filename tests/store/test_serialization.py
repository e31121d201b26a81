"""The object layout: values -> header, pickle stream, aligned out-of-band buffers -> values.

Zero-copy claims are proven with ``np.shares_memory`` against the buffer the layout was
written into, not assumed.
"""

from __future__ import annotations

import pickle
import struct
import threading

import numpy as np
import pytest

import plait
from plait.store import serialization
from plait.store.copying import PARALLEL_COPY_BYTES
from plait.store.serialization import (ALIGNMENT, Serialized, deserialize, serialize,
                                       split_layout)


def written(value: object) -> tuple[Serialized, bytearray]:
    """``value`` serialised and laid out in a fresh buffer (as a store block would be)."""
    serialized = serialize(value)
    block = bytearray(serialized.nbytes)
    serialized.write_into(memoryview(block))
    return serialized, block


def as_bytes(block: bytearray) -> np.ndarray:
    return np.frombuffer(block, dtype=np.uint8)


# -- numpy: zero-copy and read-only ------------------------------------------------------

def test_array_comes_back_equal_zero_copy_and_read_only():
    source = np.arange(100_000, dtype=np.float64)
    _, block = written(source)
    result = deserialize(memoryview(block))
    np.testing.assert_array_equal(result, source)
    assert result.dtype == source.dtype and result.shape == source.shape
    assert np.shares_memory(result, as_bytes(block))
    assert not np.shares_memory(result, source)
    assert not result.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        result[0] = 1.0


def test_serialize_keeps_the_array_buffer_out_of_band_without_copying():
    source = np.ones((300, 200), dtype=np.int32)
    serialized = serialize(source)
    assert len(serialized.buffers) == 1
    assert np.shares_memory(np.asarray(serialized.buffers[0]), source)
    assert len(serialized.stream) < 1024


def test_buffers_start_on_aligned_offsets():
    _, block = written({"a": np.ones(3, dtype=np.uint8), "b": np.ones(1000)})
    stream, buffers = split_layout(memoryview(block))
    base = as_bytes(block).ctypes.data
    for buffer in buffers:
        assert (np.asarray(buffer).ctypes.data - base) % ALIGNMENT == 0


def test_several_out_of_band_buffers_each_map_the_block():
    value = {"ints": np.arange(1000, dtype=np.int64),
             "floats": np.linspace(0, 1, 777, dtype=np.float32),
             "grid": np.eye(50, dtype=np.complex128)}
    serialized, block = written(value)
    assert len(serialized.buffers) == 3
    result = deserialize(memoryview(block))
    assert result.keys() == value.keys()
    for key, array in value.items():
        np.testing.assert_array_equal(result[key], array)
        assert result[key].dtype == array.dtype
        assert np.shares_memory(result[key], as_bytes(block))
        assert not result[key].flags.writeable


@pytest.mark.parametrize("make", [
    lambda: np.arange(1000.0)[::3],                       # strided view
    lambda: np.asfortranarray(np.arange(600).reshape(20, 30)),
    lambda: np.arange(600).reshape(20, 30).T,
    lambda: np.arange(24).reshape(2, 3, 4)[:, ::2, 1:],
    lambda: np.zeros(0),
], ids=["strided", "fortran", "transposed", "sliced-3d", "empty"])
def test_non_contiguous_and_empty_arrays_round_trip(make):
    source = make()
    _, block = written(source)
    result = deserialize(bytes(block))
    np.testing.assert_array_equal(result, source)
    assert result.shape == source.shape and result.dtype == source.dtype


@pytest.mark.parametrize("make", [
    lambda: np.zeros(100),                                # Ray's doc example: 800 bytes
    lambda: np.arange(1000.0)[::3],                       # pickled by value, not a buffer
    lambda: np.asfortranarray(np.arange(600).reshape(20, 30)),
    lambda: np.array([1, "a", None], dtype=object),
    lambda: [np.zeros(3), {"deep": np.ones(2)}],          # nested in containers
], ids=["small", "strided", "fortran", "object", "nested"])
@pytest.mark.parametrize("how", ["out-of-band", "in-band"])
def test_every_array_comes_back_read_only(make, how):
    """Whatever its size or layout, and also pickled in-band as a call's arguments are."""
    source = make()
    data = serialize(source).to_bytes() if how == "out-of-band" else serialization.dumps(source)
    result = deserialize(data) if how == "out-of-band" else pickle.loads(data)
    arrays = [result] if isinstance(result, np.ndarray) else [result[0], result[1]["deep"]]
    for array in arrays:
        assert not array.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 1
    assert all(a.flags.writeable for a in ([source] if isinstance(source, np.ndarray)
                                           else [source[0], source[1]["deep"]]))


@pytest.mark.parametrize("source", [
    np.arange(6).astype("datetime64[s]"),
    np.arange(6).astype("timedelta64[ms]"),
    np.zeros(4, dtype=[("x", "f8"), ("n", "i4")]),
    np.array([b"ab", b"cde"]),
    np.array(["ab", "cde"]),
    np.array([True, False]),
    np.arange(4, dtype=np.complex64),
    np.array(7.5),
], ids=["datetime64", "timedelta64", "structured", "bytes", "str", "bool", "complex", "0-d"])
def test_arrays_of_every_plain_dtype_come_back_equal_and_read_only(source):
    """The standard pickler's quick path (serialization._plain_array) keeps what the full
    one gives: the same array, read-only, whatever its dtype."""
    result = deserialize(serialize(source).to_bytes())
    np.testing.assert_array_equal(result, source)
    assert result.dtype == source.dtype and result.shape == source.shape
    assert not result.flags.writeable


def test_subclasses_keep_their_own_pickling():
    masked = np.ma.masked_array([1, 2, 3], mask=[0, 1, 0])
    result = pickle.loads(serialization.dumps(masked))
    assert isinstance(result, np.ma.MaskedArray) and result.mask.tolist() == [0, 1, 0]


def test_fortran_order_is_kept():
    source = np.asfortranarray(np.arange(600.0).reshape(20, 30))
    _, block = written(source)
    assert deserialize(memoryview(block)).flags.f_contiguous


# -- plain Python values -----------------------------------------------------------------

@pytest.mark.parametrize("value", [
    None, 0, -7, 3.5, "text", "ünïcode ✓", b"\x00bytes", [], [1, [2, [3]]], (1, "a"),
    {"a": 1, "nested": {"b": [None, 2.0]}}, {1, 2, 3}, "x" * 300_000,
], ids=lambda value: type(value).__name__)
def test_python_values_round_trip_inline(value):
    data = serialize(value).to_bytes()
    assert deserialize(data) == value


def test_nbytes_is_the_length_of_the_layout():
    for value in (None, "abc", np.arange(1001, dtype=np.uint8), {"x": np.ones(3)}):
        serialized = serialize(value)
        assert len(serialized.to_bytes()) == serialized.nbytes


def test_write_into_a_larger_block_ignores_the_tail():
    serialized = serialize([1, 2, 3])
    block = bytearray(serialized.nbytes + 4096)
    serialized.write_into(memoryview(block))
    assert deserialize(memoryview(block)) == [1, 2, 3]


def test_functions_and_lambdas_round_trip_with_cloudpickle():
    scale = 3
    double = deserialize(serialize(lambda x: x * scale).to_bytes())
    assert double(2) == 6


def test_wrap_buffer_sees_every_buffer_once():
    _, block = written([np.ones(10), np.zeros(20)])
    seen = []

    def wrap(view: memoryview) -> memoryview:
        seen.append(view.nbytes)
        return view

    deserialize(memoryview(block), wrap)
    assert seen == [80, 160]


# -- errors ------------------------------------------------------------------------------

def test_bad_magic_is_a_deserialization_error():
    data = bytearray(serialize("hello").to_bytes())
    data[:4] = b"NOPE"
    with pytest.raises(plait.DeserializationError, match="bad magic"):
        deserialize(bytes(data))


def test_corrupt_stream_is_a_deserialization_error():
    data = bytearray(serialize({"a": 1}).to_bytes())
    _, _, stream_len = struct.unpack_from("<4sIQ", data)
    start = len(data) - stream_len
    data[start:] = b"\xff" * stream_len
    with pytest.raises(plait.DeserializationError, match="could not be unpickled"):
        deserialize(bytes(data))


def test_unpicklable_value_is_a_serialization_error_naming_its_type():
    with pytest.raises(plait.SerializationError, match="type lock") as info:
        serialize(threading.Lock())
    assert isinstance(info.value, TypeError)
    with pytest.raises(plait.SerializationError,
                       match=r"type dict \(it holds a lock at \['a'\]\[0\]\)"):
        serialize({"a": [threading.Lock()], "b": 1})


def test_large_layout_round_trips_through_the_parallel_copy():
    source = np.arange(PARALLEL_COPY_BYTES // 8 + 123, dtype=np.float64)
    assert source.nbytes > PARALLEL_COPY_BYTES
    _, block = written(source)
    np.testing.assert_array_equal(deserialize(memoryview(block)), source)


class _Locked:
    """Unpicklable as it is (a lock): only a registered serializer pickles it."""

    def __init__(self, value):
        self.value, self.lock = value, threading.Lock()


def _rebuilt(value):
    return ("rebuilt", value)


def test_a_registered_serializer_pickles_its_class_and_the_data_carries_its_deserializer():
    plait.util.register_serializer(_Locked, serializer=lambda o: o.value,
                                   deserializer=_rebuilt)
    try:
        data = serialization.dumps({"k": [_Locked(7)]})
        serialization.deregister_serializer(_Locked)     # a reader that never registered it
        assert pickle.loads(data) == {"k": [("rebuilt", 7)]}
        with pytest.raises(plait.SerializationError):
            serialization.serialize(_Locked(7))
    finally:
        serialization.deregister_serializer(_Locked)
    with pytest.raises(TypeError):
        plait.util.register_serializer(_Locked(1), serializer=str, deserializer=str)
