"""The counting state: how many requests are in flight, per endpoint, exactly.

Everything on the request path is kept to a handful of integer and dictionary operations: no
I/O, no plugin call, no formatting. The operations themselves are the counting kernel's (the C
one of ``_counting.c`` where it was built, else the Python one of ``_kernel.py``; both are
exact from any number of threads). Reading the state happens through
:meth:`ConcurrencyMonitor.snapshot`, which copies each group's counters in one step, so every
snapshot is internally consistent (the endpoint actives add up to the total, nothing is
negative) no matter how many threads are counting.

A request is counted by a :class:`Ticket`: ``begin`` fixes the endpoint key and the start time,
``finish`` closes it exactly once. Closing twice is a no-op, so a finish path that runs twice
(an exception raised while handling another, a ``close()`` called by both the server and the
garbage collector) can never drive a gauge negative.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import socket
import threading
import weakref
from datetime import UTC, datetime
from time import perf_counter
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from concmon import _kernel
from concmon.snapshot import EndpointStats, QueueStats, Snapshot, SystemStats

logger = logging.getLogger("concmon")

OVERFLOW_NAME: Final = "<overflow>"
"""Where new endpoint names are counted once the cardinality limit is reached."""

DEFAULT_MAX_ENDPOINTS: Final = 500


class Outcome(enum.Enum):
    """How a request ended. ``failed`` and ``cancelled`` are both also ``completed``."""

    OK = "ok"
    FAILED = "failed"
    CANCELLED = "cancelled"


_OK = Outcome.OK
_FAILED = Outcome.FAILED


def _load_kernel() -> tuple[Any, str]:
    """The C kernel when it was built and not switched off, else the Python one."""
    if os.environ.get("CONCMON_PURE_PYTHON", "").strip().lower() not in ("", "0", "false", "no"):
        return _kernel, "python"
    try:
        from concmon import _counting
    except ImportError:  # no compiler at install time, or an interpreter without the GIL
        return _kernel, "python"
    return _counting, "c"


if TYPE_CHECKING:
    from concmon._kernel import Counters, GroupBase, Ticket

    KERNEL: str
else:
    _impl, KERNEL = _load_kernel()
    _impl.setup(_OK, _FAILED)
    Counters, GroupBase, Ticket = _impl.Counters, _impl.GroupBase, _impl.Ticket
    """Which counting kernel this process runs: ``"c"`` or ``"python"`` (see docs/performance.md).

    ``CONCMON_PURE_PYTHON=1`` in the environment selects the Python one."""


class _Orphanage(GroupBase):
    """Where counters go when their monitor is reset (or the process forked): a ticket opened
    before the reset still finishes without error, but against state nobody reads."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        GroupBase.__init__(self)
        self._lock = threading.Lock()


_ORPHANS: Final = _Orphanage()

_new_ticket = object.__new__


def _null_ticket() -> Ticket:
    ticket: Ticket = _new_ticket(Ticket)
    ticket._counters = None
    ticket.started = 0.0
    return ticket


_NULL_TICKET: Final = _null_ticket()


