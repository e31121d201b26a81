"""One adapter per system, so every workload is written once.

Each adapter maps the common vocabulary (start/put/get/submit/map/stop) onto
the system's idiomatic API.  Differences that matter for reading the numbers
are stated in the docstrings (and in README.md).
"""

import contextlib
import dataclasses
import glob
import itertools
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

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

    # -- actors (W13) ------------------------------------------------------------------------

    ordered_actor_calls = True    # a caller's calls run in the order made (Ray, plait)

    def actor(self, cls, *args):
        """Start an actor of ``cls``; returns its handle."""
        return self.remote(cls).remote(*args)

    def call(self, handle, method, *args):
        """One method call of an actor: a ref (or future) to its result."""
        return getattr(handle, method).remote(*args)

    def get_calls(self, refs, timeout):
        """Results of ``call`` refs (a list)."""
        return self.get(refs, timeout)

    # -- several nodes on this machine (W10-W12): the workload starts and stops them -------

    def cluster(self, nodes, transport="default", lazy=False):
        """Context manager: start ``nodes`` nodes on this machine, one worker each, and
        yield their handles (head first; what ``submit_on`` takes); stop them on exit.

        ``transport`` is how objects move between the nodes: "default" (the system's own
        way between local nodes), "shm" (shared memory), "tcp" (TCP over loopback, not
        encrypted) or "encrypted" (TCP with encryption).  ``Unsupported`` if the system
        has no such setup.
        """
        raise Unsupported(f"{self.name}: no multi-node setup in this benchmark")

    def submit_on(self, node, fn, *args):
        """A task pinned to ``node`` (a handle from ``cluster``)."""
        raise NotImplementedError

    def wait_ready(self, refs):
        """Block until the objects behind ``refs`` exist (where they were made)."""
        raise NotImplementedError

    def trace(self):
        """Context manager yielding a ``Recorded``, filled in on exit with the tasks and
        transfers the system itself reports for the block; yields None when it reports
        none we can read."""
        return contextlib.nullcontext(None)

    # -- the compiler (W12): only plait has one --------------------------------------------

    def map_reduce_graph(self, n_tasks, input_bytes):
        """A hand-built graph and cluster view to compile (see ``Plait``)."""
        raise Unsupported(f"{self.name} has no separate compile step: each task is scheduled "
                          f"as it is submitted")

    def compile_graph(self, graph_and_view):
        raise Unsupported(f"{self.name} has no compile step")

    def compile_refs(self, refs):
        raise Unsupported(f"{self.name} has no compile step")


@dataclass(frozen=True)
class SpillReport:
    """A system's own spill figures.  The rates are cumulative over the session;
    ``spilled_bytes``/``spilled_objects`` are what is spilled right now."""

    spill_gbps: float
    restore_gbps: float
    spilled_bytes: float
    spilled_objects: int


@dataclass(frozen=True)
class TaskTime:
    name: str           # the function's name
    node: str
    seconds: float      # the task's run time (the node's own record)


@dataclass(frozen=True)
class TransferTime:
    nbytes: int
    seconds: float      # the copy alone, as the receiving node recorded it
    src: str
    dst: str

    @property
    def gbps(self):
        return self.nbytes / self.seconds / 1e9


