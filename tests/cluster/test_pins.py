"""A driver's pins: one per zero-copy view, kept for a get of the same object, never lost.

An object a view reads may not spill or move while the view lives; once every view is gone
(and the session has made its next call) it may. A get of an object whose earlier view just
died takes that view's pin instead of asking the head again (driver/reading.py).
"""

from __future__ import annotations

import gc
import re
import sys

import numpy as np
import pytest

import plait
from plait.graph import context
from tests.netns import wait_until

pytestmark = pytest.mark.cluster

MIB = 1 << 20


@pytest.fixture
def quiet_store(fresh):
    """small_store's cluster, but the session's idle flusher waits an hour: whatever it
    sends in a test is sent by a call, so which messages a call sends can be told."""
    plait.init(num_workers=1, store_memory=64 << 20, submit_after_idle=3600.0)
    yield


def pinned_mib() -> float:
    """node-0's pinned bytes, as memory_summary reports them."""
    text = plait.memory_summary(stats_only=True)
    size, unit = re.search(r"([\d.]+) (B|KiB|MiB|GiB) pinned", text).groups()
    return float(size) * {"B": 1, "KiB": 1 << 10, "MiB": MIB, "GiB": 1 << 30}[unit] / MIB


def fill_store() -> list:
    """Puts that need the whole store: every object not pinned spills to make room."""
    return [plait.put(np.full(2 * MIB, 9.0)) for _ in range(8)]       # 8 x 16 MiB


def sent_by_session() -> list[str]:
    """The names of the messages this session sends from now on."""
    session = context.active()
    sent: list[str] = []
    send = session.conn.send

    def recording(message):
        sent.append(type(message).__name__)
        return send(message)

    session.conn.send = recording
    return sent


def test_a_repeated_get_of_an_object_on_this_host_sends_no_message(quiet_store):
    ref = plait.put(np.arange(2 * MIB, dtype=np.float64))
    view = plait.get(ref)
    del view
    sent = sent_by_session()
    for i in range(50):
        view = plait.get(ref)
        assert view[i] == i
        del view
    assert sent == []
    plait.put(0)                                  # the next call gives the last pin back
    assert "Unpin" in sent
    assert pinned_mib() == 0
    assert context.active().validate_state(10) == ()


def test_a_view_on_a_kept_pin_stays_valid_while_the_store_spills_around_it(small_store):
    ref = plait.put(np.full(2 * MIB, 5.0))
    first = plait.get(ref)
    del first
    view = plait.get(ref)                          # on the pin the first view left
    others = fill_store()
    assert view[0] == 5.0 and view[-1] == 5.0 and len(others) == 8
    assert pinned_mib() == 16


def test_once_its_views_are_gone_an_object_may_spill_and_comes_back_equal(small_store):
    ref = plait.put(np.full(2 * MIB, 5.0))
    for _ in range(3):
        view = plait.get(ref)
        del view
    others = fill_store()                          # a call: the pin goes back first
    assert pinned_mib() == 0
    assert plait.get(ref)[-1] == 5.0 and len(others) == 8


def test_each_view_of_a_get_that_names_a_ref_twice_has_a_pin_of_its_own(small_store):
    ref = plait.put(np.full(2 * MIB, 5.0))
    a, b = plait.get([ref, ref])
    keep = plait.get(ref)
    del a, b
    gc.collect()
    others = fill_store()                          # two Unpins go: keep's pin stays
    assert keep[0] == 5.0 and keep[-1] == 5.0 and len(others) == 8
    assert pinned_mib() == 16
    assert context.active().validate_state(10) == ()


def test_pins_a_get_did_not_use_are_given_back(small_store):
    ref = plait.put(np.full(2 * MIB, 5.0))
    views = [plait.get(ref) for _ in range(3)]
    del views                                      # three pins kept, one taken below
    view = plait.get(ref)
    assert pinned_mib() == 16
    del view
    plait.put(0)
    assert pinned_mib() == 0
    assert context.active().validate_state(10) == ()


def test_a_kept_pin_of_a_dropped_ref_is_given_back_before_its_free(small_store):
    ref = plait.put(np.full(2 * MIB, 5.0))
    view = plait.get(ref)
    del view, ref
    gc.collect()
    plait.put(0)
    assert pinned_mib() == 0
    assert "0 objects in the store" in plait.memory_summary(stats_only=True)   # put(0): inline
    assert context.active().validate_state(10) == ()


