"""DOING it: the processes that run a plan, and the wire between them.

The folder tree is the process diagram. Each arrow between boxes is a ZeroMQ socket carrying
messages of wire/protocol.py (ROUTER on the serving side), except that the head and
node-0's Node hand theirs over inside their one process; the store is shared memory, not a
process::

    driver/              head/                    node/
    the user's process   in node-0's process      one process per node
   +---------------+      +------------------+      +----------------------+   Fetch
   | Session:      |Submit| Head: directory, |Assign| Node: task table,    |<--------+
   | graph -> plan |----->| lineage, actor   |----->| admission, actors,   |-------+ |
   | Connection    |<-----| routing          |<-----| workers, transfers   | chunks| |
   +---------------+ Ready+------------------+ Tasks+----------------------+       | |
           |                                   Done   RunTasks |    ^ TasksDone  another
           |                                                   v    |            node/
           |                                        +----------------------+
           |                                        | worker: runs tasks,  |
           |                                        | a process per slot   |
           |                                        +----------------------+
           |  reads objects: maps those on its host             | reads inputs,
           v  (wire/fetch for the others)                       v writes results
   +------------------------------------------------------------------------------------+
   | the node's store (plait.store): shared memory, mapped by the node, its workers     |
   | and the drivers on its host                                                        |
   +------------------------------------------------------------------------------------+

A task is sent to its node in a stage (Assign); its inputs reach the node as values from
the head or as transfers from the node holding a copy; a worker runs it and writes its
result, an object, into the node's store; the head learns where each object lives.

The Head and the Node are state machines: an event goes in (a message, a process that
ended, the clock), their tables change, and instructions come out (send, start or kill a
worker, remove a dead node's files). Only the node's server loop touches sockets,
processes and files (wire/instructions.py says what goes in and out), so their decisions
are tested as data.

- ``wire/``: what every process shares: the messages (protocol), the events and
  instructions of the state machines, the key (security), how a process is configured and
  started (config), fetching an object across hosts (fetch), what workers print on its
  way to the drivers (output), the host id, kill points, malloc settings. It imports
  nothing else of the executor.
- ``head/``: the head: directory, lineage, actor routing and the invariants of its tables;
  the census (counters and a bounded ring of notices) a dashboard's snapshots read.
- ``node/``: a node process: the server loop, which carries out the instructions, and its
  sockets; the Node with its task table, admission, actors, worker processes and
  transfers; NodeZero, the head and node-0 together in one process; its snapshot.
- ``worker.py``: a worker process; a task that submits tasks opens a driver session.
  ``calls.py``: an async or threaded actor's calls, run at once in its worker process.
- ``driver/``: the user's side: the session, reading objects, the connection to the head,
  finding a running cluster, the idle flusher, progress, traces, starting the dashboard.
- ``cli.py``: ``plait start | stop | status | memory | dashboard``.
- ``engine.py``: the Engine seam that plait.api calls (cluster view, submit a plan, put,
  get, wait, free, cancel, nodes, trace events), with the graph -> compile -> submit loop
  written once; the driver's Session implements it, and so do plait.engines' Ray and Dask.

Imports follow the data: head and driver import only wire; node imports head (node-0 runs
it), worker (it forks workers, which run on in its code) and wire; worker imports driver
(a task that submits tasks), calls and wire; calls imports driver and wire; cli imports
driver and wire. A driver and ``plait start`` start nodes by module name (``python -m``,
wire.config.launch), and the dashboard (plait.dashboard, above the executor) the same way,
never by import. tests/test_layering.py holds this table and checks
it, lazy imports included.
"""
