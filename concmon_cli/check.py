"""Thresholds for alerting: which figures of the latest report crossed a limit.

The failure rate is taken over the last interval (the difference between each worker's two
latest reports) when the source holds two reports per worker, and over the process lifetime
otherwise, so a burst of errors an hour ago does not keep an alert firing forever.
"""

from __future__ import annotations

from dataclasses import dataclass

from concmon.host import HostView
from concmon.snapshot import Snapshot
from concmon_cli.errors import CliError


@dataclass(frozen=True)
class Limits:
    max_active: int | None = None
    max_queue: int | None = None
    max_failed_rate: float | None = None
    max_loop_lag_ms: float | None = None


@dataclass(frozen=True)
class Verdict:
    total: Snapshot
    failed_rate: float
    rate_scope: str
    crossed: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.crossed

    def line(self) -> str:
        """One status line in the manner of monitoring plugins (``OK - ...`` / ``CRITICAL``)."""
        t = self.total
        lag = "-" if t.system.loop_lag_ms is None else f"{t.system.loop_lag_ms:.1f}ms"
        figures = (
            f"active={t.active} queue={t.queue_depth} "
            f"failed_rate={self.failed_rate:.4f} ({self.rate_scope}) loop_lag={lag}"
        )
        if t.sink_errors:
            # A failing or stuck sink (one too late for its reports) shows here, so a check
            # reading the files the healthy sinks write still sees it.
            errors = ",".join(f"{name}:{count}" for name, count in sorted(t.sink_errors.items()))
            figures += f" sink_errors={errors}"
        if self.ok:
            return f"OK - {figures}"
        return f"CRITICAL - {'; '.join(self.crossed)} | {figures}"


def failed_rate(workers: HostView) -> tuple[float, str]:
    """Failed over completed, over the last interval where two reports allow it.

    The interval is that of the live workers (a gone worker finished nothing in it); the
    lifetime rate is the host's, gone workers' totals included.
    """
    live = workers.live()
    pairs = [(s, workers.previous_of(s)) for s in live]
    if pairs and all(prev is not None for _, prev in pairs):
        failed = sum(s.failed - prev.failed for s, prev in pairs if prev is not None)
        done = sum(s.completed - prev.completed for s, prev in pairs if prev is not None)
        if failed >= 0 and done >= 0:  # a restarted worker resets its counters
            return (failed / done if done else 0.0), "last interval"
    total = _host(workers)
    return (total.failed / total.completed if total.completed else 0.0), "lifetime"


def _host(workers: HostView) -> Snapshot:
    total = workers.total()
    if total is None:
        raise CliError("no complete concmon report to check")
    return total


def evaluate(workers: HostView, limits: Limits) -> Verdict:
    total = _host(workers)
    rate, scope = failed_rate(workers)
    crossed: list[str] = []
    if limits.max_active is not None and total.active > limits.max_active:
        crossed.append(f"active {total.active} > {limits.max_active}")
    if limits.max_queue is not None and total.queue_depth > limits.max_queue:
        crossed.append(f"queue {total.queue_depth} > {limits.max_queue}")
    if limits.max_failed_rate is not None and rate > limits.max_failed_rate:
        crossed.append(f"failed rate {rate:.4f} > {limits.max_failed_rate:g} ({scope})")
    lag = total.system.loop_lag_ms
    if limits.max_loop_lag_ms is not None and lag is not None and lag > limits.max_loop_lag_ms:
        crossed.append(f"loop lag {lag:.1f}ms > {limits.max_loop_lag_ms:g}ms")
    return Verdict(total, rate, scope, tuple(crossed))
