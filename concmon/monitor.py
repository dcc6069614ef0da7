"""The counting state: how many requests are in flight, per endpoint, exactly.

A request is counted by a :class:`Ticket`: ``begin`` fixes the endpoint key and the start time,
``finish`` closes it exactly once. Closing twice is a no-op, so a finish path that runs twice
(an exception raised while handling another, a ``close()`` called by both the server and the
garbage collector) can never drive a gauge negative.

Every change and every reading happens under one process-wide lock, held for a few dictionary
and integer operations, so the counts are exact from any number of threads, with or without the
GIL, and every snapshot is internally consistent. The lock is re-entrant for one reason: the
garbage collector may run a finish (a WSGI response freed without ``close()``) on a thread that
is itself inside the lock. Such a finish never waits; it is queued and counted when the section
it interrupted ends (see :class:`_Guard`).

Each finish also lands in one bucket of each distribution it belongs to (its duration, the time
to its response head and first body byte, the time it queued before the application): a fixed
array of counts per endpoint, found by bisection, so recording costs the same for any value.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import socket
import threading
import weakref
from bisect import bisect_left
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from time import perf_counter
from types import TracebackType
from typing import Final

from concmon.snapshot import (
    Distribution,
    EndpointStats,
    QueueStats,
    Snapshot,
    SystemStats,
    check_bounds,
)

logger = logging.getLogger("concmon")

Clock = Callable[[], float]
"""A monotonic clock in seconds; ``time.perf_counter`` unless a test injects a fake one."""

OVERFLOW_NAME: Final = "<overflow>"
"""Where new endpoint names are counted once the cardinality limit is reached."""

DEFAULT_MAX_ENDPOINTS: Final = 500

UNMATCHED: Final = "<unmatched>"
"""Where a request is counted that no route handled: the router found none (a 404), or the
request was answered before the router chose one (a middleware's own reply)."""


DEFAULT_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
"""Bucket bounds in seconds, 1 ms to 5 min: a model's answer can stream for minutes."""

METHODS: Final = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")
)
"""The methods counted under their own name; any other (or none told) is ``other``."""

_STATUS_CLASSES: Final = ("none", "1xx", "2xx", "3xx", "4xx", "5xx")
"""``status // 100`` -> its class; 0 (no response head sent) is ``none``."""


class Outcome(enum.Enum):
    """How a request ended. ``failed`` and ``cancelled`` are both also ``completed``."""

    OK = "ok"
    FAILED = "failed"
    CANCELLED = "cancelled"


# Read on every finish as module constants: ``Outcome.FAILED`` goes through the enum's class
# machinery, which on Python 3.11 costs about 0.9k instructions per read.
_OK: Final = Outcome.OK
_FAILED: Final = Outcome.FAILED
_CANCELLED: Final = Outcome.CANCELLED


class _Guard:
    """The one lock every counter is changed and read under, and the finishes it deferred.

    A finish that finds the lock already held by its own thread (it gets in only because the
    lock is re-entrant) interrupted a section of that thread: the collector ran it. It must
    neither wait nor touch counters half-way through a change, so it leaves its figures in
    ``deferred``, and the section applies them as it ends.
    """

    __slots__ = ("deferred", "lock")

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.deferred: list[tuple[Counters, Ticket | None, float, Outcome, str]] = []

    def __enter__(self) -> None:
        self.lock.acquire()

    def __exit__(self, *exc: object) -> None:
        try:
            self.apply_deferred()
        finally:
            self.lock.release()

    def apply_deferred(self) -> None:
        """Count the finishes deferred so far (the lock is held)."""
        deferred = self.deferred
        while deferred:
            counters, ticket, now, outcome, unrouted = deferred.pop()
            if counters is counters.group.unrouted:
                counters = _route(counters, unrouted, now)
            counters.end(ticket, now, outcome)


_guard = _Guard()


