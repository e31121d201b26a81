"""Process results as they finish with ray.wait, instead of a get per task in order.

Written against Ray's API; ``import plait as ray`` is the only plait-specific line.
"""

import time

import plait as ray


@ray.remote
def measure(item):
    time.sleep(0.05 * (item % 4))          # some items take longer than others
    return item, item * item


if __name__ == "__main__":
    ray.init(num_cpus=2)
    pending = [measure.remote(i) for i in range(12)]
    finished = {}
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        item, square = ray.get(ready[0])
        finished[item] = square            # handle each result as soon as it exists
    print("squares:", [finished[i] for i in range(12)])

    # Bounding the work in flight: at most 4 tasks submitted and not yet done.
    in_flight, total = [], 0
    for i in range(20):
        if len(in_flight) >= 4:
            done, in_flight = ray.wait(in_flight, num_returns=1)
            total += ray.get(done[0])[1]
        in_flight.append(measure.remote(i))
    total += sum(square for _, square in ray.get(in_flight))
    print("sum of squares below 20:", total)
    ray.shutdown()
