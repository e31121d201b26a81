"""One adapter per system, so every workload is written once.

Each adapter maps the common vocabulary (start/put/get/submit/map/stop) onto
the system's idiomatic API.  Differences that matter for reading the numbers
are stated in the docstrings (and in README.md).
"""

import logging
import os
import re
from dataclasses import dataclass

# Ray and Dask get a fixed 2 worker processes (the reference machine has 2
# cores); plait.init() starts one worker per CPU, which is the same there.
NUM_WORKERS = 2


class Unsupported(Exception):
    """The system has no equivalent of what a workload needs: its cells show n/a."""


class System:
    """Common interface.  ``load`` imports the package (timed separately from
    ``start`` so W8 can report a true cold init)."""

    name = "?"
    version = "?"

    def load(self):
        raise NotImplementedError

    def start(self, store_memory=None):
        """Start a local cluster; ``store_memory`` (bytes) bounds the object
        store, which then spills to the system's default spill directory."""
        raise NotImplementedError

    def stop(self):
        raise NotImplementedError

    def spill_report(self):
        """What the system itself reports about spilling (a ``SpillReport``),
        or None when it reports nothing we can read."""
        return None

    def put(self, value):
        raise NotImplementedError

    def get(self, refs, timeout):
        """One value for one ref, a list of values for a list of refs."""
        raise NotImplementedError

    def submit(self, fn, *args):
        raise NotImplementedError

    def map(self, fn, items):
        """Submit ``fn(item)`` for each item; systems with a batch API override."""
        return [self.submit(fn, item) for item in items]


@dataclass(frozen=True)
class SpillReport:
    """A system's own spill figures.  The rates are cumulative over the session;
    ``spilled_bytes``/``spilled_objects`` are what is spilled right now."""

    spill_gbps: float
    restore_gbps: float
    spilled_bytes: float
    spilled_objects: int


class _RemoteCache:
    """Wraps each task function once (``plait.remote`` / ``ray.remote``), as a
    user would with a decorator, instead of re-wrapping on every call."""

    def __init__(self, wrap):
        self._wrap, self._cache = wrap, {}

    def __call__(self, fn):
        remote = self._cache.get(fn)
        if remote is None:
            remote = self._cache[fn] = self._wrap(fn)
        return remote


class Plait(System):
    name = "plait"

    def load(self):
        import plait

        missing = [a for a in ("init", "put", "get", "remote", "shutdown") if not hasattr(plait, a)]
        if missing:  # e.g. a half-written checkout imported as a namespace package
            raise ImportError(f"plait ({plait.__path__}) lacks {', '.join(missing)}")
        self.plait = plait
        self.version = getattr(plait, "__version__", "?")
        self.remote = _RemoteCache(plait.remote)

    def start(self, store_memory=None):
        if store_memory is None:
            self.plait.init()
        else:  # spills to a fresh directory under the temp dir (plait's default)
            self.plait.init(store_memory=store_memory)

    def stop(self):
        self.plait.shutdown()

    def spill_report(self):
        """Parsed from ``plait.memory_summary(stats_only=True)``, whose line reads
        ``spilled: 1.0 GiB in 4 objects (spill 1.23 GB/s, restore 2.34 GB/s)``."""
        text = self.plait.memory_summary(stats_only=True)
        m = _PLAIT_SPILLED.search(text)
        if m is None:
            raise ValueError(f"no spill figures in plait.memory_summary(): {text!r}")
        size, unit, objects, spill, restore = m.groups()
        return SpillReport(float(spill), float(restore),
                           float(size) * _UNITS[unit], int(objects))

    def put(self, value):
        return self.plait.put(value)

    def get(self, refs, timeout):
        return self.plait.get(refs, timeout=timeout)

    def submit(self, fn, *args):
        return self.remote(fn).remote(*args)


_PLAIT_SPILLED = re.compile(
    r"spilled: ([\d.]+) (GiB|MiB|KiB|B) in (\d+) objects "
    r"\(spill ([\d.]+) GB/s, restore ([\d.]+) GB/s\)")
_UNITS = {"GiB": 1 << 30, "MiB": 1 << 20, "KiB": 1 << 10, "B": 1}


class Ray(System):
    """ray.get of a numpy array is zero-copy (a read-only view on plasma).

    With ``store_memory`` Ray spills to /tmp/ray/session_*/ (its default).
    No ``spill_report``: Ray's own figures come from
    ``ray._private.internal_api.memory_summary``, an internal API that needs
    grpcio, which the ray wheel does not install.
    """

    name = "ray"

    def load(self):
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import ray

        self.ray = ray
        self.version = ray.__version__
        self.remote = _RemoteCache(ray.remote)

    def start(self, store_memory=None):
        bounded = {} if store_memory is None else {"object_store_memory": store_memory}
        self.ray.init(
            num_cpus=NUM_WORKERS,
            include_dashboard=False,
            logging_level=logging.ERROR,
            log_to_driver=False,
            **bounded,
        )

    def stop(self):
        self.ray.shutdown()

    def put(self, value):
        return self.ray.put(value)

    def get(self, refs, timeout):
        return self.ray.get(refs, timeout=timeout)

    def submit(self, fn, *args):
        return self.remote(fn).remote(*args)


class Dask(System):
    """distributed.LocalCluster, 2 worker processes x 1 thread.

    put = ``client.scatter(x, hash=False)`` (hashing would tokenize, i.e. read,
    the whole array first); get = ``future.result()`` / ``client.gather``,
    which copies the data back over TCP.  Tasks use ``pure=False`` so repeated
    calls are really executed.  The scheduler and nannies live in the driver
    process with LocalCluster (matters for W8 memory, which excludes it).

    No bounded store: a Dask worker has a ``memory_limit`` and spills to disk
    at fractions of it (60%/70%), but nothing like one shared store of a given
    size that puts allocate from, so W6, W7 and W9 are n/a.
    """

    name = "dask"

    def load(self):
        import distributed

        self.distributed = distributed
        self.version = distributed.__version__

    def start(self, store_memory=None):
        if store_memory is not None:
            raise Unsupported("Dask has no bounded object store (workers spill at fractions "
                              "of their memory_limit instead)")
        d = self.distributed
        self.cluster = d.LocalCluster(
            n_workers=NUM_WORKERS,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,  # like Ray's include_dashboard=False
            silence_logs=logging.ERROR,
        )
        self.client = d.Client(self.cluster)

    def stop(self):
        self.client.close()
        self.cluster.close()

    def put(self, value):
        return self.client.scatter(value, hash=False)

    def get(self, refs, timeout):
        # client.gather has no timeout; the per-system subprocess timeout in
        # run.py covers hangs, and a wait() here would add a round trip.
        if isinstance(refs, list):
            return self.client.gather(refs)
        return refs.result(timeout=timeout)

    def submit(self, fn, *args):
        return self.client.submit(fn, *args, pure=False)

    def map(self, fn, items):
        return self.client.map(fn, items, pure=False)


SYSTEMS = {cls.name: cls for cls in (Plait, Ray, Dask)}
