"""``plait.util``: the few helpers of ``ray.util`` that Ray Core programs use."""

from plait.util import scheduling_strategies

__all__ = ["scheduling_strategies"]
