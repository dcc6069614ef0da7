"""Each sink's own thread and bounded backlog, so that a slow or stuck sink delays only itself.

A sink is plugin code, and plugin code may block: a network call that never returns. Called in
turn on the reporter's thread, one such sink would silence every other sink and hang shutdown.
So every sink gets a :class:`SinkWorker`: the reporter hands each worker the snapshot and goes
on; a worker still inside an earlier call keeps the snapshot in a short backlog, and when the
backlog is full the oldest waiting snapshot is dropped and counted. Nothing here waits without
a bound; what to wait for, and how long, is the caller's choice (``PluginHost`` decides).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from concmon.snapshot import Snapshot

SINK_BACKLOG = 8
"""Snapshots kept for a sink that is still busy; past this the oldest is dropped."""


@dataclass
class Delivery:
    """One snapshot handed to one sink; ``done`` is set once the sink has returned (or the
    snapshot was dropped unread, ``dropped`` then True)."""

    hook: str
    snapshot: Snapshot
    done: threading.Event = field(default_factory=threading.Event)
    dropped: bool = False


@dataclass(frozen=True)
class Offer:
    """What :meth:`SinkWorker.offer` did: the delivery queued, whether the sink was idle (so it
    starts on it at once), and how many older snapshots were dropped to make room."""

    delivery: Delivery
    idle: bool
    dropped: int


class SinkWorker:
    """A daemon thread calling one sink's hooks, one snapshot at a time, in order."""

    def __init__(
        self, name: str, call: Callable[[str, Snapshot], None], backlog: int = SINK_BACKLOG
    ) -> None:
        self.name = name
        self._call = call
        self.backlog = backlog
        self.dropped = 0
        self._fresh()

    def _fresh(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[Delivery] = deque()
        self._busy = threading.Lock()  # held while inside the sink; a fork waits for it
        self._busy_since: float | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def offer(self, hook: str, snapshot: Snapshot) -> Offer:
        """Queue ``snapshot`` for ``hook``; never blocks on the sink."""
        delivery = Delivery(hook, snapshot)
        dropped: list[Delivery] = []
        with self._cond:
            while len(self._queue) >= self.backlog:
                dropped.append(self._queue.popleft())
            idle = self._busy_since is None and not self._queue
            self._queue.append(delivery)
            self.dropped += len(dropped)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name=f"concmon-sink-{self.name}", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        for old in dropped:
            old.dropped = True
            old.done.set()
        return Offer(delivery, idle, len(dropped))

    def busy_for(self) -> float | None:
        """Seconds the sink has been inside its current call (None when it is idle)."""
        since = self._busy_since
        return None if since is None else time.monotonic() - since

    def runs_here(self) -> bool:
        """Whether the caller is this worker's own thread (inside the sink)."""
        return self._thread is threading.current_thread()

    def close(self) -> None:
        """Let the thread end once the snapshots already queued are delivered."""
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                delivery = self._queue.popleft()
                self._busy_since = time.monotonic()
            try:
                with self._busy:
                    self._call(delivery.hook, delivery.snapshot)
            finally:
                with self._cond:
                    self._busy_since = None
                delivery.done.set()

    # -- fork ---------------------------------------------------------------------------------

    def hold_for_fork(self, deadline: float) -> list[threading.Lock | threading.Condition]:
        """Take this worker's locks (waiting until ``deadline`` for a call in flight); the
        locks taken, to release in the parent. A sink stuck past the deadline is not waited for."""
        held: list[threading.Lock | threading.Condition] = []
        locks: tuple[threading.Lock | threading.Condition, ...] = (self._busy, self._cond)
        for lock in locks:
            if not lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                break
            held.append(lock)
        return held

    def after_fork_in_child(self) -> None:
        """Threads do not survive a fork: fresh locks, an empty backlog (the parent's
        snapshots are not the child's), and a thread started on the next offer."""
        self._fresh()
