"""A plan over large arrays on three nodes: what plait decides before anything runs, and
what really happened after.

Each node makes one 16 MiB block of a tall matrix; each block is centred and reduced to
its 1024 x 1024 Gram matrix (8 MiB), and the three Grams are summed. The graph is built
lazily (nothing runs until ``.compute()``), so plait compiles it whole. Before the first
run plait knows nothing of the results' sizes and guesses them small (it predicts that
nothing moves); the run teaches it each function's result size and time, so the second
plan predicts its copies in MiB. ``explain()`` says where each task runs and why,
``visualize`` draws it, and a trace shows what really moved: the two can differ, since
the head moves a waiting reader next to a result that came out big.

    python examples/plans.py [OUTPUT_DIR]      # writes plan.html and trace.json there

Add ``dashboard=True`` to ``plait.init`` to watch it run (``pip install -e ".[dashboard]"``).
"""

import os
import sys

import numpy as np

import plait

ROWS, COLUMNS = 2048, 1024            # one block: 16 MiB of float64


@plait.remote
def block(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((ROWS, COLUMNS))


@plait.remote
def centre(values: np.ndarray) -> np.ndarray:
    return values - values.mean(axis=0)


@plait.remote
def gram(values: np.ndarray) -> np.ndarray:
    return values.T @ values


@plait.remote
def add(*grams: np.ndarray) -> np.ndarray:
    return sum(grams)


def covariance(seeds: range) -> plait.ObjectRef:
    """The graph (lazy: nothing runs yet): a block per node, its Gram, their sum."""
    blocks = [block.options(node=f"node-{i}").remote(seed) for i, seed in enumerate(seeds)]
    return add.remote(*[gram.remote(centre.remote(b)) for b in blocks])


def expected(seeds: range) -> np.ndarray:
    blocks = (np.random.default_rng(seed).random((ROWS, COLUMNS)) for seed in seeds)
    return sum(c.T @ c for c in (b - b.mean(axis=0) for b in blocks))


def main(out: str) -> None:
    plait.init(num_nodes=3, num_workers=1, store_memory="512MiB", submit_after_idle=None)
    for run, seeds in enumerate((range(0, 3), range(3, 6)), 1):
        total = covariance(seeds)
        plan = plait.compile(total)
        with plait.trace() as trace:
            result = total.compute()
        print(f"run {run}: tasks per node {plan.tasks_per_node()}; bytes moved: predicted "
              f"{plan.bytes_moved >> 20} MiB, actual {trace.bytes_moved >> 20} MiB; result "
              f"matches numpy: {np.allclose(result, expected(seeds))}")
    print(plan.explain())
    plan.visualize(os.path.join(out, "plan.html"))
    plan.visualize(os.path.join(out, "plan.svg"))
    trace.save(os.path.join(out, "trace.json"))     # open in chrome://tracing or Perfetto
    plait.shutdown()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
