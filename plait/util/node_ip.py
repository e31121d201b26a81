"""``plait.util.get_node_ip_address``: Ray's ``ray.util.get_node_ip_address``."""

from __future__ import annotations

from plait.executor.wire.protocol import LOOPBACK

# (session, node) -> its IP: a process runs on one node for good, and asking costs the
# session a round trip (a task may ask at every call)
_known: dict[tuple[str, str], str] = {}


def get_node_ip_address() -> str:
    """The IP of the node this code runs on, as its cluster names it (the driver's: its
    head node's; a task's: its own node's). A node on this machine's ipc sockets, or no
    cluster yet (none is started for this), is on loopback, as plait's local clusters are."""
    from plait import api

    if not api.is_initialized():
        return LOOPBACK
    context = api.get_runtime_context()
    here = str(context.get_node_id())
    key = (str(context.get_job_id()), here)
    if key not in _known:
        _known[key] = next((node["NodeManagerAddress"] for node in api.nodes()
                            if node.id == here), LOOPBACK)
    return _known[key]
