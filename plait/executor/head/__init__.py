"""The head, which runs inside node-0's process: the directory of objects and their copies,
the lineage that rebuilds lost ones, actor routing, and the invariants of its tables. It
imports only the wire; node-0's Node is handed to it (``LocalNode``), not imported."""