class _Recorder:
    """One distribution being recorded (changed under the guard only).

    ``counts`` never restart (Prometheus buckets are counters); the interval's counts are
    ``counts`` less ``mark``, their values when the interval began.
    """

    __slots__ = ("bounds", "counts", "interval_max", "interval_sum", "mark", "max", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.mark = tuple(self.counts)
        self.sum = 0.0
        self.max = 0.0
        self.interval_sum = 0.0
        self.interval_max = 0.0

    def add(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.interval_sum += value
        if value > self.interval_max:
            self.interval_max = value
            if value > self.max:
                self.max = value

    def read(self, reset: bool) -> tuple[Distribution, Distribution]:
        """The interval's distribution and the lifetime's; ``reset`` starts a new interval."""
        counts = tuple(self.counts)
        interval = tuple(c - m for c, m in zip(counts, self.mark, strict=True))
        seen = any(interval)
        figures = (
            Distribution(
                self.bounds, interval, self.interval_sum, self.interval_max if seen else None
            ),
            Distribution(self.bounds, counts, self.sum, self.max if any(counts) else None),
        )
        if reset:
            self.mark = counts
            self.interval_sum = 0.0
            self.interval_max = 0.0
        return figures


class Counters:
    """The counters of one endpoint (changed under the guard only).

    ``total`` is not stored: it is ``completed + active`` by construction, so it can never
    disagree with them.
    """

    __slots__ = (
        "a0",
        "active",
        "cancelled",
        "completed",
        "completed_mark",
        "duration",
        "failed",
        "first_byte",
        "group",
        "head",
        "interval_peak",
        "moment",
        "peak",
        "queued",
        "rejected",
        "responses",
        "untimed",
    )

    def __init__(self, group: EndpointGroup) -> None:
        self.group = group
        self.active = 0
        self.peak = 0
        self.interval_peak = 0
        self.completed = 0
        self.failed = 0
        self.cancelled = 0
        self.rejected = 0
        # The requests finished in this interval are `completed` less its value at the interval
        # start; all but those that had no start time are in `duration`.
        self.completed_mark = 0
        self.untimed = 0
        bounds = group.bounds
        self.duration = _Recorder(bounds)
        self.head = _Recorder(bounds)
        self.first_byte = _Recorder(bounds)
        self.queued = _Recorder(bounds)
        # (method, status // 100, outcome) -> finished HTTP requests.
        self.responses: dict[tuple[str, int, Outcome], int] = {}
        # The time-weighted mean of `active` needs its integral over the interval. Integrating by
        # parts, that integral is active(T)*T - active(t0)*t0 + sum(end times) - sum(start
        # times) of the changes in between: one subtraction per begin, one addition per finish.
        self.a0 = 0
        self.moment = 0.0

    def end(self, ticket: Ticket | None, now: float, outcome: Outcome) -> None:
        """One finish; ``ticket`` is None for a finish paired by name (no duration)."""
        self.moment += now
        self.active -= 1
        self.completed += 1
        group = self.group
        group.active -= 1
        if outcome is _FAILED:
            self.failed += 1
        elif outcome is _CANCELLED:
            self.cancelled += 1
        if ticket is None:
            self.untimed += 1
            key = ("other", 0, outcome)
        else:
            started = ticket.started
            self.duration.add(now - started)
            if ticket.head is not None:
                self.head.add(ticket.head - started)
            if ticket.first is not None:
                self.first_byte.add(ticket.first - started)
            if ticket.before is not None:
                self.queued.add(ticket.before)
            key = (ticket.method, ticket.status // 100, outcome)
        if group.responses:
            responses = self.responses
            responses[key] = responses.get(key, 0) + 1

    def stats(self, now: float, interval: float, reset: bool) -> EndpointStats:
        """The figures a snapshot shows; ``reset`` starts a new interval."""
        finished = self.completed - self.completed_mark
        timed = finished - self.untimed
        # Clamped: float rounding in the sums must never show as a negative mean.
        area = max(self.active * now - self.a0 * (now - interval) + self.moment, 0.0)
        duration, duration_all = self.duration.read(reset)
        no: tuple[None, None] = (None, None)
        http = self.group.responses
        head = self.head.read(reset) if http else no
        ttfb = self.first_byte.read(reset) if http else no
        queued = self.queued.read(reset) if http else no
        stats = EndpointStats(
            active=self.active,
            peak=self.peak,
            interval_peak=self.interval_peak,
            avg_active=round(area / interval, 3) + 0.0 if interval > 0 else float(self.active),
            total=self.completed + self.active,
            completed=self.completed,
            failed=self.failed,
            cancelled=self.cancelled,
            rejected=self.rejected,
            avg_ms=round(duration.sum_s / timed * 1000.0, 3) if timed else None,
            max_ms=duration.max_ms if timed else None,
            rate=round(finished / interval, 3) if interval > 0 else 0.0,
            duration=duration,
            duration_all=duration_all,
            responses={
                f"{method} {_STATUS_CLASSES[status] if 0 <= status < 6 else 'none'} "
                f"{outcome.value}": n
                for (method, status, outcome), n in self.responses.items()
            },
            head=head[0],
            head_all=head[1],
            ttfb=ttfb[0],
            ttfb_all=ttfb[1],
            queued=queued[0],
            queued_all=queued[1],
        )
        if reset:
            self.interval_peak = self.active
            self.a0 = self.active
            self.moment = 0.0
            self.completed_mark = self.completed
            self.untimed = 0
        return stats


class Ticket:
    """One counted request. Made by ``begin``; ``finish`` closes it exactly once.

    An HTTP adapter tells it when the response head went out (:meth:`respond`), when the first
    body byte did (:meth:`first_byte`), and how long the request queued before the
    application (:meth:`waited_before`); each lands in its distribution as the request
    finishes, so every distribution counts the same finished requests.
    """

    __slots__ = ("_counters", "before", "first", "head", "method", "started", "status")

    def __init__(self, counters: Counters | None, started: float, method: str = "") -> None:
        self._counters = counters
        self.started = started
        self.method = method if method in METHODS else "other"
        self.status = 0
        self.head: float | None = None
        self.first: float | None = None
        self.before: float | None = None

    def respond(self, status: int) -> None:
        """The response head goes out now with ``status``; only the first call counts."""
        counters = self._counters
        if self.head is None and counters is not None:
            self.head = counters.group.clock()
            self.status = status

    def first_byte(self) -> None:
        """The first byte of the body goes out now (or the body ended empty); first call counts."""
        counters = self._counters
        if self.first is None and counters is not None:
            self.first = counters.group.clock()

    def waited_before(self, seconds: float) -> None:
        """The request queued ``seconds`` before the application saw it (clamped at 0)."""
        self.before = seconds if seconds > 0.0 else 0.0

    def finish(self, outcome: Outcome = Outcome.OK, unrouted: str = UNMATCHED) -> bool:
        """Close the request; returns False (and counts nothing) if it was already closed.

        A request admitted but never routed (see :meth:`EndpointGroup.admit`) is counted under
        ``unrouted`` as it finishes.
        """
        counters = self._counters
        if counters is None:
            return False
        group = counters.group
        now = group.clock()
        guard = _guard
        lock = guard.lock
        # acquire/release, not `with`: 1.1k instructions less each; 8 % of the ASGI adapter for two.
        lock.acquire()
        try:
            if self._counters is None:  # another thread closed it first
                return False
            self._counters = None
            # Held twice by this thread: the collector ran this inside one of its sections.
            if lock._recursion_count() > 1:  # type: ignore[attr-defined]
                guard.deferred.append((counters, self, now, outcome, unrouted))
            else:
                if counters is group.unrouted:
                    counters = _route(counters, unrouted, now)
                counters.end(self, now, outcome)
                if guard.deferred:
                    guard.apply_deferred()
        finally:
            lock.release()
        return True

    def route(self, name: str) -> bool:
        """Count an admitted request under ``name`` from now on, the router having chosen it.

        Only the first call moves it; a ticket begun under a name, or closed, stays as it is.
        The duration still runs from admission.
        """
        counters = self._counters
        if counters is None or counters is not counters.group.unrouted:
            return False
        now = counters.group.clock()
        guard = _guard
        lock = guard.lock
        lock.acquire()  # not `with`, as in finish: this runs once per routed request
        try:
            if self._counters is not counters:
                return False
            self._counters = _route(counters, name, now)
            if guard.deferred:
                guard.apply_deferred()
        finally:
            lock.release()
        return True

    @property
    def open(self) -> bool:
        """Whether the request is still counted active."""
        return self._counters is not None

    @property
    def routed(self) -> bool:
        """Whether the request is counted under an endpoint (not waiting for its route)."""
        counters = self._counters
        return counters is not None and counters is not counters.group.unrouted


def _route(unrouted: Counters, name: str, now: float) -> Counters:
    """Move one request from its group's unrouted counters to ``name``'s (guard held)."""
    group = unrouted.group
    unrouted.active -= 1
    unrouted.completed += 1  # handed to a route: the unrouted stage's own completion
    counters = group.endpoints.get(name)
    if counters is None:
        counters = group._counters(name)
    _enter(counters, now)
    return counters


def _enter(counters: Counters, now: float) -> None:
    """One more request active on an endpoint from ``now`` (guard held)."""
    counters.moment -= now  # see Counters.a0
    active = counters.active = counters.active + 1
    if active > counters.interval_peak:
        counters.interval_peak = active
        if active > counters.peak:
            counters.peak = active


def _enter_group(group: EndpointGroup) -> None:
    """One more request active in ``group`` (guard held)."""
    active = group.active = group.active + 1
    if active > group.interval_peak:
        group.interval_peak = active
        if active > group.peak:
            group.peak = active


_CLOSED: Final = Ticket(None, 0.0)
"""What a switched-off group hands out: closed from the start, so finish() counts nothing."""


class EndpointGroup:
    """Endpoints of one kind (HTTP requests, WebSocket connections or background tasks)."""

    __slots__ = (
        "_overflow_warned",
        "_unbalanced_reported",
        "active",
        "bounds",
        "clock",
        "enabled",
        "endpoints",
        "interval_peak",
        "kind",
        "max_endpoints",
        "peak",
        "responses",
        "unrouted",
    )

    def __init__(
        self,
        kind: str,
        max_endpoints: int,
        clock: Clock = perf_counter,
        bounds: tuple[float, ...] = DEFAULT_BUCKETS,
    ) -> None:
        self.kind = kind
        self.max_endpoints = max_endpoints
        self.clock = clock
        self.bounds = bounds
        # Only HTTP requests have a method, a status and a response to time.
        self.responses = kind == "http"
        self.enabled = True
        self.endpoints: dict[str, Counters] = {}
        self.active = 0
        self.peak = 0
        self.interval_peak = 0
        # The requests admitted whose route is not chosen yet: in ``active``, in no endpoint.
        self.unrouted = Counters(self)
        self._overflow_warned = False
        self._unbalanced_reported: set[str] = set()

    # -- the request path ---------------------------------------------------------------------

    def begin(self, name: str, method: str = "") -> Ticket:
        """Count a request to ``name`` as active; returns the ticket that ends it."""
        if not self.enabled:
            return _CLOSED
        now = self.clock()
        guard = _guard
        lock = guard.lock
        lock.acquire()  # not `with`, as in Ticket.finish
        try:
            counters = self.endpoints.get(name)
            if counters is None:
                counters = self._counters(name)
            _enter(counters, now)
            _enter_group(self)
            if guard.deferred:
                guard.apply_deferred()
        finally:
            lock.release()
        return Ticket(counters, now, method)

    def admit(self, method: str = "") -> Ticket:
        """Count a request as active before its endpoint is known; ``ticket.route(name)``
        names it when the application's router has chosen, and a ticket never routed
        finishes under ``<unmatched>``. Until then it is active in the group, in no endpoint.
        """
        if not self.enabled:
            return _CLOSED
        now = self.clock()
        guard = _guard
        lock = guard.lock
        lock.acquire()  # not `with`, as in Ticket.finish
        try:
            unrouted = self.unrouted
            unrouted.active += 1
            _enter_group(self)
            if guard.deferred:
                guard.apply_deferred()
        finally:
            lock.release()
        return Ticket(unrouted, now, method)

    def increment(self, name: str) -> None:
        """``begin`` without keeping the ticket, for callers that pair by name (``decrement``)."""
        self.begin(name)

    def decrement(self, name: str, outcome: Outcome) -> bool:
        """Count one finish on ``name``, paired by name with ``increment``."""
        if not self.enabled:
            return False
        now = self.clock()
        with _guard:
            counters = self._find(name)
            if counters is not None and counters.active > 0:
                counters.end(None, now, outcome)
                return True
        self._report_unbalanced(name)
        return False

    def abandon(self, name: str, waited: float, method: str = "") -> None:
        """Count a request whose client left after ``waited`` seconds, before it became
        active: in ``total`` and ``completed`` as cancelled, never in ``active`` or a peak;
        its duration is the wait."""
        if self.enabled:
            with _guard:
                counters = self._counters(name)
                counters.completed += 1
                counters.cancelled += 1
                counters.duration.add(waited if waited > 0.0 else 0.0)
                if self.responses:
                    key = (method if method in METHODS else "other", 0, _CANCELLED)
                    counters.responses[key] = counters.responses.get(key, 0) + 1

    def reject(self, name: str) -> None:
        """Count a request turned away before it became active."""
        if self.enabled:
            with _guard:
                self._counters(name).rejected += 1

    # -- names --------------------------------------------------------------------------------

    def _full(self) -> bool:
        return len(self.endpoints) - (OVERFLOW_NAME in self.endpoints) >= self.max_endpoints

    def _find(self, name: str) -> Counters | None:
        """The counters ``name`` is counted under, None if there are none yet (guard held)."""
        counters = self.endpoints.get(name)
        if counters is None and self._full():
            counters = self.endpoints.get(OVERFLOW_NAME)
        return counters

    def _counters(self, name: str) -> Counters:
        """The counters ``name`` is counted under, added if new (guard held)."""
        counters = self._find(name)
        if counters is None:
            if self._full():
                name = OVERFLOW_NAME
                if not self._overflow_warned:
                    self._overflow_warned = True
                    logger.warning(
                        "concmon: more than %d distinct %s endpoint names "
                        "(CONCMON_MAX_ENDPOINTS); new names are counted under %r from now on",
                        self.max_endpoints,
                        self.kind,
                        OVERFLOW_NAME,
                    )
            counters = self.endpoints[name] = Counters(self)
        return counters

    def _report_unbalanced(self, name: str) -> None:
        # A decrement without its increment is a bug in the caller; make it loud but never let
        # it drive a gauge negative. Reported once per name so a hot loop cannot flood the log.
        with _guard:
            if name in self._unbalanced_reported:
                return
            if len(self._unbalanced_reported) >= self.max_endpoints:
                return
            self._unbalanced_reported.add(name)
        logger.error(
            "concmon: decrement of %s endpoint %r without a matching increment; ignored "
            "(counters stay exact). Pair every increment_task() with one decrement_task(), or "
            "use track()/track_task() which pair them for you.",
            self.kind,
            name,
            stack_info=True,
        )

    # -- reading (the guard is held) ------------------------------------------------------------

    def stats(self, now: float, interval: float, reset: bool) -> dict[str, EndpointStats]:
        figures = {name: c.stats(now, interval, reset) for name, c in self.endpoints.items()}
        if reset:
            self.interval_peak = self.active
        return figures

    def orphan_all(self) -> None:
        """Start empty; counters still held by open tickets finish in the orphanage."""
        for counters in (*self.endpoints.values(), self.unrouted):
            counters.group = _ORPHANS
            _ORPHANS.active += counters.active
        self.endpoints = {}
        self.unrouted = Counters(self)
        self.active = 0
        self.peak = 0
        self.interval_peak = 0


_ORPHANS: Final = EndpointGroup("orphaned", DEFAULT_MAX_ENDPOINTS)
"""Where counters go when their monitor is reset (or the process forked): a ticket opened
before the reset still finishes without error, against state nobody reads."""


class _QueueCounters:
    __slots__ = (
        "external",
        "peak",
        "tracked",
        "wait_max",
        "wait_sum",
        "wait_sum_all",
        "waited",
        "waited_all",
    )

    def __init__(self) -> None:
        self.tracked = 0
        self.external = 0
        self.peak = 0
        self.waited = 0
        self.wait_sum = 0.0
        self.wait_max = 0.0
        # Never reset by a report: exporters need monotonic counts (a Prometheus summary).
        self.waited_all = 0
        self.wait_sum_all = 0.0

    def stats(self, reset: bool) -> QueueStats:
        depth = self.tracked + self.external
        n = self.waited
        stats = QueueStats(
            depth=depth,
            peak=self.peak,
            waited=n,
            wait_avg_ms=round(self.wait_sum / n * 1000.0, 3) if n else None,
            wait_max_ms=round(self.wait_max * 1000.0, 3) if n else None,
        )
        if reset:
            self.peak = depth
            self.waited = 0
            self.wait_sum = 0.0
            self.wait_max = 0.0
        return stats


class QueueWait:
    """Counts one waiter in a queue from ``__enter__`` to ``__exit__``; sync and async."""

    __slots__ = ("_monitor", "_open", "_source", "_started")

    def __init__(self, monitor: ConcurrencyMonitor, source: str) -> None:
        self._monitor = monitor
        self._source = source
        self._started = 0.0
        self._open = False

    def enter(self) -> None:
        if not self._open:
            self._started = self._monitor._queue_enter(self._source)
            self._open = True

    def exit(self) -> float:
        """Stop waiting; returns the wait in seconds (0.0 if it was not waiting)."""
        if not self._open:
            return 0.0
        self._open = False
        return self._monitor._queue_exit(self._source, self._started)

    def __enter__(self) -> QueueWait:
        self.enter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.exit()

    async def __aenter__(self) -> QueueWait:
        self.enter()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.exit()


class Tracked:
    """Context manager (sync and async) that counts one request and classifies its outcome.

    An exception counts as failed, cancellation (``asyncio.CancelledError``) as cancelled; both
    are re-raised untouched. ``GeneratorExit`` (a consumer that stopped early) counts as
    cancelled too.
    """

    __slots__ = ("_endpoint", "_group", "_ticket")

    def __init__(self, group: EndpointGroup, endpoint: str) -> None:
        self._group = group
        self._endpoint = endpoint
        self._ticket = _CLOSED

    def __enter__(self) -> Ticket:
        self._ticket = self._group.begin(self._endpoint)
        return self._ticket

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._ticket.finish(outcome_for(exc_type))

    async def __aenter__(self) -> Ticket:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def outcome_for(exc_type: type[BaseException] | None) -> Outcome:
    """The outcome of a block that ended with ``exc_type`` (``None`` when it returned)."""
    if exc_type is None:
        return _OK
    if issubclass(exc_type, (asyncio.CancelledError, GeneratorExit)):
        return _CANCELLED
    return _FAILED


class ConcurrencyMonitor:
    """Exact, thread-safe counters of in-flight work, per endpoint.

    One process normally has one monitor, made by :func:`concmon.init_monitor`; creating one by
    hand is fine for tests and for embedding. All methods are safe to call from any thread and
    from async code; none of them blocks on anything but a short internal lock. ``clock`` is
    the monotonic clock durations and intervals are read from (``concmon.testing.FakeClock``
    steps it in tests).
    """

    def __init__(
        self,
        *,
        enabled: bool = True,
        max_endpoints: int = DEFAULT_MAX_ENDPOINTS,
        clock: Clock = perf_counter,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        if max_endpoints < 1:
            raise ValueError("max_endpoints must be at least 1")
        self.max_endpoints = max_endpoints
        self.clock = clock
        self.buckets = check_bounds(buckets)
        self.http = EndpointGroup("http", max_endpoints, clock, self.buckets)
        self.websocket = EndpointGroup("websocket", max_endpoints, clock, self.buckets)
        self.background = EndpointGroup("background", max_endpoints, clock, self.buckets)
        self._groups = (self.http, self.websocket, self.background)
        self.enabled = enabled
        self.host = socket.gethostname()
        self.max_concurrency: int | None = None
        self.sink_errors: dict[str, int] = {}
        self._reset_process_state()
        _MONITORS.add(self)

    @property
    def enabled(self) -> bool:
        """Whether counting is on; off makes every tracking call a no-op."""
        return self.http.enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        for group in self._groups:
            group.enabled = value

    def _reset_process_state(self) -> None:
        now = self.clock()
        self.pid = os.getpid()
        self._started = now
        self._interval_started = now
        self._queues: dict[str, _QueueCounters] = {}
        self._queue_depth = 0
        self._queue_peak = 0
        self._loop_lag: float | None = None
        for group in self._groups:
            group.orphan_all()

    # -- the request path -------------------------------------------------------------------

    def begin(self, endpoint: str) -> Ticket:
        """Count an HTTP request to ``endpoint`` as active; ``ticket.finish(outcome)`` ends it."""
        return self.http.begin(endpoint)

    def increment_task(self, endpoint: str) -> None:
        """Count one more active request on ``endpoint`` (pair with :meth:`decrement_task`)."""
        self.http.increment(endpoint)

    def decrement_task(
        self, endpoint: str, success: bool = True, *, outcome: Outcome | None = None
    ) -> bool:
        """Count one request on ``endpoint`` as finished.

        ``success=False`` counts it failed; ``outcome`` overrides ``success`` (for example
        ``Outcome.CANCELLED``). Returns False, logs an error and changes nothing when there is
        no matching active request: the counters never go negative.
        """
        if outcome is None:
            outcome = Outcome.OK if success else Outcome.FAILED
        return self.http.decrement(endpoint, outcome)

    def track(self, endpoint: str) -> Tracked:
        """``with``/``async with`` block counted as one request to ``endpoint``."""
        return Tracked(self.http, endpoint)

    def reject(self, endpoint: str) -> None:
        """Count a request turned away by an admission limit (never active, not in ``total``)."""
        self.http.reject(endpoint)

    # -- queues -------------------------------------------------------------------------------

    def queued(self, endpoint: str, source: str | None = None) -> QueueWait:
        """``with``/``async with`` block during which one request waits in a queue.

        The queue is named ``source`` (by default the endpoint's name); its depth, peak and the
        time spent waiting appear under ``queues`` in the snapshot.
        """
        return QueueWait(self, source if source is not None else endpoint)

    def set_queue_depth(self, depth: int, source: str = "app") -> None:
        """Report the depth of a queue the application owns (a worker pool, a semaphore)."""
        if depth < 0:
            raise ValueError(f"queue depth cannot be negative, got {depth}")
        if not self.enabled:
            return
        with _guard:
            q = self._queue(source)
            self._queue_change(q, depth - q.external)
            q.external = depth

    def _queue(self, source: str) -> _QueueCounters:
        q = self._queues.get(source)
        if q is None:
            if len(self._queues) >= self.max_endpoints:
                source = OVERFLOW_NAME
                q = self._queues.get(source)
            if q is None:
                q = self._queues[source] = _QueueCounters()
        return q

    def _queue_change(self, q: _QueueCounters, delta: int) -> None:
        q.peak = max(q.peak, q.tracked + q.external + delta)
        self._queue_depth += delta
        self._queue_peak = max(self._queue_peak, self._queue_depth)

    def _queue_enter(self, source: str) -> float:
        if not self.enabled:
            return 0.0
        with _guard:
            q = self._queue(source)
            self._queue_change(q, 1)
            q.tracked += 1
        return self.clock()

    def _queue_exit(self, source: str, started: float) -> float:
        if not self.enabled:
            return 0.0
        waited = self.clock() - started
        with _guard:
            q = self._queue(source)
            if q.tracked <= 0:  # reset (fork) while waiting: nothing of ours to remove
                return waited
            self._queue_change(q, -1)
            q.tracked -= 1
            q.waited += 1
            q.wait_sum += waited
            q.wait_max = max(q.wait_max, waited)
            q.waited_all += 1
            q.wait_sum_all += waited
        return waited

    def queue_wait_totals(self) -> dict[str, tuple[int, float]]:
        """Per queue, waits finished and seconds waited since the process started.

        Unlike the snapshot's interval figures these never restart, which is what a counter in
        an exporter needs.
        """
        with _guard:
            return {name: (q.waited_all, q.wait_sum_all) for name, q in self._queues.items()}

    # -- figures set by adapters ------------------------------------------------------------

    def record_loop_lag(self, seconds: float) -> None:
        """Record how late the event loop ran a scheduled callback; the interval keeps the max."""
        with _guard:
            if self._loop_lag is None or seconds > self._loop_lag:
                self._loop_lag = seconds

    def count_sink_error(self, sink: str) -> None:
        with _guard:
            self.sink_errors[sink] = self.sink_errors.get(sink, 0) + 1

    # -- reading ------------------------------------------------------------------------------

    def snapshot(self, system: SystemStats | None = None) -> Snapshot:
        """A consistent copy of every counter now; interval figures are left running."""
        return self._collect(False, system)

    def report_snapshot(self, system: SystemStats | None = None) -> Snapshot:
        """Like :meth:`snapshot`, then start a new interval (the reporter calls this)."""
        return self._collect(True, system)

    def _collect(self, reset: bool, system: SystemStats | None) -> Snapshot:
        timestamp = datetime.now(UTC).isoformat(timespec="microseconds")
        with _guard:
            now = self.clock()
            _guard.apply_deferred()  # any a collector left behind after a section's end
            interval = now - self._interval_started
            http = self.http
            active, peak, interval_peak = http.active, http.peak, http.interval_peak
            routing = http.unrouted.active
            endpoints = http.stats(now, interval, reset)
            websockets = self.websocket.stats(now, interval, reset)
            background = self.background.stats(now, interval, reset)
            queues = {name: q.stats(reset) for name, q in self._queues.items()}
            queue_depth, queue_peak = self._queue_depth, self._queue_peak
            loop_lag = self._loop_lag
            sink_errors = dict(self.sink_errors)
            if reset:
                self._interval_started = now
                self._queue_peak = queue_depth
                self._loop_lag = None
            uptime = now - self._started
        if system is None:
            system = SystemStats()
        if loop_lag is not None:
            system = SystemStats(
                cpu_percent=system.cpu_percent,
                memory_mb=system.memory_mb,
                threads=system.threads,
                open_fds=system.open_fds,
                loop_lag_ms=round(loop_lag * 1000.0, 3),
            )
        values = endpoints.values()
        limit = self.max_concurrency
        return Snapshot(
            timestamp=timestamp,
            pid=self.pid,
            host=self.host,
            uptime_s=round(uptime, 3),
            interval_s=round(interval, 3),
            active=active,
            peak=peak,
            interval_peak=interval_peak,
            avg_active=round(sum(e.avg_active for e in values), 3),
            rate=round(sum(e.rate for e in values), 3),
            buckets_s=self.buckets,
            total=sum(e.total for e in values) + routing,
            completed=sum(e.completed for e in values),
            failed=sum(e.failed for e in values),
            cancelled=sum(e.cancelled for e in values),
            rejected=sum(e.rejected for e in values),
            queue_depth=queue_depth,
            queue_peak=queue_peak,
            routing=routing,
            saturation=round(active / limit, 4) if limit else None,
            endpoints=endpoints,
            websockets=websockets,
            background=background,
            queues=queues,
            system=system,
            sink_errors=sink_errors,
        )

    def reset(self) -> None:
        """Forget every count (a new process after ``fork`` starts from here too)."""
        with _guard:
            self.sink_errors = {}
            self._reset_process_state()


_MONITORS: weakref.WeakSet[ConcurrencyMonitor] = weakref.WeakSet()


def before_fork() -> None:
    """Hold the counting lock across ``fork()``, so the child never inherits it held."""
    _guard.lock.acquire()


def after_fork_in_parent() -> None:
    _guard.lock.release()


def after_fork_in_child() -> None:
    """Fresh lock and fresh counters: the parent's in-flight requests are not the child's."""
    global _guard
    _guard = _Guard()
    for monitor in list(_MONITORS):
        monitor.sink_errors = {}
        monitor._reset_process_state()


__all__ = [
    "DEFAULT_BUCKETS",
    "DEFAULT_MAX_ENDPOINTS",
    "METHODS",
    "OVERFLOW_NAME",
    "Clock",
    "ConcurrencyMonitor",
    "EndpointGroup",
    "Outcome",
    "QueueWait",
    "Ticket",
    "Tracked",
    "outcome_for",
]
