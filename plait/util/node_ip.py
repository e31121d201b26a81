"""``plait.util.get_node_ip_address``: Ray's ``ray.util.get_node_ip_address``."""

from __future__ import annotations

LOOPBACK = "127.0.0.1"


def get_node_ip_address() -> str:
    """The IP of the node this code runs on, as its cluster names it (the driver's: its
    head node's; a task's: its own node's). A node on this machine's ipc sockets, or no
    cluster yet (none is started for this), is on loopback, as plait's local clusters are."""
    from plait import api

    if not api.is_initialized():
        return LOOPBACK
    here = str(api.get_runtime_context().get_node_id())
    return next((node["NodeManagerAddress"] for node in api.nodes() if node.id == here),
                LOOPBACK)