def test_the_first_get_after_a_put_reads_on_the_puts_pin_and_sends_no_message(quiet_store):
    arr = np.arange(2 * MIB, dtype=np.float64)
    ref = plait.put(arr)
    sent = sent_by_session()
    view = plait.get(ref)
    assert sent == []
    assert np.array_equal(view, arr) and not view.flags.writeable
    assert pinned_mib() == 16                      # the view's pin, once
    del view
    plait.put(0)
    assert sent.count("Unpin") == 1 and pinned_mib() == 0
    assert context.active().validate_state(10) == ()


def test_a_put_not_read_gives_its_pin_back_with_the_next_call_and_may_spill(quiet_store):
    ref = plait.put(np.full(2 * MIB, 5.0))
    sent = sent_by_session()
    others = fill_store()                          # the first of these puts sends the Unpin
    assert sent[0] == "Unpin" and pinned_mib() == 0
    assert plait.get(ref)[-1] == 5.0 and len(others) == 8
    assert context.active().validate_state(10) == ()


def test_a_put_dropped_at_once_gives_its_pin_back_before_its_free(quiet_store):
    ref = plait.put(np.full(2 * MIB, 5.0))
    del ref
    gc.collect()
    sent = sent_by_session()
    plait.put(0)
    assert sent[:2] == ["Unpin", "Free"]
    assert pinned_mib() == 0
    # the head turns the Free into the node's delete on its own loop turn: a summary asked
    # at once may come first (seen at load 11), so the store is read until it empties
    wait_until(lambda: "0 objects in the store" in plait.memory_summary(stats_only=True),
               10.0, "the dropped put's object to leave the store")
    assert context.active().validate_state(10) == ()


@plait.remote
def put_in_task(n: int):
    """A task's own put, its ref returned inside a list (kept alive by the result)."""
    ref = plait.put(np.full(n, 3.0))
    assert plait.get(ref)[0] == 3.0
    return [ref]


def test_a_put_in_a_task_gives_its_pin_back(small_store):
    (inner,) = plait.get(put_in_task.remote(2 * MIB))
    assert plait.get(inner)[-1] == 3.0
    del inner
    plait.put(0)
    assert pinned_mib() == 0
    assert context.active().validate_state(10) == ()


def test_puts_of_one_size_write_into_the_block_the_last_put_asked_for_ahead(quiet_store):
    """A put of the size of the put before it asks, once written, for a block of its
    size for the next put (which then waits for no answer); a put of another size gives
    that block back and asks none. An object written into a block asked for by another
    put is reported as its own."""
    sent = sent_by_session()
    first = [plait.put(np.full(64 * 1024 - 8, float(i))) for i in range(3)]   # 512 KiB-64
    blocks = lambda: [name for name in sent if name != "Unpin"]   # noqa: E731 (put's pin)
    assert blocks() == ["Alloc", "Seal", "Alloc", "Seal", "Alloc", "Seal", "Alloc"]
    again = plait.put(np.full(64 * 1024, 3.0)); line = sys._getframe().f_lineno  # noqa: E702
    # (64 bytes more than the first three: the same 4 KiB-aligned block)
    sent.clear()
    other = plait.put(np.full(96 * 1024, 7.0))                               # 768 KiB
    assert blocks() == ["Abandon", "Alloc", "Seal"]
    sent.clear()
    second = plait.put(np.full(96 * 1024, 8.0))     # a second of its size: asks a spare
    assert blocks() == ["Alloc", "Seal", "Alloc"]
    assert [float(plait.get(r)[0]) for r in first] == [0.0, 1.0, 2.0]
    assert float(plait.get(again)[0]) == 3.0 and float(plait.get(other)[-1]) == 7.0
    assert float(plait.get(second)[0]) == 8.0
    summary = plait.memory_summary()
    assert "6 objects in the store" in summary and " reserved " in summary
    assert re.search(rf"^\s+{again.id} .* created by test_pins.py:{line}$", summary, re.M)
    assert context.active().validate_state(10) == ()
