"""Values <-> bytes, with large buffers kept out of band so reads are zero-copy.

Every stored object has one layout, whether it sits in a node's shared-memory arena or
travels inline inside a message::

    offset 0   header   magic "PLT1", buffer count n, pickle length      (16 bytes)
               lengths  n x uint64: the size of each out-of-band buffer
    aligned    pickle   the cloudpickle protocol-5 stream (small: metadata, small values)
    aligned    buffer 0 ... buffer n-1, each starting on a 64-byte boundary

Reading maps the bytes and hands the buffers to ``pickle.loads(buffers=...)`` as slices of
a read-only view: numpy arrays come back zero-copy and read-only, in constant time
whatever their size. Writing copies each buffer once (``plait.store.copying``).

Every numpy array that comes out of the object system is read-only, at every size and
however it travelled (as in Ray): out of band (above), inside a small call's pickled
arguments (``dumps``: the buffer is pickled in-band as ``bytes``, not ``bytearray``), or
pickled by value because numpy cannot hand out its buffer (a strided view, object dtype:
the rebuilt array is marked read-only). Code that passes on small data then fails on big
data, because only big arrays were read-only, is the worst kind of bug.
"""

from __future__ import annotations

import io
import pickle
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cloudpickle

from plait.errors import DeserializationError, SerializationError, unpicklable_part
from plait.store.copying import copy_bytes

# Objects whose whole layout is at most this many bytes travel inline in messages rather
# than through a store (Ray's max_direct_call_object_size is also 100 KiB).
INLINE_THRESHOLD = 100 * 1024

ALIGNMENT = 64
_MAGIC = b"PLT1"
_HEADER = struct.Struct("<4sIQ")          # magic, buffer count, pickle length


@dataclass(frozen=True, slots=True)
class Serialized:
    """A pickled value waiting to be written: the stream and its out-of-band buffers."""

    stream: bytes
    buffers: tuple[memoryview, ...]

    @property
    def nbytes(self) -> int:
        """Size of the whole layout, header to the end of the last buffer."""
        end = _align(_HEADER.size + 8 * len(self.buffers)) + len(self.stream)
        for buffer in self.buffers:
            end = _align(end) + buffer.nbytes
        return end

    def write_into(self, target: memoryview) -> None:
        """Lay the object out at the start of ``target`` (at least ``nbytes`` long)."""
        lengths = [b.nbytes for b in self.buffers]
        target[:_HEADER.size] = _HEADER.pack(_MAGIC, len(lengths), len(self.stream))
        table = struct.pack(f"<{len(lengths)}Q", *lengths)
        target[_HEADER.size:_HEADER.size + len(table)] = table
        offset = _align(_HEADER.size + len(table))
        target[offset:offset + len(self.stream)] = self.stream
        offset += len(self.stream)
        for buffer in self.buffers:
            offset = _align(offset)
            copy_bytes(target[offset:offset + buffer.nbytes], buffer)
            offset += buffer.nbytes

    def to_bytes(self) -> bytes:
        """The layout as one bytes object (for inline objects)."""
        out = bytearray(self.nbytes)
        self.write_into(memoryview(out))
        return bytes(out)


def serialize(value: Any) -> Serialized:
    """Pickle ``value`` (cloudpickle, protocol 5); large buffers stay out of band, uncopied."""
    buffers: list[memoryview] = []

    def keep(buffer: pickle.PickleBuffer) -> None:
        buffers.append(buffer.raw())

    try:
        stream = None
        if _plain_array(value):
            stream = pickle.dumps(value, protocol=5, buffer_callback=keep)
            if not buffers:    # numpy pickled it by value (datetimes): only the full path
                stream = None  # below has it rebuilt read-only
        if stream is None:
            stream = dumps(value, buffer_callback=keep)
    except Exception as error:
        path, part = unpicklable_part(value, dumps)
        held = f" (it holds a {type(part).__name__} at {path})" if path else ""
        raise SerializationError.of(f"a value of type {type(value).__name__}{held} cannot be "
                                    f"serialised: {error}", error) from error
    return Serialized(stream, tuple(buffers))


def _plain_array(value: Any) -> bool:
    """Whether ``value`` is a numpy array the standard pickler writes as ``dumps`` would,
    in half the time (a put's pickling after a pause: 0.10 against 0.20 ms): exactly an
    ndarray, contiguous, holding no Python objects, with no serializer registered for it.
    Its buffer goes out of band, so it comes back read-only as every array does; one that
    numpy pickles by value instead is pickled again the full way (``serialize``)."""
    numpy = sys.modules.get("numpy")
    return (numpy is not None and type(value) is numpy.ndarray
            and not value.dtype.hasobject
            and (value.flags.c_contiguous or value.flags.f_contiguous)
            and numpy.ndarray not in _SERIALIZERS)


def dumps(value: Any, buffer_callback: Callable[[pickle.PickleBuffer], Any] | None = None
          ) -> bytes:
    """cloudpickle (protocol 5), with every numpy array marked to come back read-only.

    Without ``buffer_callback`` buffers are pickled in-band (a call's small arguments).
    Where numpy is not imported no array can be in ``value``: plain cloudpickle is used.
    """
    numpy = sys.modules.get("numpy")
    with io.BytesIO() as file:
        if numpy is None and not _SERIALIZERS:
            cloudpickle.Pickler(file, protocol=5, buffer_callback=buffer_callback).dump(value)
        else:
            _Pickler(file, numpy.ndarray if numpy else None, buffer_callback).dump(value)
        return file.getvalue()