class EndpointGroup(GroupBase):
    """Endpoints of one kind (HTTP requests, WebSocket connections or background tasks).

    The counting itself (``admit``, ``increment``, ``Ticket.finish``) is the kernel's; this
    class adds names, their limit and the reading.
    """

    __slots__ = (
        "_lock",
        "_max",
        "_monitor",
        "_overflow_warned",
        "_unbalanced_reported",
        "kind",
    )

    def __init__(self, monitor: ConcurrencyMonitor, kind: str) -> None:
        GroupBase.__init__(self)
        self._monitor = monitor
        self.kind = kind
        self._lock = monitor._lock
        self._max = monitor.max_endpoints
        self._overflow_warned = False
        self._unbalanced_reported: set[str] = set()

    def _clear(self) -> None:
        """Start empty; counters still held by open tickets go to the orphanage (lock held)."""
        self._orphan_all(_ORPHANS)

    def _add_locked(self, name: str) -> Counters:
        with self._lock:
            counters = self.endpoints.get(name)
            if counters is None:
                counters = self._add(name)
            return counters

    def _add(self, name: str) -> Counters:
        endpoints = self.endpoints
        if len(endpoints) - (OVERFLOW_NAME in endpoints) >= self._max:
            counters = endpoints.get(OVERFLOW_NAME)
            if counters is None:
                counters = self._insert(OVERFLOW_NAME)
            if not self._overflow_warned:
                self._overflow_warned = True
                logger.warning(
                    "concmon: more than %d distinct %s endpoint names (CONCMON_MAX_ENDPOINTS); "
                    "new names are counted under %r from now on",
                    self._max,
                    self.kind,
                    OVERFLOW_NAME,
                )
            return counters
        return self._insert(name)

    def _insert(self, name: str) -> Counters:
        counters = Counters(self)
        # The only write to the kernel's dict besides its own: one key, one step under the GIL,
        # so the C kernel's look-ups (which take no lock) see the dict before or after it.
        self.endpoints[name] = counters
        return counters

    def _lookup(self, name: str) -> Counters | None:
        endpoints = self.endpoints
        counters = endpoints.get(name)
        if counters is None and len(endpoints) - (OVERFLOW_NAME in endpoints) >= self._max:
            counters = endpoints.get(OVERFLOW_NAME)
        return counters

    def begin(self, name: str) -> Ticket:
        """Count a request to ``name`` as active; returns the ticket that ends it."""
        ticket: Ticket = _new_ticket(Ticket)
        self.admit(ticket, name)
        return ticket

    # ``admit(ticket, name)`` is the kernel's. For adapters: a subclass of :class:`Ticket` with
    # slots of its own holds the adapter's per-request state and the counters' ticket in one
    # object (one allocation per request, not two), and can exist before the request's name is
    # known. ``ticket`` must be new (made with ``object.__new__``, never admitted before).

    def decrement(self, name: str, outcome: Outcome) -> bool:
        """Count one finish on ``name``, paired by name with ``increment``."""
        if self._decrement(name, outcome):
            return True
        self._report_unbalanced(name)
        return False

    def _report_unbalanced(self, name: str) -> None:
        # A decrement without its increment is a bug in the caller; make it loud but never let
        # it drive a gauge negative. Reported once per name so a hot loop cannot flood the log.
        with self._lock:
            if name in self._unbalanced_reported or len(self._unbalanced_reported) >= self._max:
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

    def reject(self, name: str) -> None:
        with self._lock:
            c = self.endpoints.get(name)
            if c is None:
                c = self._add(name)
            c.reject()

    def _collect(
        self, now: float, interval: float, reset: bool
    ) -> tuple[int, int, int, dict[str, EndpointStats]]:
        """The group's active, peak and interval peak and its endpoints' figures (lock held)."""
        active, peak, interval_peak, taken = self._take(now, interval, reset)
        return active, peak, interval_peak, {name: _stats(f, interval) for name, f in taken}


def _stats(f: _kernel.Figures, interval: float) -> EndpointStats:
    active, peak, interval_peak, completed, failed, cancelled, rejected, count = f[:8]
    dur_sum, dur_max, area = f[8:]
    # Clamped: float rounding in the sums must never show as a negative mean.
    area = max(area, 0.0)
    return EndpointStats(
        active=active,
        peak=peak,
        interval_peak=interval_peak,
        avg_active=round(area / interval, 3) + 0.0 if interval > 0 else float(active),
        total=completed + active,
        completed=completed,
        failed=failed,
        cancelled=cancelled,
        rejected=rejected,
        avg_ms=round(dur_sum / count * 1000.0, 3) if count else None,
        max_ms=round(dur_max * 1000.0, 3) if count else None,
    )


class _DisabledGroup(EndpointGroup):
    """A switched-off group: the same layout, every counting call a no-op.

    Switching is done by changing the group's class, so the enabled path carries no flag test.
    """

    __slots__ = ()

    def begin(self, name: str) -> Ticket:
        return _NULL_TICKET

    def admit(self, ticket: Ticket, name: str) -> None:
        ticket._counters = None  # closed from the start: finish() counts nothing
        ticket.started = 0.0  # never read (as on the null ticket): no clock read when off

    def increment(self, name: str) -> None:
        return None

    def decrement(self, name: str, outcome: Outcome) -> bool:
        return False

    def reject(self, name: str) -> None:
        return None


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
        self._ticket = _NULL_TICKET

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
        self._ticket.finish(outcome_for(exc_type))


def outcome_for(exc_type: type[BaseException] | None) -> Outcome:
    """The outcome of a block that ended with ``exc_type`` (``None`` when it returned)."""
    if exc_type is None:
        return _OK
    if issubclass(exc_type, (asyncio.CancelledError, GeneratorExit)):
        return Outcome.CANCELLED
    return _FAILED


