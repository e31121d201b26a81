"""benchmarks/systems.py reads plait's own memory report: pure, no cluster.

Its parser fell behind a change of the report's wording (48ae121) and W6, W7 and W9 failed
for plait in every full benchmark run after it, unseen until a run's table showed ERR.
"""

from __future__ import annotations

import pytest

from plait.store.report import format_memory
from plait.store.store import StoreSummary
from tests.conftest import benchmark_module


@pytest.fixture(scope="module")
def systems():
    with benchmark_module("systems") as module:
        yield module


@pytest.mark.parametrize("spilled, objects", [(0, 0), (1 << 30, 1), (3 << 29, 5)])
def test_the_spill_figures_are_read_off_plaits_memory_report(systems, spilled, objects):
    summary = StoreSummary("node-0", 1 << 30, 768 << 20, 0, 8, spilled, objects, 0.7, 2.34,
                           (), spilled_total=3 << 30, restored_total=1536)
    text = format_memory([summary])
    size, unit, count, spill, restore = systems._PLAIT_SPILLED.search(text).groups()
    assert float(size) * systems._UNITS[unit] == spilled
    assert (int(count), float(spill), float(restore)) == (objects, 0.7, 2.34)
