"""DOING it on someone else's cluster: plait's plans run on Ray or Dask.

``plait.init(engine="ray" | "dask", address=...)`` starts one of these engines (each an
``Engine`` of plait.executor.engine, beside the native Session). The compiler is the same;
the engine's own nodes and object locations are its cluster view, and each task is pinned
where the plan puts it. Ray and Dask are optional extras, imported only when chosen.
"""

from __future__ import annotations

from typing import Any

ENGINES = ("ray", "dask")


def start(engine: str, address: Any, *, num_cpus: int | None, num_nodes: int,
          submit_after_idle: float | None) -> Any:
    """The engine session ``plait.init(engine=...)`` asked for."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: plait runs on 'plait' (its own, the "
                         f"default), 'ray' or 'dask'")
    if engine == "ray" and num_nodes != 1:
        raise ValueError("plait.init(engine='ray') runs on Ray's nodes: num_nodes is not "
                         "taken (start a ray.cluster_utils.Cluster, then pass its address)")
    try:
        if engine == "ray":
            from plait.engines.ray import RayEngine as chosen
        else:
            from plait.engines.dask import DaskEngine as chosen
    except ImportError as error:
        raise ImportError(f"plait.init(engine={engine!r}) needs {engine}: "
                          f'pip install "plait[{engine}]" ({error})') from error
    if engine == "ray":
        return chosen(address, num_cpus, submit_after_idle)
    return chosen(address, num_cpus, num_nodes, submit_after_idle)
