"""The worker process: runs tasks, reading inputs from the node's arena and writing results.

Data flow of one batch::

    node --RunTasks(items)--> worker
        for each item: values of deps  <- Inline bytes | zero-copy view of the arena
                       result          -> Inline bytes | Alloc round trip, copy into arena
    node <--TasksDone(results)-- worker   (flushed per task when tasks are slow, per batch
                                           when they are quick; a result held back behind
                                           a batch-mate that runs long goes after
                                           LATE_RESULT_SECONDS, from a thread)

A worker also serves ``plait.get``/``plait.put`` for code running inside its tasks (the
``WorkerRuntime``): nested refs ready when the task started arrive with their values, so
``get`` on them is local; the others, and refs the task made, are got through a session
of the worker's own with the head.

An actor's process runs its calls one at a time, in order, like any worker, unless the
actor is async or threaded: then ``ConcurrentCalls`` (calls.py) runs them at once. What the
code inside a task sees of it (its id, its values, its puts, the refs riding in its
results) is its ``Call``.

Who uses the socket to the node: the main thread, which runs the message loop (and, one
at a time, the tasks), and the late-results thread (``send_late_results``), which only
sends, and only a result held back behind a long batch-mate while the main thread runs
that batch-mate's code; the lock ``io`` serialises the two (every send and receive takes
it). In an async or threaded actor the calls' threads never touch the socket: they post
what they send to the main thread (calls.py); nothing is held back there, so the
late-results thread stays idle.
"""

from __future__ import annotations

import atexit
import ctypes
import dataclasses
import functools
import gc
import inspect
import itertools
import os
import pickle
import signal
import sys
import threading
import time
import traceback
import weakref
from collections import Counter, deque
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any, NoReturn

import zmq

from plait.errors import (ActorDiedError, ActorExitRequest, DeserializationError,
                          GetTimeoutError, InvalidArgumentError, ObjectLostError, PlaitError,
                          TaskCancelledError, TaskError)
from plait.executor.calls import Call, ConcurrentCalls, current_call
# The session of a task that submits tasks (nested()), imported with this module, which
# the node imports before it forks its workers: a worker's first such task then uses pages
# it shares with its node. Imported on that first task instead, they were 0.75 MiB of the
# worker's own (of the 2.3 MiB step it took then, measured on one worker).
import plait.executor.driver.connection  # noqa: F401  (the session imports it when opened)
from plait.executor.driver.cluster import JoinedCluster
from plait.executor.driver.reading import raised_if_error
from plait.executor.driver.session import Session
from plait.executor.wire import killpoints
from plait.executor.wire import protocol as p
from plait.executor.wire.config import LOCAL_RECONNECT_MS, WorkerConfig, identity_of
from plait.executor.wire.freelists import FreeListSweep
from plait.executor.wire.malloc import return_freed_memory
from plait.executor.wire.output import OutputPipes
from plait.executor.wire.security import load_key
from plait.graph import context
from plait.graph.actor import (CALL, READY, TERMINATE, exit_actor, handle_of, is_async_class,
                               name_and_namespace)
from plait.graph.ids import IdGenerator, yielded_id
from plait.graph.refs import ObjectRef, collecting_refs, unsubmitted
from plait.graph.task import decode_call, split_returns
from plait.store.arena import Arena
from plait.store.serialization import INLINE_THRESHOLD, deserialize, dumps, serialize
from plait.store.spill import SpillRecord, mapped, write_on_disk

# A finished quick task's result waits to share a message with its batch-mates, but never
# longer than this: dependants on other workers should not wait on a slow batch.
FLUSH_SECONDS = 0.001
# ... and a quick task's result must not wait for a batch-mate that runs long (one that
# loops until cancelled would hold it for ever): a thread sends what waited this long.
LATE_RESULT_SECONDS = 0.01
# ... and the tasks sent behind a task that has run this long go back to the node, which
# gives them to a free worker (Ray queues nothing behind a running task; short tasks sent
# with a long one waited for it while other workers idled). See hand_back.
HAND_BACK_SECONDS = 0.1
RECENT_TASKS = 16            # tasks a Free of the worker's session waits for (Free.after)
PARENT_CHECK_MS = 500
CANCEL_CHECK_SECONDS = 0.01  # how often a running async call looks for a cancel
# plait.cancel without force: the node sends Cancel(task) on the socket, then this signal;
# the handler reads the Cancel (ipc delivers it within a millisecond; the wait bounds a
# loaded machine) and raises KeyboardInterrupt in the task's code if it names that task.
INTERRUPT_SIGNAL = signal.SIGUSR2
CANCEL_MESSAGE_SECONDS = 1.0


def main(config: WorkerConfig) -> None:
    """Connect to the node, then run batches until told to stop or the node is gone."""
    _die_with_parent()
    atexit._clear()               # a forked worker: its parent's handlers are not its own
    return_freed_memory()                             # a spawned worker: not inherited
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C is the driver's business
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, identity_of(config.index, os.getpid()))
    sock.setsockopt(zmq.LINGER, 1000)
    sock.setsockopt(zmq.RECONNECT_IVL, LOCAL_RECONNECT_MS)    # its node may not have bound yet
    sock.connect(config.address)
    runtime = WorkerRuntime(config, sock, Arena.attach(config.arena))
    output = OutputPipes(zmq.Context(), config.address, identity_of(config.index, os.getpid()),
                         config.node, runtime.output_name)   # (a context never waited for)
    signal.signal(INTERRUPT_SIGNAL, runtime.on_interrupt)
    context.install(runtime)
    try:
        runtime.serve()
    finally:
        leave_process(runtime)
        output.close()
        sock.close(linger=1000)
        ctx.term()


def leave_process(runtime: WorkerRuntime) -> None:
    """The one way a worker ends on its own (told Bye: its actor's last handle is gone, or
    the cluster stops; its node gone): an actor's instance goes (its ``__del__`` runs), then
    the atexit handlers its tasks registered run, as in Ray's graceful exit, while plait
    still works for them; then its session closes. ``plait.kill`` and crashes end the
    process with SIGKILL and run none, as ``ray.kill``."""
    try:
        runtime.let_instance_go()
        run_exit_handlers()
    finally:
        if runtime.session is not None:
            runtime.session.shutdown()
        context.install(None)


def run_exit_handlers() -> None:
    """Run the atexit handlers this process's tasks registered, each once (it clears them;
    one that raises is printed and the others run). Ray runs them when an actor ends
    gracefully (out of scope, exit_actor, __ray_terminate__), not on ``ray.kill``; a forked
    worker leaves through os._exit, which would skip them."""
    atexit._run_exitfuncs()


def method_of(instance: Any, name: str) -> Any:
    """The actor's method ``name``, looked up on its class as Ray does: an instance
    attribute of the same name (``self.ready = True`` beside ``def ready(self)``) does not
    hide it. A name only the instance has (``__getattr__``) is the instance's.

    >>> class A:
    ...     def __init__(self): self.ready = False
    ...     def ready(self): return "method"
    >>> method_of(A(), "ready")()
    'method'
    """
    found = _on_class(type(instance), name)
    if found is None or not hasattr(found, "__get__"):
        return getattr(instance, name)
    return found.__get__(instance, type(instance))


