"""``plait.util``: the helpers of ``ray.util`` that Ray Core programs use most."""

from plait.util import multiprocessing, queue, scheduling_strategies, state
from plait.util.actor_pool import ActorPool
from plait.util.completed import as_completed, map_unordered
from plait.util.named_actors import list_named_actors
from plait.util.node_ip import get_node_ip_address
from plait.util.validate import validate_state
from plait.store.serialization import deregister_serializer, register_serializer

__all__ = ["ActorPool", "as_completed", "deregister_serializer", "get_node_ip_address",
           "list_named_actors", "map_unordered", "multiprocessing", "queue",
           "register_serializer", "scheduling_strategies", "state", "validate_state"]
