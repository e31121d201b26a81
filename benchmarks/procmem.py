"""Memory of a process tree (W8), with psutil optional.

plait's CI may not have psutil, so everything falls back to parsing /proc.
PSS always comes from /proc/PID/smaps_rollup (Linux >= 4.14): it splits
shared pages (shared memory stores, shared libraries) between the processes
mapping them, so summing PSS over a cluster does not double count the way
summing RSS does.
"""

import os

try:
    import psutil
except ImportError:  # pragma: no cover - exercised where psutil is absent
    psutil = None


def _proc_children_map():
    """ppid -> [pid] for all processes, from /proc/*/stat."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name (field 2) may contain spaces/parens: split after it.
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(pid):
    """All descendant pids of ``pid`` (recursively), excluding ``pid``."""
    if psutil is not None:
        try:
            return [p.pid for p in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return []
    children, out, stack = _proc_children_map(), [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def _kib_field(path, field):
    """Value in KiB of a ``Field:   123 kB`` line of a /proc file, or None."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _name(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def process_memory(pid):
    """{'pid', 'name', 'rss_kib', 'pss_kib'} of one process (values may be None)."""
    return {
        "pid": pid,
        "name": _name(pid),
        "rss_kib": _kib_field(f"/proc/{pid}/status", "VmRSS"),
        "pss_kib": _kib_field(f"/proc/{pid}/smaps_rollup", "Pss"),
    }


def tree_memory(root=None):
    """Summed RSS/PSS (MiB) of all descendants of ``root`` (default: this process).

    The root itself (the driver) is excluded; its own RSS is reported separately
    because it is mostly the driver's imports, not the cluster.
    """
    root = os.getpid() if root is None else root
    procs = [m for m in map(process_memory, descendants(root)) if m["rss_kib"] is not None]
    pss = [m["pss_kib"] for m in procs]
    return {
        "n_procs": len(procs),
        "rss_mib": sum(m["rss_kib"] for m in procs) / 1024,
        "pss_mib": sum(pss) / 1024 if pss and None not in pss else None,
        "driver_rss_mib": (_kib_field(f"/proc/{root}/status", "VmRSS") or 0) / 1024,
        "procs": procs,
        "source": "psutil+/proc" if psutil is not None else "/proc",
    }
