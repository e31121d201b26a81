"""Issue 11's store-pressure case: a workload that fits the store must run, spilling as it goes.

    python benchmarks/store_pressure.py [--repeat 3]

One node, one worker, a 64 MiB store. 64 random arrays of 8-24 MiB are put (about 1 GiB:
most spill), 300 random gets check their CRCs, then 16 tasks each read one array and
return its CRC. One worker runs one task at a time and no task reads more than 24 MiB, so
every step fits; before admission by memory the tasks failed with ObjectStoreFullError
(every object in memory pinned by tasks that were queued, not running). Prints the time
of each phase and the bytes spilled and restored (from plait.memory_summary's counters).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout
import plait  # noqa: E402

MIB = 1 << 20


@plait.remote
def checksum(array: np.ndarray) -> int:
    return zlib.crc32(array)


def store_counters() -> tuple[int, int]:
    """Bytes spilled and restored by node-0 since it started."""
    from plait import api

    summary = api.session().memory_summary()[0]
    return summary.spilled_total, summary.restored_total


def run_once(seed: int) -> dict[str, float]:
    plait.init(num_workers=1, store_memory=64 * MIB)
    try:
        rng = np.random.default_rng(seed)
        began = time.perf_counter()
        refs, crcs = [], []
        for _ in range(64):
            array = rng.random(int(rng.integers(8, 25)) * MIB // 8)
            refs.append(plait.put(array))
            crcs.append(zlib.crc32(array))
        put_done = time.perf_counter()
        picks = random.Random(seed)
        for _ in range(300):
            i = picks.randrange(64)
            assert zlib.crc32(plait.get(refs[i])) == crcs[i], f"get {i} came back wrong"
        gets_done = time.perf_counter()
        spilled, restored = store_counters()
        assert plait.get([checksum.remote(r) for r in refs[:16]], timeout=120) == crcs[:16]
        tasks_done = time.perf_counter()
        spilled_after, restored_after = store_counters()
    finally:
        plait.shutdown()
    return {"puts_s": put_done - began, "gets_s": gets_done - put_done,
            "tasks_s": tasks_done - gets_done, "total_s": tasks_done - began,
            "spilled_mib": spilled_after / MIB, "restored_mib": restored_after / MIB,
            "tasks_spilled_mib": (spilled_after - spilled) / MIB,
            "tasks_restored_mib": (restored_after - restored) / MIB}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs = [run_once(seed) for seed in range(args.repeat)]
    print(f"store-pressure case, 64 MiB store, 1 worker, {args.repeat} runs (median, min-max):")
    for key in runs[0]:
        values = [run[key] for run in runs]
        print(f"  {key:20s} {statistics.median(values):8.2f}   "
              f"({min(values):.2f}-{max(values):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
