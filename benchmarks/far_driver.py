#!/usr/bin/env python
"""A driver on another host gets a large object: plait's pull_object (wire/fetch.py).

    python benchmarks/far_driver.py                      # this checkout
    PLAIT_SRC=/tmp/old PYTHONPATH=/tmp/old python /tmp/old/benchmarks/far_driver.py

A head and one node start as processes of their own (systems._PlaitProcesses: each its own
PLAIT_HOST_ID, on loopback TCP; plain, then keyed), and the driver joins with a host id of
its own, so it cannot map either store: a 256 MiB and a 1 GiB array made by a task on
node-1 come to it over TCP. Six gets of each (a fresh object every time, the first taken
as warm-up); the median rate over the other five, in GB/s of the array's size.
"""
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from systems import _PlaitProcesses  # noqa: E402
import numpy as np  # noqa: E402

import plait  # noqa: E402
from plait.executor.wire import hostid  # noqa: E402

SIZES = (256 << 20, 1 << 30)
GETS = 6


@plait.remote
def make(nbytes, i):
    array = np.ones(nbytes, dtype=np.uint8)
    array[0] = i % 256
    return array


def rates(node, nbytes):
    """GB/s of each get of a fresh array made on ``node``."""
    out = []
    for i in range(GETS):
        ref = make.options(node=node).remote(nbytes, i)
        plait.wait([ref], num_returns=1, timeout=None)
        t0 = time.perf_counter()
        value = plait.get(ref, timeout=120)
        seconds = time.perf_counter() - t0
        assert value[0] == i % 256 and value.nbytes == nbytes, "the wrong object came"
        out.append(nbytes / seconds / 1e9)
        del value, ref
        time.sleep(0.3)                 # the node frees the last one
    return out


def main():
    for encrypted in (False, True):
        with _PlaitProcesses(2, encrypted=encrypted) as address:
            os.environ["PLAIT_HOST_ID"] = "far-driver"     # a host of its own
            hostid.host_id.cache_clear()
            plait.init(address=address)
            try:
                node = plait.nodes()[1].id
                for nbytes in SIZES:
                    got = rates(node, nbytes)
                    print(f"{os.path.dirname(plait.__file__)} "
                          f"{'encrypted' if encrypted else 'plain'} {nbytes >> 20} MiB: "
                          f"median {statistics.median(got[1:]):.2f} GB/s "
                          f"({' '.join(f'{r:.2f}' for r in got)})", flush=True)
            finally:
                plait.shutdown()


if __name__ == "__main__":
    main()
