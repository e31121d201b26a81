"""Task bodies shared by every system.

They live in their own small module (not in ``run.py``) so that every system
pickles them *by reference*: the benchmark child puts this directory on
``PYTHONPATH``, worker processes inherit it and import the module once.  That
keeps per-task serialization cost identical and minimal across systems.
"""

import numpy as np


def noop(i=None):
    """W3: measures pure scheduling overhead."""
    return None


def inc(x):
    """W4: one hop of a dependent chain."""
    return x + 1


def compute(x, y):
    """W2: the Ray tutorial's seed task."""
    return int(np.matmul(x, y).sum())


def total(x):
    """W5: reads a large shared array (zero-copy where the system allows)."""
    return float(x.sum())


MiB = 1 << 20


def make_block(nbytes, tag):
    """W10, W12: a float64 array of ``nbytes`` (a multiple of 1 MiB), made on the node
    that runs the task: one random MiB tiled (0.12 s for 512 MiB, where drawing it all
    takes 1.2 s; no system here compresses, so the repeat buys nobody anything), with
    element 0 set to ``tag`` so a reader can tell which object it got."""
    block = np.random.default_rng(int(tag)).random(MiB // 8)
    out = np.tile(block, nbytes // MiB)
    out[0] = tag
    return out


def first_element(x):
    """W10: the consumer reads one element, so its time is the transfer's, not a scan's."""
    return float(x[0])


def seed_compute(x, y, big):
    """W11: the seed task (W2's ``compute``) also reading one element of a large input,
    and saying where it ran (see ``where``)."""
    return int(np.matmul(x, y).sum()) + int(big[0]), where()


def where():
    """Which node runs the calling task: Ray's node id, a Dask worker's address, plait's
    node id (``plait.get_runtime_context()``), or else the worker's pid (W11 runs one
    worker per node)."""
    import os
    import sys

    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    if "distributed" in sys.modules:
        from distributed import get_worker

        try:
            return get_worker().address
        except ValueError:
            pass
    if "plait" in sys.modules:
        import plait

        try:
            return plait.get_runtime_context().get_node_id()
        except Exception:   # an older plait without it
            pass
    return os.getpid()


def mapper(x, i):
    """W12: a map task over one of the big inputs (compiled, never run)."""
    return i


def reducer(acc, value):
    """W12: one link of the reduce chain (compiled, never run)."""
    return acc + value


class Counter:
    """W13: the smallest stateful actor (one int of state, one method)."""

    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n


_TREES = {}


def tree(system, depth):
    """W14: a task that submits two children and waits for them, ``depth`` levels deep
    (Ray's tree-of-tasks pattern): 2**depth leaves, 2**depth - 1 tasks blocked in get."""
    if depth == 0:
        return 1
    if system == "dask":
        from distributed import worker_client

        with worker_client() as client:       # secedes from the thread pool while waiting
            children = [client.submit(tree, system, depth - 1, pure=False) for _ in range(2)]
            return sum(client.gather(children))
    module = __import__(system)
    remote = _TREES.get(system) or _TREES.setdefault(system, module.remote(tree))
    return sum(module.get([remote.remote(system, depth - 1) for _ in range(2)]))
