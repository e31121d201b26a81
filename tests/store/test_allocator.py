"""The arena's first-fit allocator (pure bookkeeping) and the /dev/shm arena it manages."""

from __future__ import annotations

import itertools
import os
import random

import numpy as np
import pytest

import plait
from plait.store.allocator import BLOCK_ALIGNMENT, Allocator
from plait.store.arena import SHM_DIR, Arena

B = BLOCK_ALIGNMENT


# -- allocator -----------------------------------------------------------------------------

def test_blocks_are_page_aligned_and_laid_out_from_zero():
    allocator = Allocator(64 * B)
    offsets = [allocator.allocate(n) for n in (1, B, B + 1, 0)]
    assert offsets == [0, B, 2 * B, 4 * B]
    assert [allocator.size_of(o) for o in offsets] == [B, B, 2 * B, B]
    assert allocator.used == 5 * B


def test_capacity_is_rounded_down_to_whole_blocks():
    assert Allocator(10 * B + 100).capacity == 10 * B


def test_first_fit_reuses_the_lowest_freed_block():
    allocator = Allocator(64 * B)
    a, b, c, d = (allocator.allocate(B) for _ in range(4))
    allocator.free(c)
    allocator.free(b)
    assert allocator.allocate(B) == b
    assert allocator.allocate(B) == c
    assert allocator.allocate(B) == 4 * B


def test_freed_neighbours_coalesce_so_their_sum_fits_at_the_first():
    allocator = Allocator(64 * B)
    a, b, c = (allocator.allocate(2 * B) for _ in range(3))
    allocator.free(a)
    allocator.free(b)
    assert allocator.allocate(4 * B) == a
    assert allocator.allocate(1) == c + 2 * B


def test_coalescing_works_in_either_free_order_and_across_three_blocks():
    allocator = Allocator(6 * B)
    a, b, c = (allocator.allocate(2 * B) for _ in range(3))
    allocator.free(c)   # merges with nothing on its right: the arena is full to the end
    allocator.free(a)
    allocator.free(b)   # merges left with a and right with c
    assert allocator.used == 0
    assert allocator.allocate(6 * B) == 0


def test_object_larger_than_the_store_is_too_large():
    allocator = Allocator(8 * B)
    with pytest.raises(plait.ObjectTooLargeError, match="larger than the whole store") as info:
        allocator.allocate(8 * B + 1)
    assert isinstance(info.value, plait.ObjectStoreFullError)
    assert isinstance(info.value, MemoryError)
    assert allocator.used == 0


def test_full_store_raises_store_full_not_too_large():
    allocator = Allocator(4 * B)
    for _ in range(4):
        allocator.allocate(B)
    with pytest.raises(plait.ObjectStoreFullError) as info:
        allocator.allocate(1)
    assert not isinstance(info.value, plait.ObjectTooLargeError)
    assert isinstance(info.value, MemoryError)


def test_fragmented_store_names_the_largest_free_block():
    allocator = Allocator(4 * B)
    blocks = [allocator.allocate(B) for _ in range(4)]
    allocator.free(blocks[0])
    allocator.free(blocks[2])
    with pytest.raises(plait.ObjectStoreFullError,
                       match=f"{2 * B} of {4 * B} bytes are free.*largest free block is {B}"):
        allocator.allocate(2 * B)


def test_freeing_an_unknown_offset_is_our_bug():
    allocator = Allocator(4 * B)
    offset = allocator.allocate(1)
    allocator.free(offset)
    with pytest.raises(KeyError):
        allocator.free(offset)


def test_random_allocations_never_overlap_and_free_space_comes_back_whole():
    rng = random.Random(7)   # fixed seed: the same sequence every run
    allocator = Allocator(256 * B)
    live: dict[int, int] = {}
    for _ in range(2000):
        if live and rng.random() < 0.45:
            offset = rng.choice(sorted(live))
            allocator.free(offset)
            del live[offset]
            continue
        try:
            offset = allocator.allocate(rng.randint(1, 12 * B))
        except plait.ObjectStoreFullError:
            continue
        live[offset] = allocator.size_of(offset)
        spans = sorted(live.items())
        assert all(s + n <= t for (s, n), (t, _) in itertools.pairwise(spans))
        assert spans[-1][0] + spans[-1][1] <= allocator.capacity
        assert allocator.used == sum(live.values())
    for offset in live:
        allocator.free(offset)
    assert allocator.used == 0
    assert allocator.allocate(allocator.capacity) == 0


# -- arena ---------------------------------------------------------------------------------

TEST_PREFIX = f"plait-test-{os.getpid()}-"


def _ours() -> set[str]:
    return {name for name in os.listdir(SHM_DIR) if name.startswith(TEST_PREFIX)}


@pytest.fixture
def arena_name():
    """A fresh segment name; teardown removes the segment and fails if the test leaked one."""
    counter = itertools.count()
    names: list[str] = []

    def make() -> str:
        names.append(f"{TEST_PREFIX}{next(counter)}")
        return names[-1]

    before = _ours()
    yield make
    leaked = _ours() - before
    for name in leaked:
        os.unlink(os.path.join(SHM_DIR, name))
    assert not leaked, f"test left segments behind: {sorted(leaked)}"


def test_create_attach_share_bytes_and_unlink(arena_name):
    name = arena_name()
    created = Arena.create(name, 16 * B)
    assert os.path.exists(created.path) and created.path == os.path.join(SHM_DIR, name)
    assert os.path.getsize(created.path) == 16 * B
    created.block(B, 5)[:] = b"hello"
    attached = Arena.attach(name)
    assert attached.capacity == 16 * B
    assert bytes(attached.block(B, 5)) == b"hello"
    attached.block(0, 3)[:] = b"abc"
    assert bytes(created.block(0, 3)) == b"abc"
    attached.close()
    created.close()
    created.unlink()
    assert not os.path.exists(created.path)
    created.unlink()   # idempotent


def test_segment_is_sparse_until_written(arena_name):
    arena = Arena.create(arena_name(), 1 << 30)
    try:
        assert os.stat(arena.path).st_blocks * 512 < (1 << 20)
    finally:
        arena.close()
        arena.unlink()


def test_names_must_carry_the_plait_prefix():
    with pytest.raises(AssertionError):
        Arena.create("not-plait-test", B)


def test_create_refuses_an_existing_segment(arena_name):
    arena = Arena.create(arena_name(), B)
    try:
        with pytest.raises(FileExistsError):
            Arena.create(arena.name, B)
    finally:
        arena.close()
        arena.unlink()


def test_close_refuses_while_a_zero_copy_view_lives(arena_name):
    arena = Arena.create(arena_name(), 4 * B)
    view = np.frombuffer(arena.block(0, B), dtype=np.uint8)
    with pytest.raises(BufferError):
        arena.close()
    del view
    arena.close()
    arena.unlink()


def test_prefault_is_harmless_on_small_and_large_ranges(arena_name):
    arena = Arena.create(arena_name(), 8 << 20)
    try:
        arena.prefault(0, 100)
        arena.prefault(B + 10, 6 << 20)
        assert bytes(arena.block(B + 10, 4)) == b"\0\0\0\0"
        arena.block(B + 10, 4)[:] = b"data"
        arena.prefault(0, 8 << 20)   # again, over written and already-faulted pages
        assert bytes(arena.block(B + 10, 4)) == b"data"
    finally:
        arena.close()
        arena.unlink()
