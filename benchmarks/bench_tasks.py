"""Task bodies shared by every system.

They live in their own small module (not in ``run.py``) so that every system
pickles them *by reference*: the benchmark child puts this directory on
``PYTHONPATH``, worker processes inherit it and import the module once.  That
keeps per-task serialization cost identical and minimal across systems.
"""

import numpy as np


def noop(i=None):
    """W3: measures pure scheduling overhead."""
    return None


def inc(x):
    """W4: one hop of a dependent chain."""
    return x + 1


def compute(x, y):
    """W2: the Ray tutorial's seed task."""
    return int(np.matmul(x, y).sum())


def total(x):
    """W5: reads a large shared array (zero-copy where the system allows)."""
    return float(x.sum())
