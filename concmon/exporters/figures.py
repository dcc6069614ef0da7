"""The figures every exporter publishes, whatever they were read from.

An exporter reads the monitor live (a scrape, an OpenTelemetry collection), a worker's state
file (multi-process Prometheus) or a series of logged snapshots (the textfile export). All three
become :class:`Figures`, which knows how to add up several processes: gauges of live processes
are summed, counters are summed and kept when a process goes away, so the exposition code never
has to know where its numbers came from.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import psutil

from concmon.monitor import ConcurrencyMonitor
from concmon.snapshot import EndpointStats, Snapshot

OUTCOMES: Final = ("ok", "failed", "cancelled")
"""Label values of the ``outcome`` of a finished request, connection or task."""

Finished = dict[str, dict[str, int]]
"""Name -> outcome -> how many finished that way."""


def _finished(stats: Mapping[str, EndpointStats]) -> Finished:
    return {
        name: {
            "ok": s.completed - s.failed - s.cancelled,
            "failed": s.failed,
            "cancelled": s.cancelled,
        }
        for name, s in stats.items()
    }


def _add_counts(into: dict[str, int], other: Mapping[str, int]) -> None:
    for key, value in other.items():
        into[key] = into.get(key, 0) + value


def _add_finished(into: Finished, other: Mapping[str, Mapping[str, int]]) -> None:
    for name, outcomes in other.items():
        _add_counts(into.setdefault(name, {}), outcomes)


def _opt_sum(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _opt_max(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


@dataclass(slots=True)
class Counters:
    """The monotonic part: what a process has finished. Kept after the process is gone."""

    requests: Finished = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    websockets: Finished = field(default_factory=dict)
    background: Finished = field(default_factory=dict)
    queue_waits: dict[str, tuple[int, float]] = field(default_factory=dict)
    """Queue name -> (waits finished, seconds waited)."""
    cpu_seconds: float | None = None
    sink_errors: dict[str, int] = field(default_factory=dict)

    def add(self, other: Counters) -> None:
        _add_finished(self.requests, other.requests)
        _add_counts(self.rejected, other.rejected)
        _add_finished(self.websockets, other.websockets)
        _add_finished(self.background, other.background)
        for name, (count, seconds) in other.queue_waits.items():
            c, s = self.queue_waits.get(name, (0, 0.0))
            self.queue_waits[name] = (c + count, s + seconds)
        self.cpu_seconds = _opt_sum(self.cpu_seconds, other.cpu_seconds)
        _add_counts(self.sink_errors, other.sink_errors)

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "rejected": self.rejected,
            "websockets": self.websockets,
            "background": self.background,
            "queue_waits": {k: [c, s] for k, (c, s) in self.queue_waits.items()},
            "cpu_seconds": self.cpu_seconds,
            "sink_errors": self.sink_errors,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Counters:
        return cls(
            requests=_finished_json(data.get("requests", {})),
            rejected=_counts_json(data.get("rejected", {})),
            websockets=_finished_json(data.get("websockets", {})),
            background=_finished_json(data.get("background", {})),
            queue_waits={
                str(k): (int(v[0]), float(v[1])) for k, v in data.get("queue_waits", {}).items()
            },
            cpu_seconds=_opt_float(data.get("cpu_seconds")),
            sink_errors=_counts_json(data.get("sink_errors", {})),
        )


@dataclass(slots=True)
class Gauges:
    """The momentary part: only meaningful while the process that reported it is alive."""

    active: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)
    """Highest ``active`` of each endpoint since the previous report (the interval peak)."""
    websockets_active: dict[str, int] = field(default_factory=dict)
    background_active: dict[str, int] = field(default_factory=dict)
    queue_depth: dict[str, int] = field(default_factory=dict)
    limit: int | None = None
    memory_bytes: float | None = None
    threads: int | None = None
    open_fds: int | None = None
    loop_lag_seconds: float | None = None

    def add(self, other: Gauges) -> None:
        _add_counts(self.active, other.active)
        _add_counts(self.peak, other.peak)
        _add_counts(self.websockets_active, other.websockets_active)
        _add_counts(self.background_active, other.background_active)
        _add_counts(self.queue_depth, other.queue_depth)
        limit = _opt_sum(self.limit, other.limit)
        self.limit = int(limit) if limit is not None else None
        self.memory_bytes = _opt_sum(self.memory_bytes, other.memory_bytes)
        threads = _opt_sum(self.threads, other.threads)
        self.threads = int(threads) if threads is not None else None
        fds = _opt_sum(self.open_fds, other.open_fds)
        self.open_fds = int(fds) if fds is not None else None
        # The worst lag of any worker is what a user waits for, so lag is not summed.
        self.loop_lag_seconds = _opt_max(self.loop_lag_seconds, other.loop_lag_seconds)

    def to_json(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "peak": self.peak,
            "websockets_active": self.websockets_active,
            "background_active": self.background_active,
            "queue_depth": self.queue_depth,
            "limit": self.limit,
            "memory_bytes": self.memory_bytes,
            "threads": self.threads,
            "open_fds": self.open_fds,
            "loop_lag_seconds": self.loop_lag_seconds,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Gauges:
        return cls(
            active=_counts_json(data.get("active", {})),
            peak=_counts_json(data.get("peak", {})),
            websockets_active=_counts_json(data.get("websockets_active", {})),
            background_active=_counts_json(data.get("background_active", {})),
            queue_depth=_counts_json(data.get("queue_depth", {})),
            limit=_opt_int(data.get("limit")),
            memory_bytes=_opt_float(data.get("memory_bytes")),
            threads=_opt_int(data.get("threads")),
            open_fds=_opt_int(data.get("open_fds")),
            loop_lag_seconds=_opt_float(data.get("loop_lag_seconds")),
        )


@dataclass(slots=True)
class Figures:
    """What one process, or several added together, reports to a monitoring system."""

    gauges: Gauges = field(default_factory=Gauges)
    counters: Counters = field(default_factory=Counters)
    processes: int = 1

    def add(self, other: Figures) -> None:
        """Add another process's figures to these (used to report a whole host)."""
        self.gauges.add(other.gauges)
        self.counters.add(other.counters)
        self.processes += other.processes

    @classmethod
    def empty(cls) -> Figures:
        return cls(processes=0)


