"""ClusterView: the plain data the compiler places against (no sockets, no clock).

The executor builds one from its live state before each compile; tests build them by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class NodeView:
    """One node: its id, how many workers it runs, its free store bytes and queued tasks,
    and the other resources it offers (GPU, memory, custom: name and total amount)."""

    id: str
    workers: int
    store_free: int = 1 << 40
    queued: int = 0
    store_capacity: int = 1 << 40
    resources: tuple[tuple[str, float], ...] = ()
    held: int = 0                    # worker slots live actors hold for their lifetime

    def offers(self, needs: tuple[tuple[str, float], ...]) -> bool:
        """Whether the node has, in all, what a task asks for (it may be busy now)."""
        return offers(self.resources, needs)


def offers(resources: tuple[tuple[str, float], ...], needs: tuple[tuple[str, float], ...]
           ) -> bool:
    """Whether ``resources`` (a node's, in all) cover ``needs`` (a task's).

    >>> offers((("GPU", 1.0),), (("GPU", 0.5),)), offers((), (("GPU", 1),)), offers((), ())
    (True, False, True)
    """
    total = dict(resources)
    return all(total.get(name, 0) >= amount for name, amount in needs)


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """A ready (or already scheduled) object: its size and the nodes holding a copy."""

    id: str
    nbytes: int
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class ClusterView:
    """Nodes in a fixed order (the head first) and what is known of the graph's inputs."""

    nodes: tuple[NodeView, ...]
    objects: dict[str, ObjectInfo] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)   # function -> mean seconds
    result_sizes: dict[str, int] = field(default_factory=dict)  # function -> mean result bytes
    actors: dict[str, str] = field(default_factory=dict)        # actor -> the node it lives on

    def node_ids(self) -> tuple[str, ...]:
        return tuple(node.id for node in self.nodes)


@dataclass(frozen=True, slots=True)
class CompileOptions:
    """The constants of placement's cost model (defaults measured on these machines)."""

    bandwidth: float = 2e9            # bytes/s between nodes (loopback TCP measured here)
    task_seconds: float = 1e-3        # guessed duration of a function with no history
    result_bytes_guess: int = 1024    # results whose size is unknown count as small
    inline_bytes: int = 100 * 1024    # objects this small travel in messages, via the head
    transfer_seconds: float = 1e-3    # fixed cost of one transfer (request, pin, set-up)
    relay_seconds: float = 2e-4       # a small input made on another node comes via the head
