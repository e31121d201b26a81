"""DOING it: the wire protocol, the node and worker processes, the driver's connection."""