@functools.lru_cache(maxsize=256)
def _on_class(cls: type, name: str) -> Any:
    """``name`` as the class defines it (None if only an instance could have it), looked
    up once per class and name: ``inspect.getattr_static`` walks the MRO in Python and
    cost about 1 µs of every actor call. An actor's class is fixed once it is built, as
    Ray's method table is."""
    return inspect.getattr_static(cls, name, None)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker if the node process dies first."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)        # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Shield:
    """``with runtime.shielded():``, as a plain context manager: a generator-based one
    cost about 1 µs on every send and receive of a worker. Counts, so it nests; on any
    thread but the main one it does nothing (only the main thread is interrupted).
    Leaving it by an exception raises no interrupt over that exception."""

    __slots__ = ("runtime",)

    def __init__(self, runtime: WorkerRuntime) -> None:
        self.runtime = runtime

    def __enter__(self) -> None:
        runtime = self.runtime
        if threading.get_ident() == runtime.main_thread:
            runtime.shield += 1

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        runtime = self.runtime
        if threading.get_ident() != runtime.main_thread:
            return
        runtime.shield -= 1
        if kind is None and runtime.interrupt_asked and runtime.interruptible \
                and not runtime.shield:
            runtime.interrupt_if_cancelled()


class WorkerRuntime:
    """The worker's message loop and the session seen by code inside tasks."""

    def __init__(self, config: WorkerConfig, sock: zmq.Socket, arena: Arena) -> None:
        self.config = config
        self.sock = sock
        self.arena = arena
        self.functions: dict[str, Any] = {}
        self.stash: deque[p.Message] = deque()      # messages that arrived mid-request
        self.read_ahead: deque[p.Message] = deque()  # ... read by an interrupt (read_cancels)
        self.requests = itertools.count(1)
        self.ids_prefix = f"{config.node}.w{config.index}.{os.getpid()}:"
        self.ids = IdGenerator(prefix=self.ids_prefix)
        self.latest: Call | None = None              # the call started last
        self.printing = ""                           # ... its function (wire/output.py)
        self.unsent: list[p.TaskResult] = []
        self.io = threading.RLock()        # the socket and ``unsent`` (see the module doc)
        self.results_due = threading.Condition(self.io)
        self.unsent_since = 0.0                      # when the oldest unsent result was made
        self.session: Any = None                     # nested tasks: see nested()
        self.session_lock = threading.Lock()
        self.skip: set[tuple[str, int]] = set()      # queued tasks the node took back
        self.skips_owed = 0                # Skips the node owes (Blocked, HandBack): no task
        #                                    starts before they are read (read_skips)
        self.queued: deque[tuple[str, int]] = deque()  # this batch's tasks not started yet
        self.in_batch: tuple[str, int] | None = None   # the batch's task running, and since
        self.item_started = 0.0
        self.handed: tuple[str, int] | None = None     # ... the one a HandBack named
        self.flushed = time.perf_counter()
        self.instance: Any = None                    # an actor's process: its one instance
        self.loop: Any = None                        # asyncio loop for async functions
        self.cancelled: set[str] = set()             # running calls plait.cancel asked to stop
        self.actor_id: str | None = None
        self.actor: tuple[p.WorkItem, type] | None = None   # its creation item and class
        self.restarts = False                        # ... and it starts again after a crash
        self.handle: Any = None                      # its own handle, made on first ask
        self.calls: ConcurrentCalls | None = None    # an async or threaded actor's calls
        self.warned_blocking = False                 # about plait.get on an actor's loop
        self.running: dict[str, Call] = {}           # calls started, not ended (by task id)
        self.counting = threading.RLock()            # ``loose`` and ``riding`` (any thread)
        self.loose: Counter[str] = Counter()         # live refs no session counts (see incref)
        self.riding: dict[str, list[ObjectRef]] = {}  # refs in results not sent yet, by task
        self.viewing = threading.Lock()              # ``views``, ``kept``, ``views_gone``
        self.views: Counter[str] = Counter()         # stored objects -> live views here
        self.dead_views: deque[str] = deque()        # views' finalizers (any thread, no lock)
        self.kept: set[str] = set()                  # ... told the node (it pins them)
        self.views_gone: list[str] = []              # kept ones whose views all died since
        self.recent: tuple[str, ...] = ()            # the last tasks ended (see Free.after)
        self.main_thread = threading.get_ident()
        self.interruptible = False        # the main thread runs a plain task's own code ...
        self.shield = 0                   # ... unless inside the worker's (see shielded)
        self.shield_guard = Shield(self)
        self.interrupt_asked = False      # INTERRUPT_SIGNAL came; its Cancel not read yet
        self.sweep = FreeListSweep()      # CPython's free lists, emptied now and then

    # -- the loop ----------------------------------------------------------------------

    def serve(self) -> None:
        threading.Thread(target=self.send_late_results, name="plait-results",
                         daemon=True).start()
        self.send(p.WorkerReady(self.config.index, os.getpid()))
        while True:
            message = self.stash.popleft() if self.stash else self.receive(PARENT_CHECK_MS)
            if message is None:
                if os.getppid() != self.config.parent_pid:
                    return
                self.send_views_gone()
                continue
            if isinstance(message, p.Bye):
                return
            if isinstance(message, p.RunTasks):
                self.run_batch(message)
            # (a Cancel read here is of a task that ended meanwhile: nothing to stop)
            if self.calls is not None:               # an async or threaded actor was built
                self.calls.serve(PARENT_CHECK_MS)
                return

    def receive(self, timeout_ms: int) -> p.Message | None:
        """The next message from the node (one an interrupt read ahead first)."""
        if self.read_ahead:
            return self.read_ahead.popleft()
        return self.receive_now(timeout_ms)

    def receive_now(self, timeout_ms: int) -> p.Message | None:
        with self.shielded(), self.io:
            if not self.sock.poll(timeout_ms):
                return None
            return p.decode(self.sock.recv(copy=False).buffer)

    def send(self, message: p.Message) -> None:
        """Send to the node; a concurrent call's thread posts it to the main thread, which
        owns the socket."""
        if self.calls is not None and not self.calls.on_main_thread():
            self.calls.post(message)
            return
        with self.shielded(), self.io:
            self.sock.send(p.encode(message), copy=False)

    # -- interrupting a task: plait.cancel without force ---------------------------------

    def on_interrupt(self, signum: int, frame: Any) -> None:
        """INTERRUPT_SIGNAL from the node: a cancel of a task this worker holds. The task's
        code gets KeyboardInterrupt (as Ray's ``ray.cancel`` without force), at once if the
        main thread runs it, else when it leaves the worker's own code (``shielded``); a
        task that has not started yet is skipped (``run_batch``)."""
        self.interrupt_asked = True
        if self.interruptible and not self.shield:
            self.interrupt_if_cancelled()

    def interrupt_if_cancelled(self) -> None:
        """Read the Cancel the signal announced; raise KeyboardInterrupt if it names the
        task the main thread runs."""
        self.interrupt_asked = False
        self.read_cancels(CANCEL_MESSAGE_SECONDS)
        call = current_call.get()
        if self.interruptible and call is not None and call.task_id in self.cancelled:
            raise KeyboardInterrupt(f"task {call.task_id} was cancelled with plait.cancel")

    def read_cancels(self, wait: float) -> None:
        """Take the Cancels that came (others wait in the stash), waiting up to ``wait``
        seconds for the first (one a reply's wait put in the stash counts). The others
        are read ahead: ``receive`` hands them out first, in order (a reply, a Skip)."""
        for message in (*self.stash, *self.read_ahead):
            if isinstance(message, p.Cancel):
                self.cancelled.update(message.object_ids)
                wait = 0.0
        deadline = time.monotonic() + wait
        while (message := self.receive_now(max(0, int((deadline - time.monotonic()) * 1000)))):
            if isinstance(message, p.Cancel):
                self.cancelled.update(message.object_ids)
                deadline = 0.0                   # then only what is there already
            else:
                self.read_ahead.append(message)

    def shielded(self) -> Shield:
        """The worker's own code inside a task (the socket, a put, its slot's hand-over):
        an interrupt that comes meanwhile is raised once it is over, not half-way."""
        return self.shield_guard

    def interruptibly(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Run the user's code of a plain task, where a cancel without force raises
        KeyboardInterrupt (an actor's calls are never interrupted, as in Ray)."""
        if self.actor is not None or threading.get_ident() != self.main_thread:
            return function(*args, **kwargs)
        self.interruptible = True
        try:
            if self.interrupt_asked:
                self.interrupt_if_cancelled()
            return function(*args, **kwargs)
        finally:
            self.interruptible = False

    def run_batch(self, batch: p.RunTasks) -> None:
        for function_id, data in batch.functions:
            self.functions[function_id] = data
        self.flushed = time.perf_counter()
        made: dict[str, p.ObjectValue] = {}        # results of this batch, for fused chains
        self.queue_batch(batch)
        for item in batch.items:
            if not self.take_next(item):
                continue                          # taken back (Blocked, HandBack) meanwhile
            if made:
                item = _resolve_pending(item, made)
            if self.interrupt_asked:
                self.interrupt_asked = False
                self.read_cancels(CANCEL_MESSAGE_SECONDS)
            result = self.run_item(item) if item.task_id not in self.cancelled \
                else self.cancelled_before_start(item)
            self.cancelled.discard(item.task_id)
            made.update(result.outputs)
            self.hold_result(result, more=item is not batch.items[-1])
            if self.restarts:          # a call's result goes before the next call starts,
                self.flush_results()   # and ZeroMQ's thread may send it: should that call
                os.sched_yield()       # crash the process, the restarted actor's caller has
                #                        it (1 in ~100 is still lost where Ray loses 1 in 5;
                #                        RESULTS.md). Batched, sync calls run ~2x as fast.
            elif time.perf_counter() - self.flushed > FLUSH_SECONDS:
                self.flush_results()
        with self.io:
            self.in_batch = None
        self.flush_results()
        self.sweep.note(len(batch.items))
        self.sweep.sweep_if_due()         # (after the results went: they wait for nothing)

    def queue_batch(self, batch: p.RunTasks) -> None:
        """The batch's tasks wait to start; the results thread may hand them back (and any
        sent after them) once one runs long. An actor's calls stay: they run in order."""
        with self.io:
            self.queued = deque((item.task_id, item.attempt) for item in batch.items) \
                if self.actor is None and len(batch.items) > 1 else deque()

    def take_next(self, item: p.WorkItem) -> bool:
        """Start ``item`` unless the node took it back. Under ``io``, which the results
        thread hands back under, and only once the node's Skips owed are read: the node
        takes back every task sent after the one a HandBack names, so none starts between."""
        key = (item.task_id, item.attempt)
        with self.io:
            if self.skips_owed:
                self.read_skips()
            if self.queued and self.queued[0] == key:
                self.queued.popleft()
            if key in self.skip:
                self.skip.discard(key)
                return False
            if self.queued or self.in_batch is not None:    # (the thread's wake-up: once
                if self.in_batch is None:                    # a batch, not once a task)
                    self.results_due.notify()
                self.in_batch, self.item_started = key, time.perf_counter()
            return True

    def hand_back(self) -> None:
        """(The results thread, holding ``io``.) The task running has run HAND_BACK_SECONDS:
        if tasks were sent behind it (this batch's, or another batch not read yet), the
        results held go, then HandBack naming it; the node takes back every task sent
        after it and answers Skip, and this worker starts nothing before reading that."""
        self.handed = self.in_batch
        if not (self.queued or self.sock.poll(0)):
            self.handed = None                    # nothing behind it now: look again later
            self.item_started = time.perf_counter()
            return
        if self.unsent:
            self.send_unsent()
        self.skip.update(self.queued)
        self.queued.clear()
        self.skips_owed += 1
        self.sock.send(p.encode(p.HandBack(self.in_batch)), copy=False)

    def hold_result(self, result: p.TaskResult, more: bool = False) -> None:
        """Keep a result to send with its batch-mates'; when ``more`` of them are to run
        first, send_late_results bounds the wait (else it is flushed at once: no wake-up)."""
        with self.io:
            if not self.unsent:
                self.unsent_since = time.perf_counter()
                if more:
                    self.results_due.notify()
            self.unsent.append(result)

    def flush_results(self) -> None:
        """Report finished tasks; also before a put, so the node knows which task is running.
        An async or threaded actor's calls post each result as they end: nothing waits but
        its constructor's, made by the batch that built it (then only that one's riding
        refs go: other calls' results may not be sent yet)."""
        with self.shielded():
            self.flush_now()

    def flush_now(self) -> None:
        if self.calls is not None and not self.unsent:
            self.send_views_gone()
            return
        with self.io:
            sent = tuple(result.task_id for result in self.unsent)
            if self.unsent:
                self.send(p.TasksDone(tuple(self.unsent)))
                self.unsent.clear()
            self.send_views_gone()
            self.flushed = time.perf_counter()
        self.results_sent(sent if self.calls is not None else None)

    def results_sent(self, task_ids: Any = None) -> None:
        """The results of these tasks (None: of every task ended so far) have been sent:
        the refs riding in them, kept alive until now, are held by the stored results from
        here on."""
        with self.counting:
            if task_ids is None:
                sent, self.riding = self.riding, {}
            else:
                sent = {task_id: self.riding.pop(task_id, None) for task_id in task_ids}
        del sent                          # (outside the lock: their decrefs may take it)

    def send_late_results(self) -> None:
        """The results thread: send results that waited LATE_RESULT_SECONDS behind a
        batch-mate still running (which holds no lock while it runs the user's code). The
        refs riding in them stay alive until the main thread's next flush."""
        with self.io:
            while True:
                now, waits = time.perf_counter(), []
                if self.unsent:
                    left = self.unsent_since + LATE_RESULT_SECONDS - now
                    if left <= 0:
                        self.send_unsent()
                        continue
                    waits.append(left)
                if self.in_batch is not None and self.handed != self.in_batch:
                    left = self.item_started + HAND_BACK_SECONDS - now
                    if left <= 0:
                        self.hand_back()
                        continue
                    waits.append(left)
                self.results_due.wait(min(waits) if waits else None)

    def send_unsent(self) -> None:
        """(The results thread, holding ``io``.) The results held back go now."""
        self.sock.send(p.encode(p.TasksDone(tuple(self.unsent))), copy=False)
        self.unsent.clear()

    # -- one task ----------------------------------------------------------------------

    def run_item(self, item: p.WorkItem) -> p.TaskResult:
        """Run one task to its end in this thread."""
        call = self.enter(item)
        try:
            prepared = self.prepared(call)
            if isinstance(prepared, p.TaskResult):
                return prepared
            function, args, kwargs = prepared
            del prepared
            try:
                killpoints.reached("task-before-start", item.function_name, self.config.node)
                value = self.interruptibly(function, *args, **kwargs)
                del args, kwargs              # refs alive at its end: those the task kept
                if inspect.iscoroutine(value):      # an async function
                    value = self.run_coroutine(value)
                return self.finish(call, value)
            except SystemExit as leaving:     # exit_actor() or sys.exit() in an actor's method
                function = None               # a bound method: the instance may go now
                return self.leave_actor(call, leaving)
            except BaseException as error:    # the user's (a BaseException of its own too:
                return self.failed_by(call, error)   # a task error, never a worker's crash)
        finally:
            self.leave(call)

    def cancelled_before_start(self, item: p.WorkItem) -> p.TaskResult:
        """A task of the batch cancelled before its turn: it never runs."""
        call = self.enter(item)
        try:
            return self.failed(call, pickle.dumps(TaskCancelledError(item.task_id)))
        finally:
            self.leave(call)

    def enter(self, item: p.WorkItem) -> Call:
        """The task starts: code running in this thread (or coroutine) sees it as its own."""
        call = Call(item, dict(item.nested))
        if item.gpu_ids:                  # this process runs GPU tasks only (node.recycle)
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, item.gpu_ids))
        if item.env_vars:                 # runtime_env's: while it runs (an actor: for good)
            call.saved_env = {name: os.environ.get(name) for name, _ in item.env_vars}
            os.environ.update(item.env_vars)
        current_call.set(call)
        self.latest = call
        self.printing = item.function_name
        self.running[item.task_id] = call
        return call

    def leave(self, call: Call) -> None:
        """The task ended (its arguments and its value dropped): refs it kept hold their
        objects from now on, before its end is reported; the refs riding in its results
        live until those are sent; its puts are its node's to announce now. The frees of
        this process's session from now on wait at the head for its result (Free.after:
        the last RECENT_TASKS name those whose results may still be on their way)."""
        with self.counting:
            self.recent = (*self.recent[-(RECENT_TASKS - 1):], call.task_id)
        try:
            self.keep_escaped_refs(call)
        finally:
            if call.riding:
                with self.counting:
                    self.riding.setdefault(call.task_id, []).extend(call.riding)
                call.riding = []
            self.running.pop(call.task_id, None)
            if call.saved_env is not None and call.item.method != "__init__":
                _restore_environ(call.saved_env)
            current_call.set(None)
            if self.latest is call:
                self.latest = None

    def output_name(self) -> str:
        """Whose lines the worker's output thread reads (wire/output.py): the actor's class,
        or the function of the call started last (even if it just ended: a line is read a
        moment after it is written), as Ray names them."""
        actor = self.actor
        return actor[1].__name__ if actor is not None else self.printing

    def current(self) -> Call | None:
        """The call whose code is running here; a thread that code started itself sees the
        call started last."""
        return current_call.get() or self.latest

    def prepared(self, call: Call) -> tuple[Any, tuple, dict] | p.TaskResult:
        """What to call with what, or the failed result when that cannot be known."""
        item = call.item
        failed = next((v for v in item.deps if isinstance(v, p.Failed)), None)
        if failed is not None:            # its producer, earlier in a fused chain, failed
            return self.failed(call, failed.error)
        try:
            return self.prepare(item)
        except Exception as error:
            return self.failed(call, _pickled_error(error))

    def finish(self, call: Call, value: Any) -> p.TaskResult:
        """The function returned ``value``: store it as the task's results."""
        killpoints.reached("task-after-compute", call.item.function_name, self.config.node)
        self.submit_made()
        return self.result(call, self.store_results(call.item, value))

    def failed_by(self, call: Call, error: BaseException) -> p.TaskResult:
        """The task raised ``error``: its results fail with it (a retry if it asked). A
        cancelled task that raised (KeyboardInterrupt, or what that led to) is cancelled:
        TaskCancelledError, never retried; one that caught it and returned has its value.
        A KeyboardInterrupt is a cancel however it came (Ray's worker takes it so: it is
        how ``ray.cancel`` reaches the task's code). As Ray's, the error of a task stopped
        while it ran is also a TaskError (``RayTaskError(TaskCancelledError)``), with the
        traceback of where it was stopped."""
        item = call.item
        if isinstance(error, KeyboardInterrupt) or (item.task_id in self.cancelled
                                                    and self.actor is None):
            return self.failed(call, _pickled_error(self.stopped_error(item, error)))
        failed = self.failed(call, _pickled_error(self.task_error(item, error)))
        if _retryable(item.retry_exceptions, error):
            failed = dataclasses.replace(failed, retryable=True)
        return failed

    def leave_actor(self, call: Call, leaving: SystemExit) -> p.TaskResult:
        """An actor's method called exit_actor() or sys.exit(): the actor ends (sys.exit
        with an error code is a crash, restarted as any); outside an actor, exit."""
        if self.actor is None:
            raise leaving
        if isinstance(leaving, ActorExitRequest) or leaving.code in (None, 0):
            traceback.clear_frames(leaving.__traceback__)   # the method's, holding self
            return self.end_actor(call)
        if self.calls is not None:
            self.calls.crash(leaving)
        self.flush_results()       # sys.exit(1): a crash, restarted as any; the calls
        raise leaving              # before it finished all the same

    def stopped_error(self, item: p.WorkItem, where: BaseException) -> PlaitError:
        """A task cancelled while it ran: a TaskError whose cause is TaskCancelledError,
        its traceback ``where``'s (the KeyboardInterrupt or CancelledError that stopped it)."""
        return TaskError.wrap(item.function_name, item.task_id, self.config.node,
                              _user_traceback(where), TaskCancelledError(item.task_id))

    def task_error(self, item: p.WorkItem, error: BaseException) -> PlaitError:
        """The user's exception as a TaskError; a plain PlaitError if even that fails."""
        try:
            return TaskError.wrap(item.function_name, item.task_id, self.config.node,
                                  _user_traceback(error), error)
        except Exception as wrapping:
            return PlaitError(f"task {item.task_id} ({item.function_name}) raised "
                              f"{type(error).__name__}: {error} (and wrapping it failed: "
                              f"{wrapping!r})")

    def prepare(self, item: p.WorkItem) -> tuple[Any, tuple, dict]:
        """Rebuild the function and arguments; failures here are DeserializationErrors."""
        try:
            function = self.callable_for(item)
            ids = item.dep_ids or ("",) * len(item.deps)
            values = [self.load(value, oid) for value, oid in zip(item.deps, ids, strict=True)]
            args, kwargs = decode_call(item.payload, values)
        except (DeserializationError, ObjectLostError):    # (a spill file gone or altered:
            raise                                        # the reader's error, as elsewhere)
        except Exception as error:
            raise DeserializationError(
                f"the arguments of task {item.task_id} ({item.function_name}) could not be "
                f"unpickled on {self.config.node}: {error!r}") from error
        error = next((value for value in values if isinstance(value, PlaitError)), None)
        if error is not None:      # an argument that is one of plait's errors fails the
            raise self.task_error(item, error)          # task with it, as in Ray
        return function, args, kwargs

    def callable_for(self, item: p.WorkItem) -> Any:
        """What the item calls: a function, an actor's constructor, or one of its methods."""
        if item.method == "__init__":
            cls = self.load_function(item.function_id)
            return lambda *args, **kwargs: self.construct(item, cls, args, kwargs)
        if item.method == TERMINATE:
            return exit_actor
        if item.method == READY:
            return lambda: True
        if item.method:
            instance = self.instance
            if instance is None:
                raise PlaitError(f"actor method {item.function_name} reached a process "
                                 f"holding no actor")
            if item.method == CALL:         # handle.__ray_call__.remote(fn, *args): Ray's
                return lambda fn, *args, **kwargs: fn(instance, *args, **kwargs)
            return method_of(instance, item.method)
        return self.load_function(item.function_id)

    def construct(self, item: p.WorkItem, cls: type, args: tuple, kwargs: dict) -> None:
        """Build the actor's instance; this process then runs only its calls: one at a
        time, or at once (ConcurrentCalls) for an async actor or a threaded one."""
        self.actor_id, self.actor = item.task_id, (item, cls)
        self.restarts = item.restarts
        asynchronous = is_async_class(cls)
        if not asynchronous and item.concurrency == 1:
            self.instance = cls(*args, **kwargs)
            return
        calls = ConcurrentCalls(self, item.concurrency, asynchronous)
        self.instance = calls.construct(cls, args, kwargs)
        self.calls = calls                 # serve() hands over once this batch is reported

    def let_instance_go(self) -> None:
        """The actor's instance goes and its ``__del__`` runs, as when a Ray actor ends
        gracefully (out of scope, exit_actor, __ray_terminate__); not on a kill."""
        if self.instance is None:
            return
        self.instance = self.handle = None
        gc.collect()                  # it may be in a cycle (a bound method it keeps)

    def end_actor(self, call: Call) -> NoReturn | p.TaskResult:
        """The actor ends itself: its atexit handlers run here (a forked worker leaves
        through os._exit, which skips them), then this call fails with ActorDiedError,
        marked ``exited`` so that its node fails the calls queued behind it, restarts
        nothing and stops this process. No other call starts meanwhile (with concurrent
        calls, the ended result is returned; the main thread starts no more)."""
        if self.calls is None:         # (concurrent calls may still use it: at the end)
            self.let_instance_go()
        run_exit_handlers()
        error = ActorDiedError(self.actor_id or "", f"it ended itself (exit_actor() or "
                                                    f"sys.exit()) in call {call.task_id}")
        ended = dataclasses.replace(self.failed(call, pickle.dumps(error)), exited=True)
        if self.calls is not None:
            self.calls.ended = True
            return ended
        self.hold_result(ended)
        self.flush_results()
        while True:                  # until the node stops this process (or is gone)
            message = self.receive(PARENT_CHECK_MS)
            if isinstance(message, p.Bye) or os.getppid() != self.config.parent_pid:
                os._exit(0)

    def run_coroutine(self, coroutine: Any) -> Any:
        """Run an async method to its end; a cancel of the call cancels it (CancelledError
        is raised inside it, at its current await), as Ray does for async actors."""
        import asyncio

        loop = self.event_loop()
        task = loop.create_task(coroutine)

        def check() -> None:
            if task.done():
                return
            if self.is_canceled():
                task.cancel()
            else:
                loop.call_later(CANCEL_CHECK_SECONDS, check)

        loop.call_soon(check)
        try:
            return loop.run_until_complete(task)
        except asyncio.CancelledError:        # a BaseException: it must not end the worker
            call = self.current()
            raise TaskCancelledError(call.task_id if call else "") from None

    def event_loop(self) -> Any:
        """One asyncio loop per process, kept across calls (state may hold loop-bound
        objects); an async actor's calls run on ConcurrentCalls' loop instead."""
        import asyncio

        if self.loop is None:
            self.loop = asyncio.new_event_loop()
        return self.loop

    def submit_made(self) -> None:
        """Tasks the task made with ``.remote()`` and did not wait for still run (as in
        Ray): submitted before its result is reported."""
        if self.session is not None and self.session.unsubmitted:
            self.session.run([])

    def load_function(self, function_id: str) -> Any:
        function = self.functions[function_id]
        if isinstance(function, bytes):
            function = self.functions[function_id] = pickle.loads(function)
        return function

    def failed(self, call: Call, error: bytes) -> p.TaskResult:
        return self.result(call, tuple((oid, p.Failed(error)) for oid in call.item.outputs))

    def result(self, call: Call, outputs: tuple) -> p.TaskResult:
        item = call.item
        return p.TaskResult(item.task_id, item.attempt, outputs,
                            time.perf_counter() - call.start, self.config.index,
                            call.wall_start, time.time(), kept=self.kept_views(call))

    def store_results(self, item: p.WorkItem, value: Any) -> tuple[tuple[str, p.ObjectValue], ...]:
        if item.generator:
            return self.stream_values(item, value)
        if _is_generator(value):
            return self.store_yielded_results(item, value)
        if len(item.outputs) == 1:
            return ((item.outputs[0], self.store(item.outputs[0], value, item.function_name)),)
        values = split_returns(item.function_name, value, len(item.outputs))
        return tuple((oid, self.store(oid, v, item.function_name))
                     for oid, v in zip(item.outputs, values, strict=True))

    # -- generator tasks ---------------------------------------------------------------
    #
    # A generator task's values leave the worker one by one, as it yields them: each is
    # stored (inline, or written into the arena) and announced to the node with a Yielded
    # before the generator is resumed, so its reader may have it while the task runs on.

    def stream_values(self, item: p.WorkItem, generator: Any
                      ) -> tuple[tuple[str, p.ObjectValue], ...]:
        """num_returns "streaming" or "dynamic": each value is an object of its own,
        Yielded as it comes; the task's one result is None (streaming: its end) or the
        list of their refs (dynamic). An exception after k values becomes value k, whose
        get raises it, and the task ends (its ``completed()`` is None), as in Ray; one that
        earns a retry fails the task instead (its k values stay), which runs again."""
        if not _is_generator(generator):
            raise TypeError(f"{item.function_name} was called with num_returns="
                            f"{item.generator!r} but returned {type(generator).__name__}, "
                            f"not a generator (a function that yields)")
        made: list[str] = []

        def take(value: Any) -> None:
            index = len(made)
            stored = self.store(yielded_id(item.task_id, index), value, item.function_name)
            made.append(self.report_yield(item, index, stored))

        try:
            self.each_value(generator, take)
        except Exception as error:
            if _retryable(item.retry_exceptions, error):
                raise
            error_value = p.Failed(_pickled_error(self.task_error(item, error)))
            made.append(self.report_yield(item, len(made), error_value))
        end = None if item.generator == "streaming" else [ObjectRef(oid) for oid in made]
        return ((item.outputs[0], self.store(item.outputs[0], end, item.function_name)),)

    def report_yield(self, item: p.WorkItem, index: int, value: p.ObjectValue) -> str:
        """Announce a stored value to the node; tasks the generator made go first (a value
        may hold their refs), and so do finished tasks' results still waiting here."""
        object_id = yielded_id(item.task_id, index)
        self.submit_made()
        self.flush_results()
        self.send(p.Yielded(item.task_id, index, object_id, value))
        return object_id

    def store_yielded_results(self, item: p.WorkItem, generator: Any
                              ) -> tuple[tuple[str, p.ObjectValue], ...]:
        """num_returns=k on a generator: its values are the k results, each stored as it
        comes (one value in memory at a time: Ray's reason for it). An exception after j
        values fails the other k - j and keeps the j (as Ray does); fewer than k values is
        an error; values past k are dropped with a warning, as Ray does."""
        outputs: list[tuple[str, p.ObjectValue]] = []

        def take(value: Any) -> None:
            if len(outputs) == len(item.outputs):
                print(f"plait: {item.function_name} ({item.task_id}) yielded more than its "
                      f"num_returns={len(item.outputs)} values; the rest are dropped",
                      file=sys.stderr)
                raise _Enough
            oid = item.outputs[len(outputs)]
            outputs.append((oid, self.store(oid, value, item.function_name)))

        try:
            self.each_value(generator, take)
            if len(outputs) < len(item.outputs):
                raise ValueError(f"{item.function_name} was declared with num_returns="
                                 f"{len(item.outputs)} but its generator yielded "
                                 f"{len(outputs)} value(s)")
        except _Enough:
            pass
        except Exception as error:
            if not outputs or _retryable(item.retry_exceptions, error):
                raise
            failed = p.Failed(_pickled_error(self.task_error(item, error)))
            outputs += [(oid, failed) for oid in item.outputs[len(outputs):]]
        return tuple(outputs)

    def each_value(self, generator: Any, take: Any) -> None:
        """``take(value)`` for each value the generator yields, in order; an async
        generator (an async actor method that yields) runs on the process's event loop as
        one coroutine, so a cancel reaches it at its current await."""
        if inspect.isasyncgen(generator):
            async def drain() -> None:
                async for value in generator:
                    take(value)

            self.run_coroutine(drain())
            return
        while True:
            try:
                value = self.interruptibly(next, generator)
            except StopIteration:
                return
            take(value)
            del value       # stored: a view it was must not stay pinned while the next comes

    # -- values ------------------------------------------------------------------------

    def load(self, value: p.ObjectValue, object_id: str = "") -> Any:
        if isinstance(value, p.Inline):
            return deserialize(value.data)
        if isinstance(value, p.Located):
            return deserialize(self.viewed(value, object_id))
        if isinstance(value, p.OnDisk):      # no room in the store: read from its spill file
            return deserialize(mapped(object_id, SpillRecord(value.path, value.nbytes,
                                                             value.crc)))
        if isinstance(value, p.Failed):
            raise pickle.loads(value.error)
        raise PlaitError(f"a {type(value).__name__} value reached a task unpinned")

    def viewed(self, value: p.Located, object_id: str) -> Any:
        """The object's block, counted as a view of it while any array made from it lives:
        a task's view that outlives the task (an actor keeping an argument) is reported
        with its result (``kept_views``) so that its node keeps the block for it."""
        block = self.arena.block(value.offset, value.nbytes)
        call = self.current()
        if not object_id or call is None:
            return block
        import numpy

        holder = numpy.frombuffer(block, dtype=numpy.uint8)
        with self.viewing:
            self.views[object_id] += 1
        weakref.finalize(holder, self.view_died, object_id)
        call.viewed.append(object_id)
        return holder

    def view_died(self, object_id: str) -> None:
        """A view's finalizer: it may run in any thread, inside a garbage collection that
        code holding ``viewing`` set off, so it only notes the death (``count_dead_views``
        counts it under the lock)."""
        self.dead_views.append(object_id)

    def count_dead_views(self) -> None:
        """(Holding ``viewing``.) A kept object whose last view died is to be told to the
        node: with the next results, or when the worker is next idle."""
        while self.dead_views:
            object_id = self.dead_views.popleft()
            self.views[object_id] -= 1
            if self.views[object_id] <= 0:
                del self.views[object_id]
                if object_id in self.kept:
                    self.kept.discard(object_id)
                    self.views_gone.append(object_id)

    def kept_views(self, call: Call) -> tuple[str, ...]:
        """The objects this call viewed that still have live views here, not yet kept."""
        if not call.viewed:
            return ()
        with self.viewing:
            self.count_dead_views()
            kept = tuple(oid for oid in dict.fromkeys(call.viewed)
                         if oid in self.views and oid not in self.kept)
            self.kept.update(kept)
        return kept

    def send_views_gone(self) -> None:
        """Tell the node which kept objects no view holds any more (after the results that
        kept them: a gone before its kept would leave the pin for ever)."""
        if not (self.dead_views or self.views_gone) or self.unsent:
            return
        with self.viewing:
            self.count_dead_views()
            gone, self.views_gone = self.views_gone, []
        if gone:
            self.send(p.ViewsGone(tuple(gone)))

    def store(self, object_id: str, value: Any, created_by: str
              ) -> p.Inline | p.Located | p.OnDisk | p.Stored:
        """Inline when small; otherwise allocate a block of the arena and write into it (or,
        when the store cannot hold it, the file the node names)."""
        with collecting_refs() as found:
            serialized = serialize(value)
        lazy = unsubmitted(found)
        if lazy:
            self.nested().run_confirmed(lazy)
        call = self.current()
        if call is not None:              # alive until the result is sent (results_sent)
            call.riding += found
        contains = tuple(dict.fromkeys(ref.id for ref in found))
        nbytes = serialized.nbytes
        if nbytes <= INLINE_THRESHOLD:
            return p.Inline(serialized.to_bytes(), contains)
        reply = self.request(p.Alloc(self.next_request(), object_id, nbytes, created_by))
        if isinstance(reply, p.Refused):
            raise pickle.loads(reply.error)
        assert isinstance(reply, p.Allocated)
        if reply.held:              # a value a re-run yielded again, kept from the first run
            return p.Stored(reply.node, nbytes, contains)
        if reply.path:              # no room in the store: a file of its own
            crc = write_on_disk(object_id, reply.path, nbytes, serialized.write_into)
            return p.OnDisk(reply.node, reply.path, nbytes, crc, contains)
        self.arena.prefault(reply.offset, nbytes)
        serialized.write_into(self.arena.block(reply.offset, nbytes))
        return p.Located(reply.node, reply.offset, nbytes, contains)

    def next_request(self) -> int:
        return next(self.requests)

    def request(self, message: p.Alloc) -> p.Message:
        """Send and wait for the matching reply; other messages wait in the stash (a
        concurrent call's thread waits for the main thread to hand the reply over).

        No deadline: the node answers every allocation (it may wait for room while other
        tasks run), and this worker exits if the node dies.
        """
        if self.calls is not None and not self.calls.on_main_thread():
            return self.calls.request(message)
        self.send(message)
        while True:
            reply = self.receive(PARENT_CHECK_MS)
            if isinstance(reply, (p.Allocated, p.Refused)) and reply.request == message.request:
                return reply
            if reply is not None:
                self.stash.append(reply)
            elif os.getppid() != self.config.parent_pid:
                os._exit(1)

    # -- the Runtime protocol, for code inside tasks -----------------------------------

    def incref(self, object_id: str, found: bool = True) -> None:
        """A ref was made here (unpickled from an argument, put, made by a call). Until this
        process has a session it is only counted: most die with the task that got them;
        ``keep_escaped_refs`` holds those that outlive it (a put's too: the head may not
        have heard of it yet)."""
        if not found:                     # a task's about to be made here: it opens one
            self.nested().incref(object_id, found)
            return
        session = self.session
        if session is not None and not self.unannounced(object_id):
            session.incref(object_id, found)
            return
        with self.counting:
            self.loose[object_id] += 1

    def decref(self, object_id: str) -> None:
        """A ref died (from ``__del__``: any thread, any moment)."""
        with self.counting:
            if self.loose[object_id] > 0:
                self.loose[object_id] -= 1
                if not self.loose[object_id]:
                    del self.loose[object_id]
                return
        if self.session is not None:
            self.session.decref(object_id)

    def unannounced(self, object_id: str) -> bool:
        """Whether ``object_id`` is a put of a running call the head may not know of yet."""
        return any(object_id in call.unannounced for call in list(self.running.values()))

    def keep_escaped_refs(self, call: Call) -> None:
        """Refs the task kept (in an actor's state, a global) hold their objects, as any
        ref does: a handle an actor keeps keeps its actor alive. The head must hear of the
        holds before the task's end lets go of what the task read, so they are sent
        through this process's session and answered before the result leaves.

        With calls running at once, the refs other calls still use are taken in too (held
        through the session from now on, and freed through it when they die), except the
        puts another call made that the head may not know of yet: that call's end sees
        to them."""
        if not self.loose and (self.session is None or self.session.settled()):
            return                        # the common case: nothing kept, nothing to send
        others = {oid for other in list(self.running.values()) if other is not call
                  for oid in other.unannounced}
        with self.counting:               # held by results not sent yet instead
            riding = Counter(ref.id for refs in (*self.riding.values(), call.riding)
                             for ref in refs)
            kept = self.loose - riding
            for object_id in others:
                kept.pop(object_id, None)
            self.loose -= kept
        if kept:
            session = self.nested()
            puts = [oid for oid in call.unannounced if oid in kept]
            if puts:                      # the head hears of them before their holds
                session.expect(puts)
            for object_id, count in kept.items():
                for _ in range(count):
                    session.incref(object_id)
        if self.session is not None:
            self.session.settle_holds(riding)

    def nested(self) -> Any:
        """A session of this worker's own with the head, for tasks that submit tasks.

        It behaves like a driver's (same compiler, same placement), except that while a
        task waits in it the worker tells its node it is blocked, so the node lends the
        slot to another worker and recursion cannot deadlock.
        """
        with self.session_lock:                # concurrent calls may open it together
            if self.session is None:
                key = load_key(self.config.key_file) if self.config.key_file else None
                cluster = JoinedCluster(self.config.head_address, key)
                session = Session(cluster, 1, id_prefix=self.ids_prefix, settles_holds=True,
                                  ctx=self.sock.context)
                session.frees_after = lambda: self.recent
                self.session = session
        return self.session

    def wait_nested(self, call: Any) -> Any:
        """Run a blocking call of the nested session with this worker's slot lent out (an
        actor's process holds no slot of the pool: it just waits)."""
        if self.calls is not None:
            self.calls.warn_if_blocking_loop()
            return call(self.nested())
        self.flush_results()
        try:
            with self.io:
                self.skips_owed += 1
                self.send(p.Blocked(self.config.index))
            return call(self.nested())
        finally:
            with self.shielded():             # an interrupt of the wait: after the slot is back
                self.send(p.Unblocked(self.config.index))
                self.read_skips()

    def read_skips(self) -> None:
        """Wait for the node's answers to Blocked and HandBack (the tasks it took back),
        keeping other messages for later: tasks queued here that another worker now runs
        are skipped."""
        for message in [m for m in self.stash if isinstance(m, p.Skip)]:
            self.stash.remove(message)        # (a reply's wait, a put's, kept it for later)
            self.take_skip(message)
        while self.skips_owed:
            message = self.receive(PARENT_CHECK_MS)
            if isinstance(message, p.Skip):
                self.take_skip(message)
                continue
            if message is not None:
                self.stash.append(message)
            elif os.getppid() != self.config.parent_pid:
                os._exit(1)

    def take_skip(self, message: p.Skip) -> None:
        """One Skip owed has come: the tasks it names are not to start here."""
        with self.io:
            self.skip.update(message.tasks)
            self.skips_owed -= 1

    def runtime_context(self) -> context.RuntimeContext:
        call = self.current()
        item = call.item if call is not None else None
        made = self.actor[0] if self.actor else item          # an actor's: its creation's
        slots = made.slots if made else 0
        held = {"CPU": float(slots)} if slots else {}
        return context.RuntimeContext(
            self.config.node, f"{self.config.node}.w{self.config.index}",
            item.task_id if item else None,
            self.config.session, self.actor_id, self.is_canceled,
            item.function_name if item else None, {**held, **dict(made.resources if made else ())},
            bool(self.actor and self.actor[0].attempt != 0),
            self.actor_handle if self.actor else None, made.gpu_ids if made else (),
            self.function_descriptor(item) if item else None,
            name_and_namespace(self.actor[0].actor_name)[0] if self.actor else None,
            made.env_vars if made else ())

    def function_descriptor(self, item: p.WorkItem) -> str | None:
        """Ray's name of the code a call runs (``get_task_function_name``): module and name
        of a function, module, class and method of an actor's call."""
        if not item.method:
            return context.function_descriptor(self.load_function(item.function_id))
        cls = self.actor[1] if self.actor else self.load_function(item.function_id)
        return context.function_descriptor(cls, item.method)

    def actor_handle(self) -> Any:
        """This actor's own handle (``get_runtime_context().current_actor``)."""
        if self.handle is None:
            assert self.actor is not None
            self.handle = handle_of(self.actor[0].task_id, self.actor[1])
        return self.handle

    def is_canceled(self) -> bool:
        """Whether the node forwarded a cancel of the running call (read without waiting;
        other messages are kept for later; with concurrent calls the main thread reads)."""
        if self.calls is None:
            while (message := self.receive(0)) is not None:
                if isinstance(message, p.Cancel):
                    self.cancelled.update(message.object_ids)
                else:
                    self.stash.append(message)
        call = self.current()
        return call is not None and call.task_id in self.cancelled

    def new_id(self, stem: str) -> str:
        return self.ids.new(stem)

    def dumps(self, value: Any) -> bytes:
        """A call's arguments, pickled as objects are (their arrays come back read-only)."""
        return dumps(value)

    def get_actor(self, name: str) -> Any:
        return self.nested().get_actor(name)

    def actor_names(self) -> tuple[str, ...]:
        return self.nested().actor_names()

    def list_objects(self) -> tuple[Any, ...]:
        return self.nested().list_objects()

    def list_actors(self) -> tuple[Any, ...]:
        return self.nested().list_actors()

    def created(self, task: Any) -> None:
        session = self.nested()
        call = self.current()
        if call is not None and call.unannounced:   # before any graph that may read them
            session.expect(call.unannounced)
            call.unannounced.clear()
        session.created(task)

    def describe(self, object_id: str) -> str:
        call = self.current()
        return "ready" if call is not None and object_id in call.known else "remote"

    def put(self, value: Any) -> ObjectRef:
        with self.shielded():                  # allocated, written and sealed, or not at all
            return self.put_now(value)

    def put_now(self, value: Any) -> ObjectRef:
        object_id = self.new_id("put")
        call = self.current()
        task_id = call.task_id if call else ""
        self.flush_results()
        stored = self.store(object_id, value, f"put in task {task_id}")
        if isinstance(stored, p.Inline):
            self.send(p.PutInline(object_id, stored, task_id))
        else:
            crc = stored.crc if isinstance(stored, p.OnDisk) else ()
            self.send(p.Seal(object_id, stored.contains, task_id, crc=crc))
        if call is not None:
            call.known[object_id] = stored     # pinned: its block stays until the task ends
            call.unannounced.append(object_id)
        return ObjectRef(object_id)

    def get(self, refs: Any, timeout: float | None = None) -> Any:
        """Values of refs this task was given, put, or made by tasks it submitted."""
        many = isinstance(refs, (list, tuple))
        listed = list(refs) if many else [refs]
        call = self.current()
        known = call.known if call is not None else {}
        if all(isinstance(ref, ObjectRef) and ref.id in known for ref in listed):
            values = [self.get_one(ref, timeout) for ref in listed]
        else:
            values = self.wait_nested(lambda session: session.get(listed, timeout))
        return values if many else values[0]

    def wait(self, refs: list[ObjectRef], num_returns: int, timeout: float | None):
        return self.wait_nested(lambda session: session.wait(refs, num_returns, timeout))

    def free(self, refs: Iterable[ObjectRef]) -> None:
        """As the driver's (a later get raises ObjectFreedError): through the worker's own
        session, and the task forgets the values it holds of them, which its get would
        otherwise read on without asking."""
        refs = list(refs)
        call = self.current()
        if call is not None:
            for ref in refs:
                if isinstance(ref, ObjectRef):
                    call.known.pop(ref.id, None)
        self.nested().free(refs)

    def stream_opened(self, generator: Any) -> None:
        self.nested().stream_opened(generator)

    def await_yielded(self, generator: Any, timeout: float | None) -> bool:
        """As the session's; a look that does not wait (``async for``'s) keeps the slot."""
        if timeout == 0:
            return self.nested().await_yielded(generator, 0)
        return self.wait_nested(lambda session: session.await_yielded(generator, timeout))

    def stream_failed(self, generator: Any) -> bool | None:
        return self.nested().stream_failed(generator)

    def get_one(self, ref: ObjectRef, timeout: float | None) -> Any:
        if not isinstance(ref, ObjectRef):
            raise InvalidArgumentError(f"plait.get expects ObjectRefs, got {type(ref).__name__}")
        call = self.current()
        value = call.known.get(ref.id) if call is not None else None
        if value is None:
            raise GetTimeoutError(
                f"{ref.id} was not passed to task {call.task_id if call else None} (a task may "
                f"get the refs nested in its arguments); pass it as an argument instead")
        return raised_if_error(self.load(value, ref.id))

    def future(self, ref: ObjectRef) -> Future:
        """``await ref`` inside a task: at once for a value the task holds, else the nested
        session's future (its loop goes on meanwhile)."""
        call = self.current()
        value = call.known.get(ref.id) if call is not None else None
        if value is None:
            return self.nested().future(ref)
        future: Future = Future()
        try:
            future.set_result(raised_if_error(self.load(value, ref.id)))
        except Exception as error:
            future.set_exception(error)
        return future


