"""A node process: the server loop and its sockets (server), the Node with its task table
(tasks), admission by memory, actors, worker processes (workers) and transfers between
nodes, and the invariants of its tables. node-0's loop also feeds the head."""
