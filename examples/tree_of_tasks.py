"""Divide and conquer with tasks that submit tasks: a parallel merge sort.

Each task splits its slice in two, sorts the halves in child tasks, waits for them and
merges. On two workers this has dozens of tasks waiting on their children at once: a
waiting task lends its worker slot to other work, so the recursion never deadlocks.
Written against Ray's API; ``import plait as ray`` is the only plait-specific line.
"""

import numpy as np

import plait as ray

LEAF = 50_000


@ray.remote
def merge_sort(values):
    if len(values) <= LEAF:
        return np.sort(values)
    middle = len(values) // 2
    left, right = ray.get([merge_sort.remote(values[:middle]),
                           merge_sort.remote(values[middle:])])
    return merge(left, right)


def merge(left, right):
    out = np.empty(len(left) + len(right), dtype=left.dtype)
    positions = np.searchsorted(left, right, side="right") + np.arange(len(right))
    mask = np.ones(len(out), dtype=bool)
    mask[positions] = False
    out[positions] = right
    out[mask] = left
    return out


if __name__ == "__main__":
    ray.init(num_cpus=2)
    values = np.random.default_rng(7).integers(0, 1_000_000, size=1_600_000)
    result = ray.get(merge_sort.remote(values))
    print("sorted:", bool(np.all(result[:-1] <= result[1:])))
    print("same values:", bool(np.array_equal(np.sort(values), result)))
    ray.shutdown()
