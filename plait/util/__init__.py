"""``plait.util``: the helpers of ``ray.util`` that Ray Core programs use most."""

from plait.util import scheduling_strategies
from plait.util.actor_pool import ActorPool

__all__ = ["ActorPool", "scheduling_strategies"]
