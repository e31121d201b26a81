"""ObjectStore without processes: pins, LRU spilling, restore checks, full-store errors."""

from __future__ import annotations

import os

import pytest

import plait
from plait.store.arena import Arena
from plait.store.spill import Spiller, mapped, write_on_disk
from plait.store.store import ObjectStore

MIB = 1 << 20


@pytest.fixture
def arena():
    made = Arena.create(f"plait-test-{os.getpid()}-store", 4 * MIB)
    yield made
    made.unlink()
    try:
        made.close()
    except BufferError:      # a traceback pytest keeps may still hold a view
        pass


def make_store(arena: Arena, spill_dir, dropped=None) -> ObjectStore:
    spiller = Spiller(str(spill_dir)) if spill_dir is not None else None
    return ObjectStore("node-0", arena, spiller, dropped.append if dropped is not None else
                       (lambda _: None))


def put(store: ObjectStore, object_id: str, fill: int, nbytes: int = MIB,
        replica: bool = False) -> None:
    offset = store.allocate(object_id, nbytes, "test", replica=replica)
    store.arena.block(offset, nbytes)[:] = bytes([fill]) * nbytes
    store.seal(object_id)


def read(store: ObjectStore, object_id: str) -> bytes:
    offset = store.pin(object_id)
    data = bytes(store.arena.block(offset, store.nbytes(object_id)))
    store.unpin(object_id)
    return data


def test_full_store_spills_least_recently_used_and_restores_it(arena, tmp_path):
    store = make_store(arena, tmp_path)
    for i in range(4):
        put(store, f"o{i}", i)
    read(store, "o0")                          # o0 is now more recent than o1
    put(store, "o4", 4)
    summary = store.summary()
    assert summary.spilled_objects == 1
    assert {o.id: o.state for o in summary.largest}["o1"] == "spilled"
    assert read(store, "o1") == bytes([1]) * MIB        # restored, same bytes
    assert all(read(store, f"o{i}") == bytes([i]) * MIB for i in range(5))


def test_pinned_objects_stay_and_a_full_store_says_why(arena, tmp_path):
    store = make_store(arena, tmp_path)
    for i in range(4):
        put(store, f"o{i}", i)
        store.pin(f"o{i}")
    with pytest.raises(plait.ObjectStoreFullError) as caught:
        store.allocate("o5", MIB, "test")
    message = str(caught.value)
    assert "every object in memory is pinned" in message and "o0" in message
    assert "1.0 MiB" in message
    assert isinstance(caught.value, MemoryError)


def test_without_spilling_a_full_store_refuses(arena):
    store = make_store(arena, None)
    for i in range(4):
        put(store, f"o{i}", i)
    with pytest.raises(plait.ObjectStoreFullError, match="spilling is off"):
        store.allocate("o5", MIB, "test")
    assert read(store, "o3") == bytes([3]) * MIB


def test_an_object_larger_than_the_store_is_too_large(arena, tmp_path):
    with pytest.raises(plait.ObjectTooLargeError, match="larger store_memory"):
        make_store(arena, tmp_path).allocate("huge", 5 * MIB, "test")


