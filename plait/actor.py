"""``plait.actor``: the actor classes by the module name Ray programs use (``ray.actor``),
and ``exit_actor()`` for an actor to end itself."""

from plait.graph.actor import ActorClass, ActorHandle, ActorMethod, exit_actor

__all__ = ["ActorClass", "ActorHandle", "ActorMethod", "exit_actor"]
