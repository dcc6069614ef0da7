"""Helpers for testing code that uses concmon, and plugins written for it.

``CapturingSink`` records every snapshot it is handed, ``check_invariants`` asserts the
accounting rules every snapshot must satisfy, and ``FakeClock`` lets a test step time instead of
sleeping; adapters and third-party sinks use them in their own tests.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from concmon.hookspecs import hookimpl
from concmon.snapshot import EndpointStats, Snapshot


class FakeClock:
    """A monotonic clock that moves only when told, for ``ConcurrencyMonitor(clock=...)``.

    Durations, interval means and uptimes then come out exact, whatever the machine's speed.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds``; returns the new time."""
        if seconds < 0:
            raise ValueError(f"a monotonic clock cannot go back ({seconds} s)")
        with self._lock:
            self._now += seconds
            return self._now


class InvariantError(AssertionError):
    """A snapshot broke one of concmon's accounting rules."""


def _check_stats(where: str, s: EndpointStats) -> list[str]:
    problems = []
    for name in ("active", "peak", "interval_peak", "total", "completed", "failed"):
        if getattr(s, name) < 0:
            problems.append(f"{where}: {name} is negative")
    if s.cancelled < 0 or s.rejected < 0:
        problems.append(f"{where}: cancelled/rejected is negative")
    if s.total != s.completed + s.active:
        problems.append(f"{where}: total {s.total} != completed {s.completed} + active {s.active}")
    if s.failed + s.cancelled + s.lost > s.completed:
        problems.append(f"{where}: failed + cancelled + lost > completed")
    if not s.peak >= s.interval_peak >= s.active:
        problems.append(
            f"{where}: expected peak {s.peak} >= interval_peak {s.interval_peak} "
            f">= active {s.active}"
        )
    timed = s.duration_all.count if s.duration_all is not None else None
    if timed is not None and timed > s.completed - s.lost:
        problems.append(f"{where}: {timed} durations for {s.completed - s.lost} finished")
    for name in ("head_all", "ttfb_all"):
        part = getattr(s, name)
        if part is not None and timed is not None and part.count > timed:
            problems.append(f"{where}: {name} counts {part.count} of {timed} finished")
    if s.responses and sum(s.responses.values()) + s.lost != s.completed:
        problems.append(
            f"{where}: responses add up to {sum(s.responses.values())}, "
            f"not completed {s.completed} less lost {s.lost}"
        )
    return problems


def invariant_problems(snapshot: Snapshot) -> list[str]:
    """Every accounting rule ``snapshot`` breaks, as readable sentences (empty when sound)."""
    top = EndpointStats(
        active=snapshot.active,
        peak=snapshot.peak,
        interval_peak=snapshot.interval_peak,
        total=snapshot.total,
        completed=snapshot.completed,
        failed=snapshot.failed,
        cancelled=snapshot.cancelled,
        rejected=snapshot.rejected,
        lost=snapshot.lost,
    )
    problems = _check_stats("total", top)
    sections: Iterable[tuple[str, Mapping[str, EndpointStats]]] = (
        ("endpoints", snapshot.endpoints),
        ("websockets", snapshot.websockets),
        ("background", snapshot.background),
    )
    for section, items in sections:
        for name, stats in items.items():
            problems += _check_stats(f"{section}[{name!r}]", stats)
    summed = sum(s.active for s in snapshot.endpoints.values()) + snapshot.routing
    if summed != snapshot.active:
        problems.append(
            f"endpoint actives and routing add up to {summed}, not active {snapshot.active}"
        )
    if snapshot.queue_depth < 0 or snapshot.queue_peak < snapshot.queue_depth:
        problems.append(f"queue depth {snapshot.queue_depth} / peak {snapshot.queue_peak}")
    if sum(q.depth for q in snapshot.queues.values()) != snapshot.queue_depth:
        problems.append("queue depths do not add up to queue_depth")
    return problems


def check_invariants(snapshot: Snapshot) -> Snapshot:
    """Raise :class:`InvariantError` if ``snapshot`` breaks a rule; returns it otherwise."""
    problems = invariant_problems(snapshot)
    if problems:
        raise InvariantError("; ".join(problems))
    return snapshot


def check_balanced(snapshot: Snapshot) -> Snapshot:
    """Like :func:`check_invariants`, and nothing may be active or queued any more."""
    check_invariants(snapshot)
    busy = {n: s.active for n, s in snapshot.endpoints.items() if s.active}
    busy.update({f"ws:{n}": s.active for n, s in snapshot.websockets.items() if s.active})
    busy.update({f"bg:{n}": s.active for n, s in snapshot.background.items() if s.active})
    if snapshot.active or busy or snapshot.queue_depth:
        raise InvariantError(
            f"not balanced: active={snapshot.active} queue_depth={snapshot.queue_depth} {busy}"
        )
    return snapshot


class CapturingSink:
    """A sink plugin that keeps every snapshot; ``wait_for(n)`` blocks until n have arrived."""

    name = "capture"

    def __init__(self) -> None:
        self.reports: list[Snapshot] = []
        self.final: Snapshot | None = None
        self._cond = threading.Condition()

    @hookimpl
    def concmon_report(self, snapshot: Snapshot) -> None:
        with self._cond:
            self.reports.append(snapshot)
            self._cond.notify_all()

    @hookimpl
    def concmon_shutdown(self, snapshot: Snapshot) -> None:
        with self._cond:
            self.final = snapshot
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Snapshot]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.reports) >= count, timeout):
                raise TimeoutError(f"{len(self.reports)} of {count} reports after {timeout}s")
            return list(self.reports)
