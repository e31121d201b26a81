"""The store's large copy: every byte where it belongs, streamed or not, split or not."""

from __future__ import annotations

import platform

import numpy as np
import pytest

from plait.store import copying
from plait.store.copying import PARALLEL_COPY_BYTES, STREAM_COPY_BYTES, copy_bytes

SIZES = [0, 1, 4095, STREAM_COPY_BYTES - 1, STREAM_COPY_BYTES, STREAM_COPY_BYTES + 65,
         PARALLEL_COPY_BYTES - 1, PARALLEL_COPY_BYTES, PARALLEL_COPY_BYTES + 4097,
         2 * PARALLEL_COPY_BYTES + 13]


def pattern(size: int) -> np.ndarray:
    """A prime-length pattern, so a part copied to the wrong offset cannot match by chance."""
    return np.resize(np.arange(251, dtype=np.uint8), size)


@pytest.fixture(params=["streamed", "numpy"])
def way(request, monkeypatch):
    """Each test runs both ways: with the built extension's streaming stores, and as an
    install without a C compiler copies (numpy)."""
    if request.param == "numpy":
        monkeypatch.setattr(copying, "STREAMING", False)
    elif not copying.STREAMING:      # (on x86-64 a test below fails if it was not built)
        pytest.skip("no streaming copy on this machine")
    return request.param


@pytest.mark.parametrize("size", SIZES)
def test_copy_bytes_copies_exactly_size_bytes(way, size):
    source = pattern(size)
    target = np.full(size + 64, 7, dtype=np.uint8)
    copy_bytes(memoryview(target), memoryview(source))
    np.testing.assert_array_equal(target[:size], source)
    assert (target[size:] == 7).all()


@pytest.mark.parametrize("shift", [(1, 0), (0, 3), (17, 40), (63, 1)])
def test_copy_bytes_at_any_alignment(way, shift):
    # the streamed copy writes whole 64-byte lines: a target or source off a line boundary
    # has a head and a tail copied the ordinary way
    at_target, at_source = shift
    size = STREAM_COPY_BYTES + 1000
    source = np.zeros(size + 64, dtype=np.uint8)
    source[at_source:at_source + size] = pattern(size)
    target = np.full(size + 128, 7, dtype=np.uint8)
    copy_bytes(memoryview(target)[at_target:at_target + size],
               memoryview(source)[at_source:at_source + size])
    np.testing.assert_array_equal(target[at_target:at_target + size], pattern(size))
    assert (target[:at_target] == 7).all() and (target[at_target + size:] == 7).all()


@pytest.mark.parametrize("size", [1000, PARALLEL_COPY_BYTES // 8 + 1])
def test_copy_bytes_accepts_typed_multidimensional_sources(way, size):
    source = np.arange(size * 2, dtype=np.float64).reshape(2, size)
    target = np.zeros(source.nbytes, dtype=np.uint8)
    copy_bytes(memoryview(target), memoryview(source))
    np.testing.assert_array_equal(target.view(np.float64).reshape(2, size), source)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="streaming stores are x86-64's")
def test_the_streaming_copy_is_built_on_x86_64():
    # an install that silently lost the extension would only be slower: say so here
    assert copying.STREAMING


@pytest.mark.skipif(copying._copy is None, reason="not built: the test above fails on x86-64")
def test_the_extension_refuses_a_short_or_read_only_target():
    from plait.store import _copy

    with pytest.raises(ValueError, match="shorter than its source"):
        _copy.copy(bytearray(10), b"x" * 11)
    with pytest.raises(TypeError):
        _copy.copy(b"read-only", b"x")
