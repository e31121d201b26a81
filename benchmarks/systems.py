"""One adapter per system, so every workload is written once.

Each adapter maps the common vocabulary (start/put/get/submit/map/stop) onto
the system's idiomatic API.  Differences that matter for reading the numbers
are stated in the docstrings (and in README.md).
"""

import logging
import os

# Ray and Dask get a fixed 2 worker processes (the reference machine has 2
# cores); plait.init() starts one worker per CPU, which is the same there.
NUM_WORKERS = 2


class System:
    """Common interface.  ``load`` imports the package (timed separately from
    ``start`` so W8 can report a true cold init)."""

    name = "?"
    version = "?"

    def load(self):
        raise NotImplementedError

    def start(self):
        raise NotImplementedError

    def stop(self):
        raise NotImplementedError

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

    def start(self):
        self.plait.init()

    def stop(self):
        self.plait.shutdown()

    def put(self, value):
        return self.plait.put(value)

    def get(self, refs, timeout):
        return self.plait.get(refs, timeout=timeout)

    def submit(self, fn, *args):
        return self.remote(fn).remote(*args)


class Ray(System):
    """ray.get of a numpy array is zero-copy (a read-only view on plasma)."""

    name = "ray"

    def load(self):
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import ray

        self.ray = ray
        self.version = ray.__version__
        self.remote = _RemoteCache(ray.remote)

    def start(self):
        self.ray.init(
            num_cpus=NUM_WORKERS,
            include_dashboard=False,
            logging_level=logging.ERROR,
            log_to_driver=False,
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
    """

    name = "dask"

    def load(self):
        import distributed

        self.distributed = distributed
        self.version = distributed.__version__

    def start(self):
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
