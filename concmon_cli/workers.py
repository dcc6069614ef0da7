"""Several worker processes, one view: the latest report per pid, and their sum.

Workers of one server (uvicorn ``--workers``, gunicorn) append to the same file, each under its
own pid. The view keeps each pid's latest report, drops a pid once it has been silent for a few
of its own intervals (it was stopped, recycled or killed), and adds up the rest.

Summing is exact for everything that is a count at one instant or since start (active, totals,
queue depth, memory). Peaks are summed too, which makes them an upper bound: two workers that
each peaked at 10 did not necessarily do so at the same moment. Durations are combined as
means weighted by each worker's request rate (``avg_active / avg_ms``, Little's law), maxima
as maxima.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Final

from concmon.snapshot import EndpointStats, QueueStats, Snapshot, SystemStats
from concmon_cli.durations import parse_timestamp

STALE_INTERVALS: Final = 3.0
"""A worker silent for this many of its report intervals is dropped from the view."""


class WorkerSet:
    """The latest (and the one before) report of every live worker."""

    def __init__(self, stale_intervals: float = STALE_INTERVALS) -> None:
        self.stale_intervals = stale_intervals
        self.latest: dict[int, Snapshot] = {}
        self.previous: dict[int, Snapshot] = {}
        self.dropped = 0
        self._times: dict[int, datetime] = {}

    def add(self, snapshot: Snapshot) -> None:
        """Take a report in; an older report than the one held for its pid is ignored."""
        pid = snapshot.pid
        when = parse_timestamp(snapshot.timestamp)
        held = self._times.get(pid)
        if held is not None and when < held:
            if pid not in self.previous or when > parse_timestamp(self.previous[pid].timestamp):
                self.previous[pid] = snapshot
            return
        if pid in self.latest:
            self.previous[pid] = self.latest[pid]
        self.latest[pid] = snapshot
        self._times[pid] = when
        self._prune()

    def extend(self, snapshots: Iterable[Snapshot]) -> None:
        for snapshot in snapshots:
            self.add(snapshot)

    @property
    def newest(self) -> datetime | None:
        return max(self._times.values(), default=None)

    def _prune(self) -> None:
        newest = self.newest
        if newest is None:
            return
        for pid, snapshot in list(self.latest.items()):
            window = timedelta(seconds=self.stale_intervals * max(snapshot.interval_s, 0.001))
            if self._times[pid] < newest - window:
                del self.latest[pid], self._times[pid]
                self.previous.pop(pid, None)
                self.dropped += 1

    def live(self) -> list[Snapshot]:
        """The live workers' latest reports, by pid."""
        return [self.latest[pid] for pid in sorted(self.latest)]

    def total(self) -> Snapshot | None:
        live = self.live()
        return merge(live) if live else None


def _weighted_ms(stats: Sequence[EndpointStats]) -> float | None:
    timed = [s for s in stats if s.avg_ms is not None]
    if not timed:
        return None
    weights = [s.avg_active / s.avg_ms if s.avg_ms else 0.0 for s in timed]
    total = sum(weights)
    if total <= 0:
        return round(sum(s.avg_ms or 0.0 for s in timed) / len(timed), 3)
    return round(sum(w * (s.avg_ms or 0.0) for w, s in zip(weights, timed, strict=True)) / total, 3)


def _max(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _sum_opt_f(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(sum(present), 3) if present else None


def _sum_opt_i(values: Iterable[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def merge_stats(stats: Sequence[EndpointStats]) -> EndpointStats:
    return EndpointStats(
        active=sum(s.active for s in stats),
        peak=sum(s.peak for s in stats),
        interval_peak=sum(s.interval_peak for s in stats),
        avg_active=round(sum(s.avg_active for s in stats), 3),
        total=sum(s.total for s in stats),
        completed=sum(s.completed for s in stats),
        failed=sum(s.failed for s in stats),
        cancelled=sum(s.cancelled for s in stats),
        rejected=sum(s.rejected for s in stats),
        avg_ms=_weighted_ms(stats),
        max_ms=_max(s.max_ms for s in stats),
    )


def _merge_queue(queues: Sequence[QueueStats]) -> QueueStats:
    waited = sum(q.waited for q in queues)
    timed = [q for q in queues if q.wait_avg_ms is not None and q.waited]
    avg = None
    if timed:
        avg = round(sum((q.wait_avg_ms or 0.0) * q.waited for q in timed) / waited, 3)
    return QueueStats(
        depth=sum(q.depth for q in queues),
        peak=sum(q.peak for q in queues),
        waited=waited,
        wait_avg_ms=avg,
        wait_max_ms=_max(q.wait_max_ms for q in queues),
    )


def _merge_map(
    maps: Iterable[Mapping[str, EndpointStats]],
) -> dict[str, EndpointStats]:
    grouped: dict[str, list[EndpointStats]] = {}
    for mapping in maps:
        for name, stats in mapping.items():
            grouped.setdefault(name, []).append(stats)
    return {name: merge_stats(items) for name, items in grouped.items()}


def merge(snapshots: Sequence[Snapshot]) -> Snapshot:
    """One snapshot for several workers; a single worker's snapshot is returned unchanged.

    The merged snapshot has pid 0, the newest timestamp, the longest uptime and interval.
    """
    if len(snapshots) == 1:
        return snapshots[0]
    if not snapshots:
        raise ValueError("nothing to merge")
    newest = max(snapshots, key=lambda s: parse_timestamp(s.timestamp))
    hosts = sorted({s.host for s in snapshots})
    queues: dict[str, list[QueueStats]] = {}
    for s in snapshots:
        for name, q in s.queues.items():
            queues.setdefault(name, []).append(q)
    sink_errors: dict[str, int] = {}
    for s in snapshots:
        for name, count in s.sink_errors.items():
            sink_errors[name] = sink_errors.get(name, 0) + count
    return Snapshot(
        timestamp=newest.timestamp,
        pid=0,
        host=",".join(hosts),
        uptime_s=max(s.uptime_s for s in snapshots),
        interval_s=max(s.interval_s for s in snapshots),
        active=sum(s.active for s in snapshots),
        peak=sum(s.peak for s in snapshots),
        interval_peak=sum(s.interval_peak for s in snapshots),
        avg_active=round(sum(s.avg_active for s in snapshots), 3),
        total=sum(s.total for s in snapshots),
        completed=sum(s.completed for s in snapshots),
        failed=sum(s.failed for s in snapshots),
        cancelled=sum(s.cancelled for s in snapshots),
        rejected=sum(s.rejected for s in snapshots),
        queue_depth=sum(s.queue_depth for s in snapshots),
        queue_peak=sum(s.queue_peak for s in snapshots),
        saturation=_max(s.saturation for s in snapshots),
        endpoints=_merge_map(s.endpoints for s in snapshots),
        websockets=_merge_map(s.websockets for s in snapshots),
        background=_merge_map(s.background for s in snapshots),
        queues={name: _merge_queue(items) for name, items in queues.items()},
        system=SystemStats(
            cpu_percent=_sum_opt_f(s.system.cpu_percent for s in snapshots),
            memory_mb=_sum_opt_f(s.system.memory_mb for s in snapshots),
            threads=_sum_opt_i(s.system.threads for s in snapshots),
            open_fds=_sum_opt_i(s.system.open_fds for s in snapshots),
            loop_lag_ms=_max(s.system.loop_lag_ms for s in snapshots),
        ),
        sink_errors=sink_errors,
    )