class ConcurrencyMonitor:
    """Exact, thread-safe counters of in-flight work, per endpoint.

    One process normally has one monitor, made by :func:`concmon.init_monitor`; creating one by
    hand is fine for tests and for embedding. All methods are safe to call from any thread and
    from async code; none of them blocks on anything but a short internal lock.
    """

    def __init__(
        self,
        *,
        enabled: bool = True,
        max_endpoints: int = DEFAULT_MAX_ENDPOINTS,
    ) -> None:
        if max_endpoints < 1:
            raise ValueError("max_endpoints must be at least 1")
        self._enabled = enabled
        self.max_endpoints = max_endpoints
        self._lock = threading.Lock()
        self.http = EndpointGroup(self, "http")
        self.websocket = EndpointGroup(self, "websocket")
        self.background = EndpointGroup(self, "background")
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
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = value
        for group in self._groups:
            group.__class__ = EndpointGroup if value else _DisabledGroup

    def _reset_process_state(self) -> None:
        now = perf_counter()
        self.pid = os.getpid()
        self._started = now
        self._interval_started = now
        self._queues: dict[str, _QueueCounters] = {}
        self._queue_depth = 0
        self._queue_peak = 0
        self._loop_lag: float | None = None
        for group in self._groups:
            group._lock = self._lock
            group._clear()

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
            outcome = _OK if success else _FAILED
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
        if not self._enabled:
            return
        with self._lock:
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
        depth = q.tracked + q.external + delta
        if depth > q.peak:
            q.peak = depth
        total = self._queue_depth + delta
        self._queue_depth = total
        if total > self._queue_peak:
            self._queue_peak = total

    def _queue_enter(self, source: str) -> float:
        if not self._enabled:
            return 0.0
        with self._lock:
            q = self._queue(source)
            self._queue_change(q, 1)
            q.tracked += 1
        return perf_counter()

    def _queue_exit(self, source: str, started: float) -> float:
        if not self._enabled:
            return 0.0
        waited = perf_counter() - started
        with self._lock:
            q = self._queue(source)
            if q.tracked <= 0:  # reset (fork) while waiting: nothing of ours to remove
                return waited
            self._queue_change(q, -1)
            q.tracked -= 1
            q.waited += 1
            q.wait_sum += waited
            if waited > q.wait_max:
                q.wait_max = waited
            q.waited_all += 1
            q.wait_sum_all += waited
        return waited

    def queue_wait_totals(self) -> dict[str, tuple[int, float]]:
        """Per queue, waits finished and seconds waited since the process started.

        Unlike the snapshot's interval figures these never restart, which is what a counter in
        an exporter needs.
        """
        with self._lock:
            return {name: (q.waited_all, q.wait_sum_all) for name, q in self._queues.items()}

    # -- figures set by adapters ------------------------------------------------------------

    def record_loop_lag(self, seconds: float) -> None:
        """Record how late the event loop ran a scheduled callback; the interval keeps the max."""
        with self._lock:
            if self._loop_lag is None or seconds > self._loop_lag:
                self._loop_lag = seconds

    def count_sink_error(self, sink: str) -> None:
        with self._lock:
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
        with self._lock:
            now = perf_counter()
            interval = now - self._interval_started
            active, peak, interval_peak, endpoints = self.http._collect(now, interval, reset)
            websockets = self.websocket._collect(now, interval, reset)[3]
            background = self.background._collect(now, interval, reset)[3]
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
            total=sum(e.total for e in values),
            completed=sum(e.completed for e in values),
            failed=sum(e.failed for e in values),
            cancelled=sum(e.cancelled for e in values),
            rejected=sum(e.rejected for e in values),
            queue_depth=queue_depth,
            queue_peak=queue_peak,
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
        with self._lock:
            self.sink_errors = {}
            self._reset_process_state()


# Forking while another thread holds a monitor's lock would leave the child with a lock that
# nobody can release. Hold every lock across fork() and give the child fresh ones and fresh
# counters: the parent's in-flight requests are not the child's.
_MONITORS: weakref.WeakSet[ConcurrencyMonitor] = weakref.WeakSet()
_held: list[threading.Lock] = []


def _before_fork() -> None:
    for monitor in list(_MONITORS):
        monitor._lock.acquire()
        _held.append(monitor._lock)


def _after_fork_in_parent() -> None:
    while _held:
        _held.pop().release()


def _after_fork_in_child() -> None:
    while _held:
        _held.pop().release()
    _ORPHANS._lock = threading.Lock()
    for monitor in list(_MONITORS):
        monitor._lock = threading.Lock()
        monitor.sink_errors = {}
        monitor._reset_process_state()


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)


__all__ = [
    "DEFAULT_MAX_ENDPOINTS",
    "KERNEL",
    "OVERFLOW_NAME",
    "ConcurrencyMonitor",
    "EndpointGroup",
    "Outcome",
    "QueueWait",
    "Ticket",
    "Tracked",
    "outcome_for",
]
