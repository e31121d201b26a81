"""Tasks that ask for no CPU or a share of one, on a 2-CPU node: Ray 2.60 against plait.

    python benchmarks/fractional_cpus.py [--rounds 3] [--repeat 5]

Each round starts each system afresh in a child process of its own (Ray, then plait) and
times, after one untimed warm-up batch that starts the workers:

- ``zero``: 200 tasks of ``num_cpus=0`` that each sleep 50 ms (no CPU asked: Ray and plait
  start more workers than CPUs and run many at once; one at a time per CPU would take 5 s);
- ``half``: 40 tasks of ``num_cpus=0.5`` that each sleep 50 ms (four at once on 2 CPUs:
  0.5 s at best, 1 s if each took a whole CPU).

Printed per system and batch: the median seconds over all rounds, and the processes the
last batch ran in.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")   # Ray on 127.0.0.1
os.environ["RAY_ADDRESS"] = "local"                                  # a cluster of its own
BATCHES = (("zero", 0, 200), ("half", 0.5, 40))
NAP_SECONDS = 0.05


def child(system: str, repeat: int) -> dict:
    """Time the batches on ``system`` started in this process."""
    if system == "ray":
        import ray
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    else:
        import plait as ray
        ray.init(num_workers=2)

    def nap(_):
        time.sleep(NAP_SECONDS)
        return os.getpid()

    out = {}
    for name, cpus, count in BATCHES:
        remote = ray.remote(num_cpus=cpus)(nap)
        ray.get([remote.remote(i) for i in range(count)])      # warm-up: workers started
        seconds = []
        for _ in range(repeat):
            began = time.perf_counter()
            pids = ray.get([remote.remote(i) for i in range(count)])
            seconds.append(time.perf_counter() - began)
        out[name] = {"seconds": seconds, "processes": len(set(pids))}
    ray.shutdown()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", choices=("ray", "plait"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.repeat)))
        return
    samples: dict[tuple[str, str], list[float]] = {}
    processes: dict[tuple[str, str], int] = {}
    for _ in range(args.rounds):
        for system in ("ray", "plait"):
            done = subprocess.run([sys.executable, __file__, "--child", system, "--repeat",
                                   str(args.repeat)], capture_output=True, text=True,
                                  timeout=300, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            for name, row in result.items():
                samples.setdefault((system, name), []).extend(row["seconds"])
                processes[system, name] = row["processes"]
    print(f"load average before the last round: {os.getloadavg()[0]:.1f}")
    for name, cpus, count in BATCHES:
        ray_s = statistics.median(samples["ray", name])
        plait_s = statistics.median(samples["plait", name])
        print(f"{count} x num_cpus={cpus} naps of {NAP_SECONDS * 1000:.0f} ms: Ray {ray_s:.3f} s "
              f"({processes['ray', name]} processes), plait {plait_s:.3f} s "
              f"({processes['plait', name]} processes), plait/Ray {plait_s / ray_s:.2f}")


if __name__ == "__main__":
    main()
