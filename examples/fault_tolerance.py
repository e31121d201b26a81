"""Failures a Ray program expects to survive: crashed workers, flaky tasks, dead actors.

Written against Ray's API; ``import plait as ray`` is the only plait-specific line.
"""

import os
import shutil
import tempfile

import plait as ray

MARKERS = tempfile.mkdtemp(prefix="fault-tolerance-")


def first_time(name):
    """True the first time ``name`` is seen (a file marks it), so each failure is one-off."""
    path = os.path.join(MARKERS, name)
    if os.path.exists(path):
        return False
    open(path, "w").close()
    return True


@ray.remote(max_retries=2)
def crash_once(x):
    if first_time(f"crash-{x}"):
        os._exit(1)                         # the worker process dies mid-task
    return x * 10


@ray.remote(max_retries=3, retry_exceptions=[ConnectionError])
def flaky_fetch(x):
    if first_time(f"flaky-{x}"):
        raise ConnectionError("the service hiccupped")
    return x + 1


@ray.remote(max_retries=0)
def always_crash():
    os._exit(1)


@ray.remote(max_restarts=1, max_task_retries=1)
class Cache:
    def __init__(self):
        self.entries = {}

    def put(self, key, value):
        if first_time(f"cache-{key}"):
            os._exit(1)                     # the actor's process dies during this call
        self.entries[key] = value
        return len(self.entries)


if __name__ == "__main__":
    ray.init(num_cpus=2)
    print("crashed workers, retried:", ray.get([crash_once.remote(i) for i in range(3)]))
    print("retried on ConnectionError:", ray.get([flaky_fetch.remote(i) for i in range(3)]))
    try:
        ray.get(always_crash.remote())
    except ray.exceptions.WorkerCrashedError:
        print("no retries left: WorkerCrashedError")
    cache = Cache.remote()
    print("actor restarted, call retried:", ray.get(cache.put.remote("a", 1)))
    ray.shutdown()
    shutil.rmtree(MARKERS)