def _counts_json(value: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in value.items()}


def _finished_json(value: Any) -> Finished:
    return {str(k): _counts_json(v) for k, v in value.items()}


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def figures_from_snapshot(snapshot: Snapshot) -> Figures:
    """The figures a snapshot carries (CPU seconds and lifetime queue waits are not in it)."""
    system = snapshot.system
    limit = None
    if snapshot.saturation and snapshot.active:
        limit = round(snapshot.active / snapshot.saturation)
    gauges = Gauges(
        active={name: s.active for name, s in snapshot.endpoints.items()},
        peak={name: s.interval_peak for name, s in snapshot.endpoints.items()},
        websockets_active={name: s.active for name, s in snapshot.websockets.items()},
        background_active={name: s.active for name, s in snapshot.background.items()},
        queue_depth={name: q.depth for name, q in snapshot.queues.items()},
        limit=limit,
        memory_bytes=system.memory_mb * 1024 * 1024 if system.memory_mb is not None else None,
        threads=system.threads,
        open_fds=system.open_fds,
        loop_lag_seconds=system.loop_lag_ms / 1000.0 if system.loop_lag_ms is not None else None,
    )
    counters = Counters(
        requests=_finished(snapshot.endpoints),
        rejected={name: s.rejected for name, s in snapshot.endpoints.items()},
        websockets=_finished(snapshot.websockets),
        background=_finished(snapshot.background),
        sink_errors=dict(snapshot.sink_errors),
    )
    return Figures(gauges, counters)


class _ProcessReader:
    """Reads this process's CPU time, memory, threads and descriptors with psutil."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = -1
        self._process: psutil.Process | None = None

    def read(self, gauges: Gauges, counters: Counters) -> None:
        pid = os.getpid()
        with self._lock:
            if pid != self._pid:  # after fork() the child must read its own figures
                self._pid = pid
                try:
                    self._process = psutil.Process(pid)
                except psutil.Error:
                    self._process = None
            process = self._process
        if process is None:
            return
        try:
            with process.oneshot():
                times = process.cpu_times()
                counters.cpu_seconds = times.user + times.system
                gauges.memory_bytes = float(process.memory_info().rss)
                gauges.threads = process.num_threads()
                if hasattr(process, "num_fds"):
                    gauges.open_fds = process.num_fds()
        except (psutil.Error, OSError):
            pass


_process_reader = _ProcessReader()


def live_figures(monitor: ConcurrencyMonitor, *, process: bool = True) -> Figures:
    """This process's figures now, read from ``monitor`` (and psutil when ``process``)."""
    figures = figures_from_snapshot(monitor.snapshot())
    figures.gauges.limit = monitor.max_concurrency
    figures.counters.queue_waits = monitor.queue_wait_totals()
    if process:
        _process_reader.read(figures.gauges, figures.counters)
    return figures


def _instant(timestamp: str) -> float | None:
    try:
        return datetime.fromisoformat(timestamp).timestamp()
    except ValueError:
        return None


def figures_from_snapshots(
    snapshots: Iterable[Snapshot], *, stale_intervals: float | None = 3.0
) -> Figures:
    """Add up a series of logged snapshots from one or several processes of one host.

    Each process (host and pid; a pid whose uptime goes backwards is a new process) counts with
    its latest snapshot. A process whose latest report is more than ``stale_intervals`` report
    intervals older than the newest report in the series is taken to be gone: its counters
    still count, its gauges (active requests, memory) do not. Queue waits and CPU seconds are
    added up over every report of a process in the series, so they cover what the series covers.
    """
    instances: list[list[Snapshot]] = []
    current: dict[tuple[str, int], list[Snapshot]] = {}
    for snap in snapshots:
        key = (snap.host, snap.pid)
        series = current.get(key)
        if series is None or snap.uptime_s < series[-1].uptime_s:
            series = current[key] = []
            instances.append(series)
        series.append(snap)
    total = Figures.empty()
    if not instances:
        return total
    instants = [_instant(series[-1].timestamp) for series in instances]
    newest = max((t for t in instants if t is not None), default=None)
    for series, instant in zip(instances, instants, strict=True):
        last = series[-1]
        figures = figures_from_snapshot(last)
        waits: dict[str, tuple[int, float]] = {}
        cpu: float | None = None
        for snap in series:
            for name, q in snap.queues.items():
                count, seconds = waits.get(name, (0, 0.0))
                avg = (q.wait_avg_ms or 0.0) / 1000.0
                waits[name] = (count + q.waited, seconds + q.waited * avg)
            if snap.system.cpu_percent is not None:
                cpu = (cpu or 0.0) + snap.system.cpu_percent / 100.0 * snap.interval_s
        figures.counters.queue_waits = waits
        figures.counters.cpu_seconds = cpu
        gone = (
            stale_intervals is not None
            and newest is not None
            and instant is not None
            and newest - instant > stale_intervals * max(last.interval_s, 0.001)
        )
        if gone:
            figures.gauges = Gauges()
            figures.processes = 0
        total.add(figures)
    return total
