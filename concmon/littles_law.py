"""Little's law per endpoint: does the mean concurrency match what the finished requests explain?

Over an interval of length ``T`` the time-weighted mean of ``active`` (``avg_active``) is the
time every request spent in flight inside the interval, over ``T``; the requests that finished
in it explain ``rate x mean duration`` (their summed durations over ``T``). The two are equal
for requests that start and finish inside the interval. Requests that span a boundary move
them apart by a known amount at most, so the check allows exactly that:

- **over** (concurrency nothing finished explains): each request still in flight at the end adds
  its time in the interval. A healthy one has been in flight no longer than the longest request
  ever finished there, so ``active x min(longest, T) / T`` is allowed; past it, requests are in
  flight longer than any that completed (stuck, or a finish the counters never saw).
- **under** (durations with no concurrency behind them): a finished request that began before
  the interval brings the part of its duration before it; at most ``min(interval_peak,
  finished) x max duration / T``. Past it, durations were counted for requests never active.

What lies outside both allowances, less :data:`SLACK` (rounding), is ``unexplained``, in
requests: 0 for a healthy endpoint, about 1 per request stuck for the whole interval.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from concmon.snapshot import EndpointStats, Snapshot

SLACK: Final = 0.05
"""Requests of difference always allowed: ``avg_active`` is rounded to 3 decimals and the
clock is read once per change, so two exact figures can still differ by a little."""
RELATIVE_SLACK: Final = 0.02
"""And this share of the larger figure (float sums over many requests)."""


@dataclass(frozen=True, slots=True)
class LittleCheck:
    """Little's law for one endpoint over one interval (all figures in requests)."""

    endpoint: str
    mean_active: float
    """``avg_active``: the mean concurrency measured."""
    explained: float
    """``rate x mean duration``: the concurrency the requests finished in the interval explain."""
    allowed_over: float
    """How far ``mean_active`` may exceed ``explained``: requests still in flight at the end."""
    allowed_under: float
    """How far it may fall short: finished requests that began before the interval."""

    @property
    def excess(self) -> float:
        """``mean_active - explained``: positive when concurrency is not explained."""
        return self.mean_active - self.explained

    @property
    def unexplained(self) -> float:
        """The difference outside the allowances, in requests; 0 when the law holds."""
        slack = SLACK + RELATIVE_SLACK * max(self.mean_active, self.explained)
        over = self.excess - self.allowed_over
        under = -self.excess - self.allowed_under
        return round(max(over - slack, under - slack, 0.0), 3)

    @property
    def holds(self) -> bool:
        return self.unexplained == 0.0


def check_endpoint(name: str, stats: EndpointStats, interval_s: float) -> LittleCheck | None:
    """The check for one endpoint, or None where it cannot be made (no interval, or no
    distribution of durations recorded)."""
    duration = stats.duration
    if interval_s <= 0 or duration is None:
        return None
    span = interval_s
    lifetime = stats.duration_all
    longest = lifetime.max_s if lifetime is not None and lifetime.max_s is not None else span
    slowest = duration.max_s or 0.0
    return LittleCheck(
        endpoint=name,
        mean_active=stats.avg_active,
        explained=duration.sum_s / span,
        allowed_over=stats.active * min(longest, span) / span,
        allowed_under=min(stats.interval_peak, duration.count) * slowest / span,
    )


def check_littles_law(snapshot: Snapshot) -> tuple[LittleCheck, ...]:
    """Little's law for each HTTP endpoint of ``snapshot`` that can be checked, worst first.

    A process's own snapshot is one interval; a host view adds up workers whose intervals need
    not line up, so check each worker's snapshot rather than their sum.
    """
    endpoints: Mapping[str, EndpointStats] = snapshot.endpoints
    checks = [check_endpoint(name, s, snapshot.interval_s) for name, s in endpoints.items()]
    found = [c for c in checks if c is not None]
    return tuple(sorted(found, key=lambda c: (-c.unexplained, c.endpoint)))
