"""The admission gate: at most N requests inside the application, a bounded FIFO queue before it.

It needs no web framework, only anyio and an event loop: the ASGI adapter and the Django adapter
(under an ASGI server) put it in front of their application alike. Importing ``concmon`` does not
import it (anyio comes with the adapters' extras).

A slot freed by a finishing request is handed straight to the oldest waiter, so the queue is
strictly first-in first-out and a newcomer can never overtake it. A waiter that gives up (its
timeout, its task cancelled, or its client gone) after a slot was already handed to it passes
the slot on, so a slot is never lost. While a request waits, :class:`ClientWatch` reads the
server's ``receive()`` for it: a client that hangs up leaves the queue at once instead of
holding a place there, and whatever else arrives (the request body) is kept for the
application. The gate lives on one event loop, like the server that drives it, and works on
any backend anyio runs (asyncio and trio).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio

from concmon import ConcurrencyMonitor

GATE_QUEUE = "gate"
"""Queue name the waiters are counted under in the snapshot's ``queues``."""

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]


class Verdict(enum.Enum):
    """How a request left the gate."""

    ADMITTED = "admitted"
    REJECTED = "rejected"
    LEFT = "left"
    """Its client hung up while it waited."""


class ClientWatch:
    """Reads a queued request's ``receive()`` until it is admitted, then replays what it read.

    A ``http.disconnect`` means the client left: the wait is cancelled. Any other message is
    kept, in order, for the application's first calls to :meth:`receive`. Reading stops at the
    first message with ``more_body`` (a body still coming is not buffered here: a client
    leaving then is noticed once the application reads on). Cancelling a pending ``receive()``
    is safe on the servers concmon runs under: their ``receive()`` takes a message only when it
    returns it.
    """

    __slots__ = ("_error", "_kept", "_receive", "gone")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._kept: deque[Message] = deque()
        self._error: Exception | None = None
        self.gone = False

    async def listen(self, wait: anyio.CancelScope) -> None:
        try:
            while True:
                message = await self._receive()
                if message["type"] == "http.disconnect":
                    self.gone = True
                    wait.cancel()
                    return
                self._kept.append(message)
                if message.get("more_body", False):
                    return
        except Exception as exc:  # noqa: BLE001 - the server's failure reaches the app later
            self._error = exc

    async def receive(self) -> Message:
        """The application's ``receive``: what was read while queued first, then the server's."""
        if self._kept:
            return self._kept.popleft()
        error = self._error
        if error is not None:
            self._error = None
            raise error
        return await self._receive()


class _Waiter:
    """One queued request: ``handed`` is set, with the event, when a slot is handed to it."""

    __slots__ = ("event", "handed")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.handed = False


class AdmissionGate:
    """Limits concurrent requests; ``acquire`` tells whether a request may go in."""

    def __init__(self, limit: int, max_queue: int | None, timeout: float | None) -> None:
        self.limit = limit
        self.max_queue = max_queue
        self.timeout = timeout
        self.inside = 0
        self._waiters: deque[_Waiter] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def enter(self) -> bool:
        """Take a free slot without waiting; False when the request has to queue."""
        if self.inside < self.limit and not self._waiters:
            self.inside += 1
            return True
        return False

    async def acquire(
        self, monitor: ConcurrencyMonitor, watch: ClientWatch | None = None
    ) -> Verdict:
        """Wait for a slot in FIFO order. ``REJECTED``: the queue is full or the wait timed
        out; ``LEFT``: ``watch`` saw the client hang up. Only ``ADMITTED`` owns a slot."""
        if self.enter():
            return Verdict.ADMITTED
        if self.max_queue is not None and len(self._waiters) >= self.max_queue:
            return Verdict.REJECTED
        waiter = _Waiter()
        self._waiters.append(waiter)
        with monitor.queued(GATE_QUEUE):
            try:
                with anyio.fail_after(self.timeout):  # None: no time limit
                    if watch is None:
                        await waiter.event.wait()
                    else:
                        async with anyio.create_task_group() as group:
                            group.start_soon(watch.listen, group.cancel_scope)
                            await waiter.event.wait()
                            group.cancel_scope.cancel()
            except TimeoutError:
                # A slot that arrived just as the time ran out is taken, not lost.
                return Verdict.ADMITTED if self._handed(waiter) else Verdict.REJECTED
            except BaseException:
                if self._handed(waiter):
                    self.release()
                raise
            if watch is not None and watch.gone:
                if self._handed(waiter):
                    self.release()
                return Verdict.LEFT
        return Verdict.ADMITTED

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
