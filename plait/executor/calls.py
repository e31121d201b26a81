"""An async or threaded actor's calls, run at once in its worker process.

An actor's process runs its calls one at a time, in order, like any worker (worker.py),
unless the actor is async (an ``async def`` method: Ray runs its calls on an event loop,
up to ``max_concurrency``, 1,000 by default) or threaded (``max_concurrency`` > 1: Ray
runs that many in threads). Then ``ConcurrentCalls`` runs them, and what the code inside a
task sees of it (its id, its values, its puts: a ``Call``) belongs to the thread or
coroutine running it (``current_call``), not to the process.

The worker's runtime (``runtime`` below: worker.WorkerRuntime, which imports this module)
still runs each call's steps: preparing it, storing its results, reporting a failure.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import os
import pickle
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, NoReturn

import zmq

from plait.errors import ActorDiedError, TaskCancelledError
from plait.executor.driver.futures import Wakeup
from plait.executor.wire import killpoints
from plait.executor.wire import protocol as p

log = logging.getLogger("plait.worker")


@dataclass(eq=False, slots=True)
class Call:
    """A task while it runs, as the code inside it sees it: its id, the values it may get
    without asking (nested refs came with their values; its own puts), its puts the head
    may not have heard of yet, and the refs inside the values it stored (its results, its
    puts), kept alive until its result is sent (worker.py: results_sent)."""

    item: p.WorkItem
    known: dict[str, p.ObjectValue]
    start: float = field(default_factory=time.perf_counter)
    wall_start: float = field(default_factory=time.time)
    unannounced: list[str] = field(default_factory=list)
    riding: list[Any] = field(default_factory=list)   # refs inside its stored values
    saved_env: dict[str, str | None] | None = None     # what its env_vars replaced
    viewed: list[str] = field(default_factory=list)    # stored objects it made views of

    @property
    def task_id(self) -> str:
        return self.item.task_id


# The call whose code runs in this thread or coroutine (an asyncio task copies it).
current_call: contextvars.ContextVar[Call | None] = contextvars.ContextVar("plait_call",
                                                                           default=None)


class ConcurrentCalls:
    """An async or threaded actor's calls, run at once, up to its ``max_concurrency``.

    A zmq socket belongs to one thread, so the main thread keeps the socket to the node and
    the calls run elsewhere: an async actor's on its event loop, in a thread of their own
    (every method, ``async def`` or not, runs there, as in Ray), a threaded actor's in a
    pool of ``max_concurrency`` threads. What a call sends (puts, allocations, its result)
    it posts to the main thread, which sends it in the order posted::

        node --RunTasks--> main thread --start--> the loop's thread, or the pool's threads
        node <--TasksDone/Alloc/Seal/PutInline-- main thread <--post: outbox + a wake byte--
        node --Allocated/Refused--> main thread --the reply's future--> the waiting call
        node --Cancel--> main thread: an async call gets CancelledError at its await; a
                         threaded one sees is_canceled(); one not started never starts

    Results go as each call ends, in any order, several to a message when they end
    together. Nothing here blocks the main thread, so a call awaiting another call of the
    same actor (or a ref that call makes) is never stuck behind it.
    """

    def __init__(self, runtime: Any, concurrency: int, asynchronous: bool) -> None:
        self.runtime = runtime
        self.concurrency = concurrency
        self.main = threading.get_ident()
        self.outbox: deque[p.Message] = deque()
        self.replies: dict[int, Future] = {}          # request -> the waiting call's future
        self.wakeup = Wakeup()
        self.loop: Any = None
        self.loop_thread: threading.Thread | None = None
        self.tasks: dict[str, Any] = {}               # task id -> its asyncio task (loop's)
        self.pool: Any = None
        self.ended = False                            # exit_actor(): no call starts any more
        self.exit_code: Any = None                    # sys.exit(code) in a call: a crash
        if asynchronous:
            import asyncio

            self.loop = asyncio.new_event_loop()
            self.slots = asyncio.Semaphore(concurrency)

    def construct(self, cls: type, args: tuple, kwargs: dict) -> Any:
        """The instance, built in the main thread; an async actor's is built inside its
        loop, running, as Ray builds it, so what the constructor makes for asyncio belongs
        to that loop (``asyncio.create_task`` of a background loop in ``__init__``). An
        ``async def __init__`` is awaited there, before the loop serves any call."""
        if self.loop is None:
            return cls(*args, **kwargs)
        import asyncio

        async def build() -> Any:
            if not inspect.iscoroutinefunction(cls.__init__):
                return cls(*args, **kwargs)
            instance = cls.__new__(cls, *args, **kwargs)
            await instance.__init__(*args, **kwargs)
            return instance

        asyncio.set_event_loop(self.loop)
        try:
            return self.loop.run_until_complete(build())
        finally:
            asyncio.set_event_loop(None)

    # -- the main thread ---------------------------------------------------------------

    def serve(self, poll_ms: int) -> None:
        """The main thread from now on: hand calls out, send what they post, until Bye or
        the node is gone (looked for every ``poll_ms``)."""
        self.start_threads()
        runtime = self.runtime
        poller = zmq.Poller()
        poller.register(runtime.sock, zmq.POLLIN)
        poller.register(self.wakeup.fileno(), zmq.POLLIN)
        while True:
            while runtime.stash:
                if not self.handle(runtime.stash.popleft()):
                    return
            self.send_posted()
            if self.exit_code is not None:           # what it posted is sent: crash now
                raise SystemExit(self.exit_code)
            if not poller.poll(poll_ms) and os.getppid() != runtime.config.parent_pid:
                return
            self.wakeup.drain()
            while (message := runtime.receive(0)) is not None:
                if not self.handle(message):
                    return

    def start_threads(self) -> None:
        if self.loop is not None:
            self.loop_thread = threading.Thread(target=self.loop.run_forever,
                                                name="plait-actor-loop", daemon=True)
            self.loop_thread.start()
        else:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="plait-call")

    def handle(self, message: p.Message) -> bool:
        """One message from the node; False for Bye."""
        if isinstance(message, p.Bye):
            return False
        if isinstance(message, p.RunTasks) and not self.ended:
            self.runtime.functions.update(message.functions)
            self.start(list(message.items))
        elif isinstance(message, p.Cancel):
            self.cancel(message.object_ids)
        elif isinstance(message, (p.Allocated, p.Refused)):
            waiting = self.replies.pop(message.request, None)
            if waiting is not None:
                waiting.set_result(message)
        return True                           # (a Skip answers no Blocked of ours: ignored)

    def start(self, items: list[p.WorkItem]) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.start_on_loop, items)
        else:
            for item in items:
                self.pool.submit(self.run_threaded, item)

    def cancel(self, task_ids: tuple[str, ...]) -> None:
        """Cancel calls: those not started never start; a running async one is cancelled
        at its await; a running threaded one may look (is_canceled) and return early."""
        self.runtime.cancelled.update(task_ids)
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.cancel_on_loop, task_ids)

    def send_posted(self) -> None:
        """Send what the calls posted, in order; results posted together go in one message
        (then the refs riding in them may go: the stored results hold them)."""
        results: list[p.TaskResult] = []
        while self.outbox:
            message = self.outbox.popleft()
            if isinstance(message, p.TasksDone):
                results.extend(message.results)
                continue
            if results:
                self.send_results(results)
                results = []
            self.runtime.send(message)
        if results:
            self.send_results(results)

    def send_results(self, results: list[p.TaskResult]) -> None:
        self.runtime.send(p.TasksDone(tuple(results)))
        self.runtime.results_sent([result.task_id for result in results])

    def on_main_thread(self) -> bool:
        return threading.get_ident() == self.main

    # -- the calls' threads ------------------------------------------------------------

    def post(self, message: p.Message) -> None:
        """Have the main thread send ``message`` (after everything posted before it)."""
        self.outbox.append(message)
        self.wakeup.wake()

    def crash(self, leaving: SystemExit) -> NoReturn:
        """``sys.exit(code)`` in a call: the main thread sends what was posted, then the
        process exits with that code (a crash: the actor restarts within max_restarts)."""
        self.exit_code = leaving.code if leaving.code is not None else 1
        self.wakeup.wake()
        raise leaving

    def request(self, message: p.Alloc) -> p.Message:
        """Post a request and wait for the main thread to hand its reply over."""
        reply: Future = Future()
        self.replies[message.request] = reply
        self.post(message)
        return reply.result()

    def run_threaded(self, item: p.WorkItem) -> None:
        runtime = self.runtime
        if item.task_id in runtime.cancelled:
            result = self.cancelled(item)
        elif self.ended:                       # exit_actor() in a call before it started
            result = self.not_started(item)
        else:
            result = runtime.run_item(item)    # (a crash, sys.exit(1), raises through)
        self.post(p.TasksDone((result,)))

    def cancelled(self, item: p.WorkItem) -> p.TaskResult:
        """The result of a call cancelled before it started."""
        error = pickle.dumps(TaskCancelledError(item.task_id))
        return self.runtime.failed(Call(item, {}), error)

    def not_started(self, item: p.WorkItem) -> p.TaskResult:
        """The result of a call that was to start after the actor ended itself."""
        return self.runtime.failed(Call(item, {}), self.ended_error(item.task_id))

    def ended_error(self, task_id: str) -> bytes:
        return pickle.dumps(ActorDiedError(self.runtime.actor_id or "", f"it ended itself "
                                           f"(exit_actor() or sys.exit()) before call "
                                           f"{task_id} started"))

    def warn_if_blocking_loop(self) -> None:
        """``plait.get`` inside an async actor blocks its loop: allowed, said once (Ray)."""
        if self.loop_thread is None or threading.current_thread() is not self.loop_thread:
            return
        if not self.runtime.warned_blocking:
            self.runtime.warned_blocking = True
            log.warning("plait.get (or wait) inside an async actor blocks its event loop: no "
                        "other call of the actor runs meanwhile; use `await ref` (or "
                        "asyncio.gather) to let them run")

    # -- on the async actor's loop -----------------------------------------------------

    def start_on_loop(self, items: list[p.WorkItem]) -> None:
        for item in items:
            task = self.loop.create_task(self.run_async(item))
            self.tasks[item.task_id] = task

    def cancel_on_loop(self, task_ids: tuple[str, ...]) -> None:
        for task_id in task_ids:
            task = self.tasks.get(task_id)
            if task is not None:
                task.cancel()

    async def run_async(self, item: p.WorkItem) -> None:
        """One call of an async actor: it waits for one of ``max_concurrency`` slots,
        then runs; a sync method runs on the loop too (blocking it, as in Ray)."""
        runtime = self.runtime
        call = runtime.enter(item)
        try:
            result = await self.outcome(call)
        finally:
            runtime.leave(call)
            self.tasks.pop(item.task_id, None)
        self.post(p.TasksDone((result,)))

    async def stream(self, call: Call, generator: Any) -> p.TaskResult:
        """An async generator's values, stored as they come: the call's own task runs the
        generator (each step on this loop, a cancel reaching its current await) and hands
        each value to a thread, which stores and announces it as for a plain generator
        (``finish``) before the generator is resumed."""
        import asyncio
        import queue

        loop = asyncio.get_running_loop()
        handoff: queue.SimpleQueue = queue.SimpleQueue()

        def values() -> Any:                     # the thread's side: a plain generator
            while True:
                kind, payload, taken = handoff.get()
                if kind == "end":
                    return
                if kind == "raise":
                    raise payload
                yield payload
                loop.call_soon_threadsafe(_settle, taken)       # stored: go on

        finishing = asyncio.ensure_future(asyncio.to_thread(self.runtime.finish, call, values()))
        try:
            async for value in generator:
                taken = loop.create_future()
                handoff.put(("value", value, taken))
                await asyncio.wait([taken, finishing], return_when=asyncio.FIRST_COMPLETED)
                if finishing.done():             # it wants no more (num_returns reached)
                    await generator.aclose()
                    break
            handoff.put(("end", None, None))
        except BaseException as error:           # raised by the generator, or a cancel
            handoff.put(("raise", error, None))
            if not isinstance(error, Exception):
                finishing.add_done_callback(_retrieved)
                raise
        return await finishing

    async def outcome(self, call: Call) -> p.TaskResult:
        import asyncio

        runtime = self.runtime
        try:
            async with self.slots:
                if call.task_id in runtime.cancelled:
                    raise asyncio.CancelledError
                if self.ended:                  # exit_actor() in a call before it started
                    return runtime.failed(call, self.ended_error(call.task_id))
                call.start, call.wall_start = time.perf_counter(), time.time()
                prepared = runtime.prepared(call)
                if isinstance(prepared, p.TaskResult):
                    return prepared
                function, args, kwargs = prepared
                killpoints.reached("task-before-start", call.item.function_name,
                                   runtime.config.node)
                value = function(*args, **kwargs)
                if inspect.isawaitable(value):
                    value = await value
                if inspect.isasyncgen(value):
                    return await self.stream(call, value)
                return runtime.finish(call, value)
        except asyncio.CancelledError as stopped:   # plait.cancel, at the call's await
            return runtime.failed(call, pickle.dumps(runtime.stopped_error(call.item, stopped)))
        except SystemExit as leaving:           # exit_actor() or sys.exit() in the call
            return runtime.leave_actor(call, leaving)
        except BaseException as error:          # the user's own, whatever its base
            return runtime.failed_by(call, error)


def _settle(future: Any) -> None:
    if not future.done():
        future.set_result(None)


def _retrieved(future: Any) -> None:
    """Its outcome is not wanted any more (the call was cancelled or ended)."""
    if not future.cancelled():
        future.exception()
