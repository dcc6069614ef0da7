"""The admission gate: at most N requests inside the application, a bounded FIFO queue before it.

A slot freed by a finishing request is handed straight to the oldest waiter, so the queue is
strictly first-in first-out and a newcomer can never overtake it. A waiter that gives up (its
timeout, or its task cancelled) after a slot was already handed to it passes the slot on, so a
slot is never lost. The gate lives on one event loop, like the server that drives it, and works
on any backend anyio runs (asyncio and trio).
"""

from __future__ import annotations

from collections import deque

import anyio

from concmon import ConcurrencyMonitor

GATE_QUEUE = "gate"
"""Queue name the waiters are counted under in the snapshot's ``queues``."""


class _Waiter:
    """One queued request: ``handed`` is set, with the event, when a slot is handed to it."""

    __slots__ = ("event", "handed")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.handed = False


class AdmissionGate:
    """Limits concurrent requests; ``acquire`` returns False when a request must be turned away."""

    def __init__(self, limit: int, max_queue: int | None, timeout: float | None) -> None:
        self.limit = limit
        self.max_queue = max_queue
        self.timeout = timeout
        self.inside = 0
        self._waiters: deque[_Waiter] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self, monitor: ConcurrencyMonitor) -> bool:
        if self.inside < self.limit and not self._waiters:
            self.inside += 1
            return True
        if self.max_queue is not None and len(self._waiters) >= self.max_queue:
            return False
        waiter = _Waiter()
        self._waiters.append(waiter)
        with monitor.queued(GATE_QUEUE):
            try:
                with anyio.fail_after(self.timeout):  # None: no time limit
                    await waiter.event.wait()
            except TimeoutError:
                # A slot that arrived just as the time ran out is taken, not lost.
                return self._handed(waiter)
            except BaseException:
                if self._handed(waiter):
                    self.release()
                raise
        return True

    def _handed(self, waiter: _Waiter) -> bool:
        """After giving up: True if a slot was handed over anyway (the caller now owns it)."""
        if waiter.handed:
            return True
        self._waiters.remove(waiter)
        return False

    def release(self) -> None:
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.handed = True  # the slot moves on; `inside` is unchanged
            waiter.event.set()
            return
        self.inside -= 1