def test_an_object_larger_than_the_store_lives_in_a_file_of_its_own(arena, tmp_path):
    """Ray's fallback allocation: written to the file the store names, read from it with
    its CRCs checked, never pinned in memory, and its file goes with it."""
    store = make_store(arena, tmp_path)
    data = bytes(range(256)) * (5 * MIB // 256)
    path = store.allocate_on_disk("huge", len(data), "test")
    assert os.path.dirname(path) == str(tmp_path) and store.on_disk("huge") is None  # unsealed
    crc = write_on_disk("huge", path, len(data), lambda view: view.__setitem__(slice(None), data))
    store.seal("huge", crc)
    record = store.on_disk("huge")
    assert record.path == path and record.crc == crc and store.pinned_bytes == 0
    assert bytes(mapped("huge", record)) == data
    with pytest.raises(plait.ObjectTooLargeError):
        store.pin("huge")                        # never in memory: readers use on_disk
    assert store.hold_cost(["huge"]) == 0       # ... so it costs admission nothing
    with open(path, "r+b") as file:              # altered on disk: an error, not data
        file.write(b"x")
    with pytest.raises(plait.ObjectCorruptedError):
        mapped("huge", record)
    store.delete("huge")
    assert not os.path.exists(path)


def test_a_disk_that_cannot_take_an_object_is_a_store_full_error(tmp_path):
    with pytest.raises(plait.ObjectStoreFullError, match="huge.*cannot be written"):
        write_on_disk("huge", str(tmp_path / "gone" / "huge.bin"), MIB, lambda view: None)


def test_without_spilling_an_object_larger_than_the_store_is_refused(arena):
    with pytest.raises(plait.ObjectTooLargeError):
        make_store(arena, None).allocate_on_disk("huge", 5 * MIB, "test")


def test_replicas_are_dropped_before_primaries_spill(arena, tmp_path):
    dropped: list[str] = []
    store = make_store(arena, tmp_path, dropped)
    put(store, "primary", 1)
    put(store, "copy", 2, replica=True)
    put(store, "p2", 3)
    put(store, "p3", 4)
    put(store, "p4", 5)
    assert dropped == ["copy"] and store.summary().spilled_objects == 0


def test_corrupted_spill_file_is_an_error_not_data(arena, tmp_path):
    store = make_store(arena, tmp_path)
    for i in range(5):
        put(store, f"o{i}", i)
    with open(tmp_path / "o0.bin", "r+b") as f:
        f.seek(1000)
        f.write(b"\xff")
    with pytest.raises(plait.ObjectCorruptedError, match="checksum"):
        store.pin("o0")


def test_truncated_or_missing_spill_file(arena, tmp_path):
    store = make_store(arena, tmp_path)
    for i in range(6):
        put(store, f"o{i}", i)
    os.truncate(tmp_path / "o0.bin", 100)
    os.unlink(tmp_path / "o1.bin")
    with pytest.raises(plait.ObjectCorruptedError):
        store.pin("o0")
    with pytest.raises(plait.ObjectLostError, match="gone"):
        store.pin("o1")


def test_unwritable_spill_directory_loses_nothing(arena, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = make_store(arena, blocker / "spill")
    for i in range(4):
        put(store, f"o{i}", i)
    with pytest.raises(plait.ObjectStoreFullError, match="spilling failed.*Not a directory"
                       ) as caught:
        store.allocate("o5", MIB, "test")
    assert all(read(store, f"o{i}") == bytes([i]) * MIB for i in range(4))
    assert "Largest objects held in memory: o0 (1.0 MiB, from test), o1" in str(caught.value)


def test_a_request_a_hair_above_the_free_block_says_so_in_bytes(arena, tmp_path):
    store = make_store(arena, None)
    for i in range(3):
        put(store, f"o{i}", i)
    with pytest.raises(plait.ObjectStoreFullError) as caught:
        store.allocate("o4", MIB + 8, "test")
    assert "cannot fit 1052672 bytes: 1048576 bytes of 4.0 MiB free (largest free block " \
        "1048576 bytes)" in str(caught.value)            # (its block: whole 4 KiB pages)


def test_delete_and_close_remove_spill_files(arena, tmp_path):
    spill = tmp_path / "spill"
    store = make_store(arena, spill)
    for i in range(6):
        put(store, f"o{i}", i)
    assert len(os.listdir(spill)) == 2
    store.delete("o0")
    assert len(os.listdir(spill)) == 1
    store.close()
    assert not spill.exists() and store.allocator.used == 0


def test_many_small_objects_allocate_and_free(arena, tmp_path):
    store = make_store(arena, tmp_path)
    for i in range(900):
        put(store, f"s{i}", i % 256, nbytes=100)
    for i in range(0, 900, 2):
        store.delete(f"s{i}")
    put(store, "big", 7, nbytes=MIB)
    assert read(store, "s1") == bytes([1]) * 100 and read(store, "big") == bytes([7]) * MIB


# -- making room: fragmentation and admission figures --------------------------------------

HALF = MIB // 2


def test_free_pieces_too_small_are_made_whole_by_spilling_the_cheapest_neighbour(arena,
                                                                                 tmp_path):
    store = make_store(arena, tmp_path)
    for i in range(8):                                   # 8 x 0.5 MiB fill the 4 MiB arena
        put(store, f"o{i}", i, HALF)
    for i in (1, 3, 5):                                  # 1.5 MiB free, in 0.5 MiB pieces
        store.delete(f"o{i}")
    store.allocate("big", 3 * HALF, "test")
    spilled = {o.id for o in store.summary(top=10).largest if o.state == "spilled"}
    assert len(spilled) == 1 and spilled < {"o2", "o4"}  # one neighbour, not the LRU o0
    assert all(read(store, f"o{i}") == bytes([i]) * HALF for i in (0, 2, 4, 6, 7))


def test_free_bytes_split_by_pinned_objects_say_so(arena, tmp_path):
    store = make_store(arena, tmp_path)
    for i in range(4):
        put(store, f"o{i}", i)
    store.pin("o1")
    store.pin("o3")
    store.delete("o0")
    store.delete("o2")
    with pytest.raises(plait.ObjectStoreFullError, match="pinned objects split the free"):
        store.allocate("big", 2 * MIB, "test")


def test_pinned_bytes_room_and_hold_cost_follow_pins(arena, tmp_path):
    store = make_store(arena, tmp_path)
    for i in range(6):                                   # 6 MiB into 4: two spill
        put(store, f"o{i}", i)
    assert store.pinned_bytes == 0 and store.room() == 4 * MIB
    assert store.hold_cost(["o0", "o5", "o0", "absent"]) == 2 * MIB
    store.pin("o0")                                      # restored, and pinned
    assert store.pinned_bytes == MIB and store.hold_cost(["o0", "o5"]) == MIB
    store.allocate("new", HALF, "test")                  # born pinned while written
    assert store.pinned_bytes == MIB + HALF and store.room() == 2 * MIB + HALF
    store.seal("new")
    store.unpin("o0")
    store.delete("o5")
    assert store.pinned_bytes == 0
    summary = store.summary()
    assert summary.spilled_total >= 2 * MIB and summary.restored_total == MIB


def middle_pin_store(arena, tmp_path) -> ObjectStore:
    store = make_store(arena, tmp_path)
    put(store, "low", 0, MIB)
    put(store, "input", 1, 3 * HALF)                     # [1, 2.5) MiB: the middle
    put(store, "high", 2, MIB)
    return store


def test_a_pinned_input_in_the_middle_would_split_the_room_for_a_result(arena, tmp_path):
    store = middle_pin_store(arena, tmp_path)
    store.pin("input")
    with pytest.raises(plait.ObjectStoreFullError, match="pinned objects split"):
        store.allocate("result", 2 * MIB, "test")


def test_arrange_moves_a_task_input_to_the_top_so_its_result_fits(arena, tmp_path):
    store = middle_pin_store(arena, tmp_path)
    store.arrange(["input"], 2 * MIB)
    offset = store.pin("input")
    assert offset + 3 * HALF == 4 * MIB                  # at the top, same bytes
    assert bytes(store.arena.block(offset, 3 * HALF)) == bytes([1]) * 3 * HALF
    store.allocate("result", 2 * MIB, "test")
    store.seal("result")
    store.unpin("input")
    assert read(store, "low") == bytes([0]) * MIB and read(store, "high") == bytes([2]) * MIB


def test_arrange_leaves_inputs_alone_when_the_result_fits_anyway(arena, tmp_path):
    store = middle_pin_store(arena, tmp_path)
    store.arrange(["input"], HALF)
    assert store.pin("input") == MIB and store.summary().spilled_total == 0