class _Enough(Exception):
    """Raised through a generator's loop once no more of its values are wanted."""


def _is_generator(value: Any) -> bool:
    return inspect.isgenerator(value) or inspect.isasyncgen(value)


def _retryable(option: bytes, error: Exception) -> bool:
    """Whether the task's retry_exceptions option (True, or exception types) covers ``error``."""
    if not option:
        return False
    try:
        allowed = pickle.loads(option)
    except Exception:
        return False
    return allowed is True or isinstance(error, tuple(allowed))


def _resolve_pending(item: p.WorkItem, made: dict[str, p.ObjectValue]) -> p.WorkItem:
    """Replace Pending inputs with what earlier tasks of the batch produced."""
    def resolve(value: p.ObjectValue) -> p.ObjectValue:
        return made.get(value.object_id, value) if isinstance(value, p.Pending) else value

    return dataclasses.replace(item, deps=tuple(map(resolve, item.deps)),
                               nested=tuple((oid, resolve(v)) for oid, v in item.nested))


def _user_traceback(error: BaseException) -> str:
    """The traceback from the user's function down, without this module's frames."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(error), error, tb))


def _pickled_error(error: BaseException) -> bytes:
    """Pickle an exception for the driver (by value if its class was defined in the
    driver's script, as Ray does); fall back to a plain PlaitError if it won't (a task's
    error stays a TaskError, its cause replaced by that PlaitError)."""
    import cloudpickle

    try:
        data = cloudpickle.dumps(error, protocol=5)
        pickle.loads(data)
        return data
    except Exception:
        cause = error.cause if isinstance(error, TaskError) else error
        plain = PlaitError(f"{type(cause).__name__}: {cause}\n"
                           f"(the original exception could not be pickled)")
        if isinstance(error, TaskError):
            plain = TaskError(error.function_name, error.task_id, error.node,
                              error.remote_traceback, plain)
        return pickle.dumps(plain)


def run_from_command_line() -> None:
    """``python -m plait.executor.worker CONFIG``: how replacement workers start."""
    import json

    main(WorkerConfig(**json.loads(sys.argv[1])))


if __name__ == "__main__":
    run_from_command_line()


def _restore_environ(saved: dict[str, str | None]) -> None:
    """Put back the variables a task's runtime_env set (None: it was not set before)."""
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
