"""The counting kernel in Python: the reference for ``concmon/_counting.c`` and its stand-in.

Three classes hold every number a request changes: :class:`GroupBase` (one kind of endpoint),
:class:`Counters` (one endpoint) and :class:`Ticket` (one request). ``concmon.monitor`` builds
on whichever kernel it loaded; the C one is the same classes with the same results, made cheap
for the request path (two C calls per request, no lock: under the GIL each of its methods runs
as one uninterrupted step). Here every change is made under the monitor's lock instead, held
by the group as ``_lock``; ``_take`` and ``_orphan_all`` expect their caller to hold it.
"""

from __future__ import annotations

import enum
import threading
from time import perf_counter
from typing import Any

_OK: Any = None
_FAILED: Any = None

# What ``_take`` reports per endpoint, in this order (Counters._figures here, inline in C).
Figures = tuple[int, int, int, int, int, int, int, int, float, float, float]


def setup(ok: enum.Enum, failed: enum.Enum) -> None:
    """The outcome objects ``finish`` compares against (identity, not equality)."""
    global _OK, _FAILED
    _OK, _FAILED = ok, failed


now = perf_counter


class GroupBase:
    """The counting state of one kind of endpoint (HTTP requests, WebSockets, tasks)."""

    __slots__ = ("_endpoints", "active", "interval_peak", "peak")

    _lock: threading.Lock

    def __init__(self) -> None:
        self._endpoints: dict[str, Counters] = {}
        self.active = 0
        self.peak = 0
        self.interval_peak = 0

    @property
    def endpoints(self) -> dict[str, Counters]:
        """name -> Counters (read, never write: names are added by ``_add_locked``)."""
        return self._endpoints

    def _add_locked(self, name: str) -> Counters:
        """The counters of a name not seen yet (the subclass applies the cardinality limit)."""
        raise NotImplementedError

    def _lookup(self, name: str) -> Counters | None:
        raise NotImplementedError

    def admit(self, ticket: Ticket, name: str, /) -> None:
        """Count a request to ``name`` as active under ``ticket``."""
        ticket.started = now = perf_counter()
        # Set after the lock is released: nobody else has the new ticket yet.
        ticket._counters = self._count(name, now)

    def increment(self, name: str, /) -> None:
        """``admit`` without a ticket, for callers that pair by name (``_decrement``)."""
        self._count(name, perf_counter())

    def _count(self, name: str, now: float) -> Counters:
        lock = self._lock
        # acquire/release rather than ``with``: the context-manager protocol costs about as
        # much again as the lock itself, on the one path every request takes.
        lock.acquire()
        try:
            c = self._endpoints.get(name)
            if c is None:
                c = self._add(name)
            c._begin(now)
            return c
        finally:
            lock.release()

    def _decrement(self, name: str, outcome: enum.Enum, /) -> bool:
        """Count one finish on ``name``; False (nothing counted) without a matching begin."""
        now = perf_counter()
        lock = self._lock
        lock.acquire()
        try:
            c = self._endpoints.get(name)
            if c is None:
                c = self._lookup(name)
            if c is None or c.active <= 0:
                return False
            c._end(now, outcome)
            c.untimed += 1
            return True
        finally:
            lock.release()

    def _add(self, name: str) -> Counters:
        # Called with the lock held: the subclass's _add_locked takes it itself.
        raise NotImplementedError

    def _take(
        self, now: float, interval: float, reset: bool
    ) -> tuple[int, int, int, list[tuple[str, Figures]]]:
        """The group's figures and each endpoint's (see ``Figures``); the caller holds the lock."""
        taken = [(name, c._figures(now, interval, reset)) for name, c in self._endpoints.items()]
        figures = (self.active, self.peak, self.interval_peak, taken)
        if reset:
            self.interval_peak = self.active
        return figures

    def _orphan_all(self, orphans: GroupBase) -> None:
        """Hand every endpoint's counters to ``orphans`` and start empty (lock held)."""
        for counters in self._endpoints.values():
            counters.group = orphans
            orphans.active += counters.active  # its open tickets finish there
        self._endpoints = {}
        self.active = 0
        self.peak = 0
        self.interval_peak = 0


class Counters:
    """The counters of one endpoint.

    ``total`` is not stored: it is ``completed + active`` by construction, so it can never
    disagree with them, and the request path has one counter less to bump.
    """

    __slots__ = (
        "a0",
        "active",
        "cancelled",
        "completed",
        "completed_mark",
        "dur_max",
        "dur_sum",
        "failed",
        "group",
        "interval_peak",
        "moment",
        "peak",
        "rejected",
        "untimed",
    )

    def __init__(self, group: GroupBase) -> None:
        self.group = group
        self.active = 0
        self.peak = 0
        self.interval_peak = 0
        self.completed = 0
        self.failed = 0
        self.cancelled = 0
        self.rejected = 0
        # Durations of the requests finished in this interval; their count is derived from
        # `completed` (minus its value at the interval start and the untimed finishes of
        # _decrement, which has no start time).
        self.dur_sum = 0.0
        self.dur_max = 0.0
        self.completed_mark = 0
        self.untimed = 0
        # The time-weighted mean of `active` needs its integral over the interval. Integrating by
        # parts, that integral is active(T)*T - active(t0)*t0 + sum(end times) - sum(start
        # times) of the changes in between: one subtraction per begin, one addition per finish.
        self.a0 = 0
        self.moment = 0.0

    def reject(self) -> None:
        """Count one request turned away (the caller holds the lock)."""
        self.rejected += 1

    def _begin(self, now: float) -> None:
        self.moment -= now
        a = self.active + 1
        self.active = a
        if a > self.interval_peak:
            self.interval_peak = a
            if a > self.peak:
                self.peak = a
        group = self.group
        a = group.active + 1
        group.active = a
        if a > group.interval_peak:
            group.interval_peak = a
            if a > group.peak:
                group.peak = a

    def _end(self, now: float, outcome: enum.Enum) -> None:
        self.moment += now
        self.active -= 1
        self.completed += 1
        if outcome is not _OK:
            if outcome is _FAILED:
                self.failed += 1
            else:
                self.cancelled += 1
        self.group.active -= 1

    def _figures(self, now: float, interval: float, reset: bool) -> Figures:
        figures = (
            self.active,
            self.peak,
            self.interval_peak,
            self.completed,
            self.failed,
            self.cancelled,
            self.rejected,
            self.completed - self.completed_mark - self.untimed,
            self.dur_sum,
            self.dur_max,
            self.active * now - self.a0 * (now - interval) + self.moment,
        )
        if reset:
            self.interval_peak = self.active
            self.a0 = self.active
            self.moment = 0.0
            self.dur_sum = 0.0
            self.dur_max = 0.0
            self.completed_mark = self.completed
            self.untimed = 0
        return figures


class Ticket:
    """One counted request. Created by ``begin``; ``finish`` closes it exactly once."""

    __slots__ = ("_counters", "started")

    _counters: Counters | None
    started: float

    def finish(self, outcome: Any = None) -> bool:
        """Close the request; returns False (and counts nothing) if it was already closed."""
        c = self._counters
        if c is None:
            return False
        now = perf_counter()
        lock = c.group._lock
        lock.acquire()
        try:
            if self._counters is None:  # another thread closed it first
                return False
            self._counters = None
            c._end(now, _OK if outcome is None else outcome)
            d = now - self.started
            c.dur_sum += d
            if d > c.dur_max:
                c.dur_max = d
            return True
        finally:
            lock.release()

    @property
    def open(self) -> bool:
        """Whether the request is still counted active."""
        return self._counters is not None
