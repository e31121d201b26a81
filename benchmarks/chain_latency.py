"""W4's chain, looped for a while: per-hop latency from tens of thousands of hops.

``run.py``'s W4 times a few chains of 200 (``--repeat`` of them), whose medians move by
10-30% from run to run on this 2-core machine. This runs chains of 200 dependent
``x + 1`` tasks back to back for ``--seconds`` and reports the mean per hop, to compare two
checkouts by alternating them:

    PYTHONPATH=/path/to/checkout python benchmarks/chain_latency.py --seconds 4
"""

from __future__ import annotations

import argparse
import time

import plait


@plait.remote
def inc(x: int) -> int:
    return x + 1


def chain(hops: int) -> int:
    ref = 0
    for _ in range(hops):
        ref = inc.remote(ref)
    return plait.get(ref, timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--hops", type=int, default=200)
    args = parser.parse_args()
    plait.init()
    try:
        if chain(args.hops) != args.hops:
            raise AssertionError("the chain returned a wrong value")
        start, chains = time.perf_counter(), 0
        while time.perf_counter() - start < args.seconds:
            chain(args.hops)
            chains += 1
        elapsed = time.perf_counter() - start
    finally:
        plait.shutdown()
    print(f"{chains} chains of {args.hops}: {elapsed * 1e3 / (chains * args.hops):.4f} ms "
          f"per hop")


if __name__ == "__main__":
    main()
