"""``plait.actor``: the actor classes by the module name Ray programs use (``ray.actor``)."""

from plait.graph.actor import ActorClass, ActorHandle, ActorMethod

__all__ = ["ActorClass", "ActorHandle", "ActorMethod"]
