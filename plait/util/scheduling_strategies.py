"""``ray.util.scheduling_strategies`` under plait: a node pin is ``node=`` (see options)."""

from plait.graph.options import NodeAffinitySchedulingStrategy

__all__ = ["NodeAffinitySchedulingStrategy"]
