"""The series over time: reports grouped into time buckets, workers added up by concmon.host.

Each bucket shows the state at its end (active, totals) and the highest interval peak any
report in it carried, so a burst between two rows is never lost by the resampling. Sparklines
give each endpoint's shape at a glance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from concmon.host import HostView, merge
from concmon.snapshot import EndpointStats, Snapshot
from concmon_cli.durations import parse_timestamp
from concmon_cli.render import _ms, _table

BARS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class Point:
    time: datetime
    total: Snapshot
    workers: int


def sparkline(values: Sequence[float]) -> str:
    """One block character per value, scaled from 0 to the series' maximum."""
    top = max(values, default=0)
    if top <= 0:
        return BARS[0] * len(values)
    return "".join(BARS[min(len(BARS) - 1, int(v / top * (len(BARS) - 1) + 0.5))] for v in values)


def _with_peaks(last: Snapshot, peak: int, endpoint_peaks: dict[str, int]) -> Snapshot:
    endpoints = {
        name: dataclasses.replace(
            stats, interval_peak=max(stats.interval_peak, endpoint_peaks.get(name, 0))
        )
        for name, stats in last.endpoints.items()
    }
    return dataclasses.replace(
        last, interval_peak=max(last.interval_peak, peak), endpoints=endpoints
    )


def series(reports: Sequence[Snapshot], rows: int, stale_intervals: float) -> list[Point]:
    """At most ``rows`` points (fewer when reports are sparse), oldest first."""
    if not reports:
        return []
    times = [parse_timestamp(r.timestamp) for r in reports]
    span = (times[-1] - times[0]).total_seconds()
    longest = max(r.interval_s for r in reports)
    width = max(longest, span / max(rows, 1) * 1.0001, 1e-6)
    workers = HostView(stale_intervals)
    points: list[Point] = []
    peaks: dict[int, int] = {}
    endpoint_peaks: dict[int, dict[str, int]] = {}
    current: int | None = None

    def emit(at: datetime) -> None:
        live = [
            _with_peaks(s, peaks.get(s.pid, 0), endpoint_peaks.get(s.pid, {}))
            for s in workers.live()
        ]
        if live:
            points.append(Point(at, merge(live, workers.gone()), len(live)))

    last_time = times[0]
    for report, when in zip(reports, times, strict=True):
        index = int((when - times[0]).total_seconds() // width)
        if current is not None and index != current:
            emit(last_time)
            peaks.clear()
            endpoint_peaks.clear()
        current = index
        last_time = when
        workers.add(report)
        peaks[report.pid] = max(peaks.get(report.pid, 0), report.interval_peak)
        eps = endpoint_peaks.setdefault(report.pid, {})
        for name, stats in report.endpoints.items():
            eps[name] = max(eps.get(name, 0), stats.interval_peak)
    emit(last_time)
    return points


def _clock(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S")


def history_view(points: Sequence[Point], endpoint: str | None, terminal: bool) -> RenderableType:
    """A row per point, then a sparkline per endpoint for active and interval peak."""
    if endpoint is not None:
        table = _table(
            terminal,
            "time",
            "active",
            "peak ivl",
            "total",
            "failed",
            "cancelled",
            "avg ms",
            "max ms",
        )
        for p in points:
            e = p.total.endpoints.get(endpoint, EndpointStats())
            table.add_row(
                _clock(p.time),
                str(e.active),
                str(e.interval_peak),
                str(e.total),
                str(e.failed),
                str(e.cancelled),
                _ms(e.avg_ms),
                _ms(e.max_ms),
            )
    else:
        table = _table(
            terminal,
            "time",
            "active",
            "peak ivl",
            "total",
            "failed",
            "cancelled",
            "queue",
            "cpu %",
            "memory MB",
            "workers",
        )
        for p in points:
            s = p.total
            table.add_row(
                _clock(p.time),
                str(s.active),
                str(s.interval_peak),
                str(s.total),
                str(s.failed),
                str(s.cancelled),
                str(s.queue_depth),
                _ms(s.system.cpu_percent),
                _ms(s.system.memory_mb),
                str(p.workers),
            )
    names: list[str] = []
    for p in points:
        names += [n for n in p.total.endpoints if n not in names]
    if endpoint is not None:
        names = [endpoint]
    spark = Table.grid(padding=(0, 2))
    for _ in range(4):
        spark.add_column()
    spark.add_row(
        Text("endpoint", style="bold"),
        Text("active", style="bold"),
        Text("interval peak", style="bold"),
        Text("max", style="bold"),
    )
    for name in names:
        actives = [p.total.endpoints.get(name, EndpointStats()).active for p in points]
        ipeaks = [p.total.endpoints.get(name, EndpointStats()).interval_peak for p in points]
        spark.add_row(
            Text(name), sparkline(actives), sparkline(ipeaks), str(max(ipeaks, default=0))
        )
    return Group(table, Text(""), spark)
