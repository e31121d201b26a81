"""BYTES on one node: serialisation layout, the shared-memory arena and its allocator."""