@dataclass
class Recorded:
    """What a system reports about a block of work (see ``System.trace``)."""

    tasks: list = field(default_factory=list)
    transfers: list = field(default_factory=list)

    @property
    def bytes_moved(self):
        return sum(t.nbytes for t in self.transfers)


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
        ``spilled: 1.0 GiB in 4 objects; since start: 1.3 GiB spilled at 0.70 GB/s, 0 B
        restored at 0.00 GB/s`` (plait.store.report; tests/test_bench_systems.py)."""
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

    @contextlib.contextmanager
    def cluster(self, nodes, transport="default", lazy=False):
        """"default"/"shm": ``plait.init(num_nodes=N, num_workers=1)``, whose nodes on one
        host copy objects arena to arena through /dev/shm.  "tcp"/"encrypted": a head and
        N-1 nodes started as processes of their own (``_PlaitProcesses``), each with its
        own ``PLAIT_HOST_ID``, so they believe they are on different hosts and objects
        cross TCP over loopback, in the clear or with CurveZMQ; the driver joins with
        ``plait.init(address=...)``.  ``lazy``: calls wait for a get however long the
        driver is quiet (``submit_after_idle=None``), so W12 compiles every call it made."""
        if transport in ("default", "shm"):
            self.plait.init(num_nodes=nodes, num_workers=1,
                            submit_after_idle=None if lazy else 0.01)
            try:
                yield [n.id for n in self.plait.nodes()]
            finally:
                self.plait.shutdown()
        elif transport in ("tcp", "encrypted"):
            with _PlaitProcesses(nodes, encrypted=transport == "encrypted") as address:
                self.plait.init(address=address)
                try:
                    yield [n.id for n in self.plait.nodes()]
                finally:
                    self.plait.shutdown()
        else:
            raise ValueError(f"unknown transport {transport!r}")

    def submit_on(self, node, fn, *args):
        return self.remote(fn).options(node=node).remote(*args)

    def wait_ready(self, refs):
        ready, _ = self.plait.wait(refs, num_returns=len(refs), timeout=None)
        if len(ready) != len(refs):
            raise RuntimeError(f"plait.wait returned {len(ready)} of {len(refs)} refs")

    @contextlib.contextmanager
    def trace(self):
        """``plait.trace()``: the head's task events (node, start, end) and transfer
        events (src, dst, nbytes, start, end; one per copy between two nodes)."""
        recorded = Recorded()
        with self.plait.trace() as t:
            yield recorded
        recorded.tasks = [TaskTime(e.function_name, e.node, e.end - e.start) for e in t.tasks]
        recorded.transfers = [TransferTime(e.nbytes, e.end - e.start, e.src, e.dst)
                              for e in t.transfers]

    def map_reduce_graph(self, n_tasks, input_bytes):
        """W12's graph, built by hand from ``TaskNode`` records (what the compiler sees in
        production, see tests/compiler/test_compile.py): ``n_tasks // 2`` map tasks, map
        i reading input ``i % 3``, each of the 3 inputs held on its own node of a 3-node
        view (1 worker each), and ``n_tasks // 2`` reduce tasks in a chain, reduce i
        reading reduce i-1 and map i.  The target is the last reduce."""
        from scale import map_reduce

        return map_reduce(n_tasks, 3, input_bytes)

    def compile_graph(self, graph_and_view):
        """``plait.compiler.compile(graph, view)``; returns the number of tasks placed."""
        from plait.compiler import compile

        return len(compile(*graph_and_view).placements)

    def compile_refs(self, refs):
        """``plait.compile(*refs)``: collects the lazy graph, asks the head for a cluster
        view (one round trip), compiles; returns the number of tasks placed."""
        return len(self.plait.compile(*refs).placements)


class _PlaitProcesses:
    """A plait head and nodes on this machine that believe they are on different hosts.

    Started the way ``plait start`` starts them (plait/executor/cli.py ``_config``):
    ``python -m plait.executor.node.server '<NodeConfig as JSON>'``, the head listening for
    drivers and nodes on tcp://127.0.0.1:PORT, every node's transfer socket on
    tcp://127.0.0.1:*.  Differences from the CLI: ``parent_pid`` is this process (the
    nodes stop when it goes), each node gets ``PLAIT_HOST_ID`` bench-head / bench-other-K
    (so node to node copies go over TCP rather than /dev/shm), and everything lives in one
    temporary directory: run dirs, spill dirs, logs, the key file (``encrypted``: made
    with ``plait.executor.wire.security.generate_key_file``; otherwise no key at all) and an
    empty ``PLAIT_HOME`` for the driver, so no ~/.plait key is picked up.

    The driver (this process) must see itself on the head's host to map the head's
    arena: on entry ``PLAIT_HOST_ID`` is set to bench-head here too (and plait's cached
    host id refreshed, in case a session earlier in this process computed it), and
    ``PLAIT_HOME``/``PLAIT_KEY_FILE`` are set for ``plait.init(address=...)``.  On exit
    the environment is restored, the node processes are stopped (SIGTERM, SIGKILL after
    10 s), and the temporary directory and /dev/shm/plait-<session>-* are removed (after an
    error, the node logs are copied first into ``PLAIT_BENCH_KEEP_LOGS`` when it is set).
    """

    HEAD_HOST = "bench-head"
    START_TIMEOUT_S = 60.0
    _count = itertools.count(1)

    def __init__(self, nodes, encrypted):
        self.nodes, self.encrypted = nodes, encrypted
        self.session = f"{os.getpid():x}-bench{next(self._count)}"
        self.processes, self.saved_env = [], {}

    def __enter__(self):
        from plait.executor.wire.config import NodeConfig
        from plait.store.arena import default_capacity

        self.tmp = tempfile.mkdtemp(prefix=f"plait-{self.session}-")
        try:
            key_file = ""
            if self.encrypted:
                from plait.executor.wire.security import generate_key_file

                key_file = os.path.join(self.tmp, "cluster.key")
                generate_key_file(key_file)
            port = _free_port()
            head = f"tcp://127.0.0.1:{port}"
            for k in range(self.nodes):
                node = f"node-{k}"
                config = NodeConfig(
                    self.session, node, 1, default_capacity(),
                    tempfile.mkdtemp(prefix=f"{node}-", dir=self.tmp), os.getpid(),
                    os.path.join(self.tmp, f"{node}-spill"),
                    head_address="" if k == 0 else head,
                    client_address=head if k == 0 else "",
                    transfer_address="tcp://127.0.0.1:*", key_file=key_file)
                host = self.HEAD_HOST if k == 0 else f"bench-other-{k}"
                self.processes.append(self._launch(config, host))
            self._set_env(PLAIT_HOST_ID=self.HEAD_HOST, PLAIT_HOME=os.path.join(self.tmp, "home"),
                          PLAIT_KEY_FILE=key_file or None)
            self._wait_for_nodes(head, key_file)
        except BaseException:
            self.__exit__()
            raise
        return f"127.0.0.1:{port}"

    def _launch(self, config, host):
        env = dict(os.environ, PLAIT_HOST_ID=host)
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(name, "1")
        # Workers import bench_tasks by reference, as an embedded cluster's do.
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p or os.curdir) for p in sys.path)
        with open(os.path.join(self.tmp, f"{config.node}.log"), "wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "plait.executor.node.server",
                 json.dumps(dataclasses.asdict(config))],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def _set_env(self, **values):
        from plait.executor.wire import hostid

        for name, value in values.items():
            self.saved_env.setdefault(name, os.environ.get(name))
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        hostid.host_id.cache_clear()

    def _wait_for_nodes(self, head, key_file):
        """Until all nodes (and their workers) have joined: the Hello/Welcome ``plait start``
        waits with (``Connection.hello``), so the driver's node list is complete."""
        from plait.executor.driver.cluster import JoinedCluster
        from plait.executor.driver.connection import Connection
        from plait.executor.wire.security import load_key

        conn = Connection(JoinedCluster(head, load_key(key_file) if key_file else None))
        try:
            welcome = conn.hello(self.nodes, timeout=120)
        except Exception as error:
            raise RuntimeError(f"plait nodes did not come up: {error}\n{self.logs()}") from None
        finally:
            conn.close()
        hosts = sorted(n.host for n in welcome.nodes)
        if len(set(hosts)) != self.nodes:
            raise RuntimeError(f"the nodes should each see their own host, got {hosts}")

    def logs(self):
        out = []
        for path in sorted(glob.glob(os.path.join(self.tmp, "node-*.log"))):
            with open(path, errors="replace") as f:
                tail = f.read()[-2000:].strip()
            if tail:
                out.append(f"--- {os.path.basename(path)}:\n{tail}")
        return "\n".join(out)

    def keep_logs(self):
        """A block that failed: copy the nodes' logs (the head's is node-0's) into the
        directory ``PLAIT_BENCH_KEEP_LOGS`` names, if it names one, before the temporary
        directory goes (a rare failure is read from them; issue 11)."""
        keep = os.environ.get("PLAIT_BENCH_KEEP_LOGS")
        if not keep:
            return
        dest = os.path.join(keep, os.path.basename(self.tmp))
        os.makedirs(dest, exist_ok=True)
        for path in glob.glob(os.path.join(self.tmp, "node-*.log")):
            shutil.copy(path, dest)
        print(f"plait's node logs kept in {dest}", file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        try:
            for proc in reversed(self.processes):   # the nodes, then the head
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10.0
            for proc in self.processes:
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        finally:
            for name, value in self.saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            if self.saved_env:
                from plait.executor.wire import hostid

                hostid.host_id.cache_clear()
            if exc and exc[0] is not None:
                self.keep_logs()
            shutil.rmtree(self.tmp, ignore_errors=True)
            for path in glob.glob(f"/dev/shm/plait-{self.session}-*"):
                os.unlink(path)
        return False


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_PLAIT_SPILLED = re.compile(
    r"spilled: ([\d.]+) (GiB|MiB|KiB|B) in (\d+) objects; since start: [\d.]+ [KMGi]*B "
    r"spilled at ([\d.]+) GB/s, [\d.]+ [KMGi]*B restored at ([\d.]+) GB/s")
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

    # Each node's object store in ``cluster``: fixed rather than Ray's default (30% of
    # RAM per node), so three nodes never ask for more /dev/shm than there is.
    CLUSTER_STORE = 2 << 30

    @contextlib.contextmanager
    def cluster(self, nodes, transport="default", lazy=False):
        """``ray.cluster_utils.Cluster``: a head and N-1 more raylets on this machine, 1 CPU
        each, node K carrying a custom resource ``nodeK`` that ``submit_on`` asks 0.01
        of.  Every raylet has its own plasma store, so a copy between nodes always goes
        through the object managers (gRPC over TCP), even on one host: "default" and
        "tcp" are that; there is no shared-memory path between raylets ("shm") and no
        encryption here ("encrypted": Ray's TLS needs certificates and RAY_USE_TLS set
        before every process starts)."""
        if transport == "shm":
            raise Unsupported("Ray copies between raylets through its object managers "
                              "(TCP), even on one host: no shared-memory path between nodes")
        if transport == "encrypted":
            raise Unsupported("encrypted Ray (RAY_USE_TLS with per-node certificates) is "
                              "not set up by this benchmark")
        from ray.cluster_utils import Cluster

        names = [f"node{k}" for k in range(nodes)]
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "resources": {names[0]: 1}, "include_dashboard": False,
            "object_store_memory": self.CLUSTER_STORE})
        try:
            for name in names[1:]:
                cluster.add_node(num_cpus=1, resources={name: 1},
                                 object_store_memory=self.CLUSTER_STORE)
            self.ray.init(address=cluster.address, logging_level=logging.ERROR,
                          log_to_driver=False)
            cluster.wait_for_nodes()
            yield names
        finally:
            self.ray.shutdown()
            cluster.shutdown()

    def submit_on(self, node, fn, *args):
        return self.remote(fn).options(resources={node: 0.01}).remote(*args)

    def wait_ready(self, refs):
        ready, _ = self.ray.wait(refs, num_returns=len(refs), fetch_local=False)
        if len(ready) != len(refs):
            raise RuntimeError(f"ray.wait returned {len(ready)} of {len(refs)} refs")


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

    ordered_actor_calls = False   # each call is its own message to the worker: no order

    def actor(self, cls, *args):
        """``client.submit(cls, actor=True)``: a Dask actor lives in one worker's thread."""
        return self.client.submit(cls, *args, actor=True).result()

    def call(self, handle, method, *args):
        return getattr(handle, method)(*args)

    def get_calls(self, refs, timeout):
        return [ref.result(timeout=timeout) for ref in refs]

    @contextlib.contextmanager
    def cluster(self, nodes, transport="default", lazy=False):
        """``LocalCluster(n_workers=N, threads_per_worker=1)``, a node being a worker
        process (handles: worker addresses, ordered by worker name).  Workers exchange
        data over comms: TCP ("default", "tcp") or TLS ("encrypted", with
        ``distributed.Security.temporary()``: a self-signed certificate made at start,
        which needs the ``cryptography`` package).  No shared memory between workers."""
        if transport == "shm":
            raise Unsupported("Dask workers exchange data over TCP comms, even on one host: "
                              "no shared-memory path between workers")
        d = self.distributed
        extra = {}
        if transport == "encrypted":
            try:
                extra = {"security": d.Security.temporary(), "protocol": "tls://"}
            except ImportError as error:
                raise Unsupported(f"Dask TLS needs the cryptography package ({error})") from None
        cluster = d.LocalCluster(n_workers=nodes, threads_per_worker=1, processes=True,
                                 dashboard_address=None, silence_logs=logging.ERROR, **extra)
        try:
            self.client = d.Client(cluster)
            workers = self.client.scheduler_info()["workers"]
            yield sorted(workers, key=lambda addr: str(workers[addr]["name"]))
        finally:
            if getattr(self, "client", None) is not None:
                self.client.close()
                self.client = None
            cluster.close()

    def submit_on(self, node, fn, *args):
        return self.client.submit(fn, *args, workers=[node], pure=False)

    def wait_ready(self, refs):
        self.distributed.wait(refs)

    @contextlib.contextmanager
    def trace(self):
        """Tasks from ``distributed.get_task_stream`` (compute start/stop per task, on the
        worker); transfers from each worker's ``transfer_incoming_log`` (bytes, start,
        stop of each fetch from a peer): the entries added while the block ran.  They are
        told apart by position, not by time: a worker stamps them with its clock plus its
        estimate of the scheduler's lead (``scheduler_delay``), which a heartbeat held up
        by a long transfer can throw off by a second or more."""
        from dask.utils import key_split

        recorded = Recorded()
        before = self.client.run(_incoming_count)
        with self.distributed.get_task_stream(self.client) as stream:
            yield recorded
        for task in stream.data:
            for span in task["startstops"]:
                if span["action"] == "compute":
                    recorded.tasks.append(TaskTime(key_split(task["key"]), task["worker"],
                                                   span["stop"] - span["start"]))
        logs = self.client.run(_incoming_transfers)
        for worker, entries in logs.items():
            for e in entries[before.get(worker, 0):]:
                recorded.transfers.append(TransferTime(
                    e["total"], e["stop"] - e["start"], e["who"], worker))


def _incoming_count(dask_worker):
    """Run on each Dask worker by ``Dask.trace``: how many fetches its log holds (a deque
    of up to 100,000; the benchmark adds a handful)."""
    return len(dask_worker.transfer_incoming_log)


def _incoming_transfers(dask_worker):
    """Run on each Dask worker by ``Dask.trace``: its log of fetches from peers."""
    return [{k: e[k] for k in ("start", "stop", "total", "who")}
            for e in dask_worker.transfer_incoming_log]


SYSTEMS = {cls.name: cls for cls in (Plait, Ray, Dask)}
