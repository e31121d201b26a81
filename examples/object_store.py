"""The object store, from the Ray Core tutorial plait grew from, run on plait.

Run it:  python examples/object_store.py

The tutorial's cells are kept as they were, with ``import plait as ray`` as the only
change: the same script runs on Ray by swapping that import back.
"""

import sys

import numpy as np

import plait as ray

# Each node of a cluster has its own object store; together they form one shared object
# store across the cluster. Objects are immutable: their values never change after
# creation, so copies in several node stores need no synchronisation.
#
# An object is a value that tasks (and actors) create and work with; it can live anywhere
# in the cluster. ObjectRefs are handles to objects, which are cached in each node's
# shared-memory object store.

# --- Put a large array into the object store ---------------------------------------------

large_matrix = np.random.rand(1024, 1024, 1024 // 8)  # approx. 1 GB
size_in_bytes = sys.getsizeof(large_matrix)

print(f"large_matrix has: {size_in_bytes/1024/1024/1024:.2f} GB")

# Add an object to the object store with put(). The first call starts plait's embedded
# local cluster (one node process and a worker per CPU), as the first ray call does.
obj_ref = ray.put(large_matrix)
print(obj_ref)

# get() fetches the value of an object from its ObjectRef. In plait the array comes back
# straight from shared memory: no copy, and read-only, because objects are immutable.
large_mat_from_object_store = ray.get(obj_ref)

print("equal:", np.array_equal(large_mat_from_object_store, large_matrix))

# It is an equal value, not the same Python object.
print("same object:", large_mat_from_object_store is large_matrix)

# --- Pattern: pass an object as a top-level argument -------------------------------------
#
# When an ObjectRef is passed directly as a top-level argument of a task, it is
# de-referenced: the task receives the object's value, and does not start until that
# value is available on its node. The pattern pays off when the object is large and used
# many times: it is stored once and every task reads it in place.


@ray.remote
def compute(x, y):
    return int(np.matmul(x, y).sum())


mat1_ref = ray.put(np.random.rand(32, 32))
mat2_ref = ray.put(np.random.rand(32, 32))

collection = []
for i in range(10):
    collection.append(compute.remote(mat1_ref, mat2_ref))

results = ray.get(collection)
print(results)

# plait extra: the plan that ran, and why every task went where it did.
print(ray.compile(compute.remote(mat1_ref, mat2_ref)).explain())

ray.shutdown()
