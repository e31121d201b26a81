"""Which host a process runs on, as far as shared memory is concerned.

Two nodes may copy objects through /dev/shm only if they run on one machine and see each
other as one host: the kernel's boot id plus the network namespace (nodes in separate
namespaces are separate hosts to plait, which is how tests make real multi-host runs).
``PLAIT_HOST_ID`` overrides it, so a benchmark can make nodes on one machine talk as if
they were on different hosts (over TCP instead of through /dev/shm).
"""

from __future__ import annotations

import functools
import os


@functools.cache
def host_id() -> str:
    if os.environ.get("PLAIT_HOST_ID"):
        return os.environ["PLAIT_HOST_ID"]
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = os.uname().nodename
    try:
        netns = os.stat("/proc/self/ns/net").st_ino
    except OSError:
        netns = 0
    return f"{boot[:8]}:{netns}"
