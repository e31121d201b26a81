"""The driver: the user's side of the cluster. The session (graph -> compile -> execute ->
fetch), reading objects, the connection to the head (starting an embedded cluster or
joining one), finding a running cluster (discovery), the idle flusher, progress, traces,
and starting the dashboard's process (dashboard, by module name). It imports only the wire."""
