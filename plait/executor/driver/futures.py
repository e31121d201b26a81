"""ObjectRefs as futures: ``await ref``, ``ref.future()`` and ``ref.as_future()``.

A future must complete while no thread of the program calls ``get``, and a session's
socket belongs to whoever holds the session's lock. So the first future a session is
asked for starts one thread of its own, the waiter, which waits for the objects futures
were asked for and completes them::

    asker  --future(ref)--> asked (a deque), a byte on the wake socket
    waiter: lock; submit what the refs need and subscribe to them; poll the head's socket
            and the wake socket; apply what arrives; read each object now known as a get
            does and complete its futures (a failed task's error is their exception);
            unlock
    any other thread entering the session (SessionLock) --a byte, a knock--> the
            waiter lets go of the lock at once, and takes it again only once no other
            thread wants it, so a get, a put or a submission never waits for the waiter

Whichever thread receives an object's Ready tells the waiter (``arrived``), so each
object is looked at once, however many futures wait. A future cancelled meanwhile
(``asyncio.wait_for`` timing out) is dropped; the object is not, it may be awaited again.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

POLL_MS = 200          # the longest the waiter holds the lock in one poll (a knock ends it)
STEP_ASIDE_SECONDS = 0.05  # the longest a holder that stepped aside waits to be let back in


class Wakeup:
    """A socket pair: one thread polls it (``fileno``), others ``wake`` it with a byte. A
    socket pair, not a pipe: once closed, a late wake fails quietly instead of writing
    into whatever file reuses the number."""

    def __init__(self) -> None:
        self.reader, self.writer = socket.socketpair()
        self.reader.setblocking(False)
        self.writer.setblocking(False)

    def fileno(self) -> int:
        return self.reader.fileno()

    def wake(self) -> None:
        try:
            self.writer.send(b"\0")
        except OSError:
            pass                    # full (the poller was woken already) or closed

    def drain(self) -> None:
        try:
            while self.reader.recv(4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        self.reader.close()
        self.writer.close()


class SessionLock:
    """The session's re-entrant lock. No thread holds it for long while others want it:
    a waiting ``Futures`` thread gives it up at once (a thread that wants it knocks on the
    waiter's wake socket first), and a thread that waits for the head in a ``get``, a
    ``wait`` or a request steps aside (``step_aside``) whenever another thread wants it,
    woken by a byte on ``wakeup``. So a get in one thread never holds up another thread's
    get, put or submission (a threaded actor's call that waits for another call of the
    same actor, which must end to let it go on, included), as in Ray."""

    def __init__(self) -> None:
        self.rlock = threading.RLock()
        self.turns = threading.Condition(self.rlock)   # a holder that stepped aside waits
        self.contenders = 0                            # threads waiting for the lock
        self.counting = threading.Lock()
        self.wakeup = Wakeup()                         # pokes a holder waiting for the head
        self.waiter: Futures | None = None
        self.steady = 0          # > 0: the holder is half-way through what no thread may see

    def __enter__(self) -> SessionLock:
        if self.rlock.acquire(blocking=False):
            return self
        waiter = self.waiter
        if waiter is not None and waiter.is_current():
            waiter = None
        if waiter is not None:
            waiter.wanted(+1)
        self.contend(+1)
        try:
            self.rlock.acquire()
        finally:
            self.contend(-1)
            if waiter is not None:
                waiter.wanted(-1)
        self.turns.notify_all()      # a holder that stepped aside takes it back after us
        return self

    def __exit__(self, *exc: object) -> None:
        self.rlock.release()

    def acquire_if_free(self) -> bool:
        """Take the lock only if no thread holds it (True: taken; release with
        ``__exit__``): for a look that waits for nobody."""
        if not self.rlock.acquire(blocking=False):
            return False
        self.turns.notify_all()      # as __enter__: one that stepped aside takes it back after
        return True

    def contend(self, change: int) -> None:
        with self.counting:
            self.contenders += change
        if change > 0:
            self.wakeup.wake()

    def step_aside(self) -> bool:
        """Called by the holder where it only waits for the head: let the threads that want
        the lock have it, and take it back after them (True if any wanted it). Whatever
        they take in from the head meanwhile is in the session's tables."""
        if not self.contenders or self.steady:
            return False
        self.turns.wait(STEP_ASIDE_SECONDS)      # releases every level of the lock held
        return True

    @contextlib.contextmanager
    def held_throughout(self) -> Iterator[None]:
        """Hold the lock for the whole block, waits for the head included: the holder
        steps aside for no thread until its end."""
        with self:
            self.steady += 1
            try:
                yield
            finally:
                self.steady -= 1

    def close(self) -> None:
        self.wakeup.close()


class Futures:
    """The futures one session was asked for, and the waiter thread that completes them.

    ``session`` is the Session (typed loosely: driver/session.py imports this module): its
    ``lock``, ``run``, ``subscribe``, ``values``, ``parked``, ``conn``, ``apply`` and ``get``
    are used.
    """

    def __init__(self, session: Any) -> None:
        self.session = session
        self.asked: deque[tuple[Any, Future]] = deque()       # (ObjectRef, future), new
        self.waiting: dict[str, list[tuple[Any, Future]]] = {}  # object -> its futures
        self.arrived: list[str] = []          # objects made known since (under the lock)
        self.others = 0                       # threads waiting to enter the session
        self.quiet = threading.Condition()    # the waiter waits here for others == 0
        self.work = threading.Condition()     # an idle waiter waits here for a future
        self.stopped = False
        self.wakeup = Wakeup()
        self.thread = threading.Thread(target=self.loop, name="plait-futures", daemon=True)
        self.thread.start()

    # -- any thread ----------------------------------------------------------------------

    def future(self, ref: Any) -> Future:
        """A future of ``ref``'s value, completed by the waiter thread."""
        future: Future = Future()
        with self.work:
            self.asked.append((ref, future))
            self.work.notify()
        self.wakeup.wake()
        return future

    def is_current(self) -> bool:
        return threading.current_thread() is self.thread

    def wanted(self, change: int) -> None:
        """Another thread wants the session's lock (+1) or got it (-1)."""
        with self.quiet:
            self.others += change
            if not self.others:
                self.quiet.notify_all()
        if change > 0:
            self.wakeup.wake()

    def stop(self) -> None:
        """End the waiter; unfinished futures fail. Called by the session's shutdown, with
        the lock held: the waiter sees ``stopped`` when it next takes the lock, and ends."""
        from plait.errors import PlaitError

        with self.work:
            self.stopped = True
            self.work.notify()
        self.wakeup.wake()
        self.fail_all(PlaitError("the plait session was shut down before the object was ready"))

    # -- the waiter thread ---------------------------------------------------------------

    def loop(self) -> None:
        try:
            while self.wait_for_work():
                with self.quiet:
                    while self.others:
                        self.quiet.wait()
                with self.session.lock.rlock:
                    if self.stopped:
                        return
                    try:
                        self.turn()
                    except Exception as error:      # the head is gone, the session broken
                        self.fail_all(error)
        finally:
            self.wakeup.close()

    def wait_for_work(self) -> bool:
        """Block while no future is waiting; False once stopped."""
        with self.work:
            while not (self.asked or self.waiting or self.stopped):
                self.work.wait()
            return not self.stopped

    def turn(self) -> None:
        """One hold of the lock: take new futures in, complete what is known, then poll
        until something arrives, a future is asked for or another thread knocks."""
        self.complete(self.take_asked())
        self.complete(self.take_arrived())
        if not self.waiting or self.others:
            return
        import zmq                    # (lazily: ``import plait`` loads no zmq)

        poller = zmq.Poller()
        poller.register(self.session.conn.sock, zmq.POLLIN)
        poller.register(self.wakeup.fileno(), zmq.POLLIN)
        quiet = not poller.poll(POLL_MS)
        self.wakeup.drain()
        while (message := self.session.conn.receive(0)) is not None:
            self.session.apply(message)
        self.complete(self.take_arrived())
        if quiet:                     # nothing came: look at every object, drop cancelled
            self.complete(list(self.waiting), prune=True)

    def take_asked(self) -> list[str]:
        """Move new futures to ``waiting``; submit what their refs need and subscribe.
        Returns their objects."""
        refs = []
        with self.work:
            while self.asked:
                ref, future = self.asked.popleft()
                self.waiting.setdefault(ref.id, []).append((ref, future))
                refs.append(ref)
        if refs:
            self.session.run(refs)
            parked = self.session.parked.outputs()      # no node can make them: say so now
            for ref in refs:
                entries = self.waiting.pop(ref.id, None) if ref.id in parked else None
                if entries:
                    self.resolve(entries)
            refs = [ref for ref in refs if ref.id not in parked]
            self.session.subscribe([ref.id for ref in refs])
        return [ref.id for ref in refs]

    def take_arrived(self) -> list[str]:
        arrived, self.arrived = self.arrived, []
        return arrived

    def complete(self, object_ids: list[str], prune: bool = False) -> None:
        """Complete the futures of those objects now known (``prune``: forget the futures
        of the others that were cancelled)."""
        for object_id in object_ids:
            entries = self.waiting.get(object_id)
            if entries is None:
                continue
            if object_id in self.session.values:
                del self.waiting[object_id]
                self.resolve(entries)
            elif prune:
                entries[:] = [e for e in entries if not e[1].cancelled()]
                if not entries:
                    del self.waiting[object_id]

    def resolve(self, entries: list[tuple[Any, Future]]) -> None:
        """Read the object as a get does; its value (or error) completes every future."""
        try:
            value, error = self.session.get(entries[0][0]), None
        except Exception as failure:
            value, error = None, failure
        for _, future in entries:
            if not future.set_running_or_notify_cancel():
                continue
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)

    def fail_all(self, error: BaseException) -> None:
        with self.work:
            pending = [e for entries in self.waiting.values() for e in entries]
            pending += list(self.asked)
            self.waiting.clear()
            self.asked.clear()
        for _, future in pending:
            if future.set_running_or_notify_cancel():
                future.set_exception(error)