# Classes pickled the user's way (``plait.util.register_serializer``, Ray's): an instance
# becomes ``(deserializer, (serializer(instance),))``, the deserializer pickled by value
# when it is the script's own, so a process that never registered it reads it too, as in
# Ray; only this process's own pickling uses the registration.
_SERIALIZERS: dict[type, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {}


def register_serializer(cls: type, *, serializer: Callable[[Any], Any],
                        deserializer: Callable[[Any], Any]) -> None:
    """Pickle instances of exactly ``cls`` as ``serializer(instance)``, rebuilt by
    ``deserializer`` (Ray's ``ray.util.register_serializer``)."""
    if not isinstance(cls, type):
        raise TypeError(f"register_serializer takes a class, not {type(cls).__name__}")
    if not (callable(serializer) and callable(deserializer)):
        raise TypeError("register_serializer needs callable serializer and deserializer")
    _SERIALIZERS[cls] = (serializer, deserializer)


def deregister_serializer(cls: type) -> None:
    """Pickle ``cls`` as before ``register_serializer`` (nothing if it was not)."""
    _SERIALIZERS.pop(cls, None)


class _Pickler(cloudpickle.Pickler):
    """cloudpickle, with numpy arrays reduced so that they are rebuilt read-only, and the
    registered classes by their own serializers.

    Only exact ``ndarray``s: a subclass (masked arrays, matrices) keeps its own reduction.
    """

    def __init__(self, file: io.BytesIO, ndarray: type | None,
                 buffer_callback: Callable[[pickle.PickleBuffer], Any] | None) -> None:
        super().__init__(file, protocol=5, buffer_callback=buffer_callback)
        self.ndarray = ndarray

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is self.ndarray:
            return _read_only_reduction(obj)
        custom = _SERIALIZERS.get(kind) if _SERIALIZERS else None
        if custom is not None:
            serializer, deserializer = custom
            return deserializer, (serializer(obj),)
        return super().reducer_override(obj)


def _read_only_reduction(array: Any) -> tuple:
    """numpy's own reduction of ``array``, changed so the rebuilt array is read-only.

    Contiguous arrays reduce to ``(_frombuffer, (PickleBuffer, dtype, shape, order))``:
    the buffer is offered read-only, so out of band it is a slice of a read-only view and
    in-band it is pickled as ``bytes``; numpy builds a read-only array on either, with no
    copy beyond the one pickling always made. Others (strided views, object dtype) are
    pickled by value and marked read-only once rebuilt (``_set_state_read_only``).
    """
    reduction = array.__reduce_ex__(5)
    rebuild, args = reduction[0], reduction[1]
    if len(reduction) == 2 and args and isinstance(args[0], pickle.PickleBuffer):
        return rebuild, (pickle.PickleBuffer(memoryview(args[0]).toreadonly()), *args[1:])
    return rebuild, args, reduction[2], None, None, _set_state_read_only


def _set_state_read_only(array: Any, state: Any) -> None:
    """Unpickling: fill an array pickled by value, then forbid writes to it."""
    array.__setstate__(state)
    array.flags.writeable = False


def deserialize(data: memoryview | bytes,
                wrap_buffer: Callable[[memoryview], Any] | None = None) -> Any:
    """Rebuild a value from its layout; buffers are read-only slices of ``data`` (no copy).

    ``wrap_buffer`` may wrap each buffer slice, so a caller can learn (by a finalizer on
    the wrapper) when the last array viewing the memory is gone.
    """
    view = memoryview(data).toreadonly()
    stream, buffers = split_layout(view)
    if wrap_buffer is not None:
        buffers = [wrap_buffer(b) for b in buffers]
    try:
        return pickle.loads(stream, buffers=buffers)
    except Exception as error:
        raise DeserializationError(f"an object could not be unpickled: {error!r}") from error


def split_layout(view: memoryview) -> tuple[memoryview, list[memoryview]]:
    """The pickle stream and buffer slices of a layout (views into ``view``)."""
    if view.nbytes < _HEADER.size:
        raise DeserializationError(f"not a plait object: {view.nbytes} bytes is too short")
    magic, count, stream_len = _HEADER.unpack_from(view, 0)
    if magic != _MAGIC:
        raise DeserializationError("not a plait object: bad magic (memory reused or corrupt?)")
    if _HEADER.size + 8 * count > view.nbytes:
        raise DeserializationError(f"corrupt plait object: {count} buffers cannot fit")
    lengths = struct.unpack_from(f"<{count}Q", view, _HEADER.size)
    if _align(_HEADER.size + 8 * count) + stream_len + sum(lengths) > view.nbytes:
        raise DeserializationError("corrupt plait object: its parts overrun its length")
    offset = _align(_HEADER.size + 8 * count)
    stream = view[offset:offset + stream_len]
    offset += stream_len
    buffers = []
    for length in lengths:
        offset = _align(offset)
        buffers.append(view[offset:offset + length])
        offset += length
    return stream, buffers


def _align(offset: int) -> int:
    """Round up to the next multiple of ALIGNMENT.

    >>> _align(0), _align(1), _align(64), _align(65)
    (0, 64, 64, 128)
    """
    return -(-offset // ALIGNMENT) * ALIGNMENT
