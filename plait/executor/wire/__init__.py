"""The wire: what every process of the executor shares. The messages and their frames
(protocol), the cluster key (security), how a node or worker is configured and started and
how long each waits for the other (config), fetching an object from another host (fetch),
the host id, kill points and malloc settings. It imports nothing else of the executor."""
