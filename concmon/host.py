"""The worker processes of one host as one view, added up by a single rule.

A server with several workers (uvicorn ``--workers``, gunicorn) has a monitor per process.
Whatever shows the whole host (the CLI, the Prometheus exporter's multi-process mode, its
textfile export, a JSON endpoint) adds the workers up here, and only here:

- **counters never go down**: what finished (requests by outcome, rejections, sink errors,
  queue waits, CPU seconds) is summed over every worker seen, live or gone, so a worker that
  retires, is recycled or is killed keeps its lifetime totals in the host's;
- **gauges count live workers only**: what is happening now (active, peaks, averages and
  durations of the interval, queue depth, process memory, loop lag, the limit) comes from the
  live workers, so a dead worker's in-flight requests leave the view.

A merged snapshot's ``total`` is its ``completed + active``, so it keeps every accounting rule of
:mod:`concmon.testing`. Sources differ only in how they tell a gone worker from a live one:
:class:`HostView` (reports read from a log, a JSON-lines file or a URL) by silence and by a pid
whose uptime or totals go backwards; the Prometheus multi-process store by the lock a live
worker holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, Protocol

from concmon.snapshot import (
    DISTRIBUTIONS,
    Distribution,
    EndpointStats,
    QueueStats,
    Snapshot,
    SystemStats,
)

STALE_INTERVALS: Final = 3.0
"""A worker silent for this many of its own report intervals is taken to be gone."""

SHORTEST_INTERVAL_S: Final = 1.0
"""The stale window counts a report as covering at least this long: the report a worker makes
as it starts (and the final one) cover only a moment, and must not make it look gone while the
other workers start."""

GONE_KEPT: Final = 1024
"""Gone workers a :class:`HostView` keeps one by one (a late report may still revive one);
older ones are folded into one total of their counters, so recycling never grows the view."""


# -- snapshots ---------------------------------------------------------------------------------


def _max(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _sum(values: Iterable[float | None], digits: int = 3) -> float | None:
    present = [v for v in values if v is not None]
    return round(sum(present), digits) if present else None


def _sum_int(values: Iterable[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _weighted_ms(stats: Sequence[EndpointStats]) -> float | None:
    """Mean duration weighted by each worker's request rate (Little's law: avg_active / avg_ms)."""
    timed = [s for s in stats if s.avg_ms is not None]
    if not timed:
        return None
    weights = [s.avg_active / s.avg_ms if s.avg_ms else 0.0 for s in timed]
    total = sum(weights)
    if total <= 0:
        return round(sum(s.avg_ms or 0.0 for s in timed) / len(timed), 3)
    return round(sum(w * (s.avg_ms or 0.0) for w, s in zip(weights, timed, strict=True)) / total, 3)


class _Requests(Protocol):
    """The request figures an endpoint's stats and a snapshot both carry."""

    @property
    def active(self) -> int: ...
    @property
    def peak(self) -> int: ...
    @property
    def interval_peak(self) -> int: ...
    @property
    def completed(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def cancelled(self) -> int: ...
    @property
    def rejected(self) -> int: ...
    @property
    def lost(self) -> int: ...


def _request_counts(live: Sequence[_Requests], gone: Sequence[_Requests]) -> dict[str, int]:
    """The rule for request figures: what is in flight from the live, what finished from all."""
    active = peak = interval_peak = 0
    for s in live:
        active += s.active
        peak += s.peak
        interval_peak += s.interval_peak
    completed = failed = cancelled = rejected = lost = 0
    for group in (live, gone):
        for s in group:
            completed += s.completed
            failed += s.failed
            cancelled += s.cancelled
            rejected += s.rejected
            lost += s.lost
    # A gone worker never reports how its requests in flight ended: they finished as lost.
    # A merge of gone workers has nothing active, so folding it again counts nothing twice.
    for s in gone:
        completed += s.active
        lost += s.active
    return {
        "active": active,
        "peak": peak,
        "interval_peak": interval_peak,
        "total": completed + active,
        "completed": completed,
        "failed": failed,
        "cancelled": cancelled,
        "rejected": rejected,
        "lost": lost,
    }


def _added(parts: Iterable[Distribution | None]) -> Distribution | None:
    """The distributions summed; None when none is known or workers used different buckets
    (then no sum would be true)."""
    known = [d for d in parts if d is not None]
    if not known:
        return None
    total = known[0]
    try:
        for d in known[1:]:
            total = total.plus(d)
    except ValueError:
        return None
    return total


def _distributions(
    live: Sequence[EndpointStats], gone: Sequence[EndpointStats]
) -> dict[str, Distribution | None]:
    """The interval's distributions of the live workers, the lifetime's of every worker."""
    everyone = [*live, *gone]
    added: dict[str, Distribution | None] = {}
    for name in DISTRIBUTIONS:
        added[name] = _added(s.distribution(name) for s in live)
        added[f"{name}_all"] = _added(s.distribution(name, lifetime=True) for s in everyone)
    return added


def _with(stats: EndpointStats, changes: Mapping[str, object]) -> EndpointStats:
    """``stats`` with the fields ``changes`` names (typed apart: their types differ)."""
    fields: dict[str, Any] = dict(changes)
    return replace(stats, **fields)


def merge_stats(live: Sequence[EndpointStats], gone: Sequence[EndpointStats] = ()) -> EndpointStats:
    """One endpoint over several workers: gauges of the ``live`` ones, counters of all."""
    responses: dict[str, int] = {}
    for s in (*live, *gone):
        _add_counts(responses, s.responses)
    stats = EndpointStats(
        avg_active=round(sum(s.avg_active for s in live), 3),
        avg_ms=_weighted_ms(live),
        max_ms=_max(s.max_ms for s in live),
        rate=round(sum(s.rate for s in live), 3),
        responses=responses,
    )
    return _with(stats, {**_request_counts(live, gone), **_distributions(live, gone)})


def _merge_section(
    live: Iterable[Mapping[str, EndpointStats]], gone: Iterable[Mapping[str, EndpointStats]]
) -> dict[str, EndpointStats]:
    grouped: dict[str, tuple[list[EndpointStats], list[EndpointStats]]] = {}
    for index, maps in enumerate((live, gone)):
        for mapping in maps:
            for name, stats in mapping.items():
                grouped.setdefault(name, ([], []))[index].append(stats)
    return {name: merge_stats(alive, dead) for name, (alive, dead) in grouped.items()}


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


def _add_counts(into: dict[str, int], counts: Mapping[str, int]) -> None:
    for name, count in counts.items():
        into[name] = into.get(name, 0) + count


def merge(live: Sequence[Snapshot], gone: Sequence[Snapshot] = ()) -> Snapshot:
    """One snapshot for a host: the gauges of the ``live`` workers, the counters of all.

    The result has pid 0, the newest timestamp and the longest uptime and interval of the live
    workers (of the gone ones when none is live). Summed peaks are an upper bound of the host's
    peak: two workers that each peaked at 10 need not have done so at the same moment. A single
    live worker and nothing gone is returned unchanged.
    """
    if len(live) == 1 and not gone:
        return live[0]
    everyone = [*live, *gone]
    if not everyone:
        raise ValueError("nothing to merge")
    present = live or gone
    queues: dict[str, list[QueueStats]] = {}
    for s in live:
        for name, q in s.queues.items():
            queues.setdefault(name, []).append(q)
    sink_errors: dict[str, int] = {}
    for s in everyone:
        _add_counts(sink_errors, s.sink_errors)
    return Snapshot(
        timestamp=max(present, key=report_time).timestamp,
        pid=0,
        host=",".join(sorted({s.host for s in everyone})),
        uptime_s=max(s.uptime_s for s in present),
        interval_s=max(s.interval_s for s in present),
        **_request_counts(live, gone),
        avg_active=round(sum(s.avg_active for s in live), 3),
        queue_depth=sum(s.queue_depth for s in live),
        queue_peak=sum(s.queue_peak for s in live),
        routing=sum(s.routing for s in live),
        saturation=_max(s.saturation for s in live),
        endpoints=_merge_section((s.endpoints for s in live), (s.endpoints for s in gone)),
        websockets=_merge_section((s.websockets for s in live), (s.websockets for s in gone)),
        background=_merge_section((s.background for s in live), (s.background for s in gone)),
        queues={name: _merge_queue(items) for name, items in queues.items()},
        system=SystemStats(
            cpu_percent=_sum(s.system.cpu_percent for s in live),
            memory_mb=_sum(s.system.memory_mb for s in live),
            threads=_sum_int(s.system.threads for s in live),
            open_fds=_sum_int(s.system.open_fds for s in live),
            # The worst lag of any worker is what a user waits for, so lag is not summed.
            loop_lag_ms=_max(s.system.loop_lag_ms for s in live),
        ),
        sink_errors=sink_errors,
        rate=round(sum(s.rate for s in live), 3),
        buckets_s=next((s.buckets_s for s in everyone if s.buckets_s), ()),
    )


# -- figures: a snapshot and the lifetime totals it leaves out -------------------------------


@dataclass(frozen=True, slots=True)
class Figures:
    """What a process, or a host, reports to a monitoring system.

    A snapshot's queue and CPU figures cover one report interval; exporters publish counters
    that never restart, so figures carry those lifetime totals beside the snapshot, with the
    configured limit (a snapshot only has the saturation) and how many live processes they add up.
    """

    snapshot: Snapshot
    queue_waits: Mapping[str, tuple[int, float]] = field(default_factory=dict)
    """Queue name -> waits finished and seconds waited, since the process started (a counter)."""
    cpu_seconds: float | None = None
    """User and system CPU time since the process started (a counter)."""
    limit: int | None = None
    """The configured maximum of concurrent requests (a gauge)."""
    processes: int = 1
    """Live processes added up (a gauge)."""


def combine(live: Sequence[Figures], gone: Sequence[Figures] = ()) -> Figures:
    """A host's figures, by the rule of :func:`merge`: counters of all, gauges of the live."""
    if len(live) == 1 and not gone:
        return live[0]
    everyone = [*live, *gone]
    waits: dict[str, tuple[int, float]] = {}
    for figures in everyone:
        for name, (count, seconds) in figures.queue_waits.items():
            held_count, held_seconds = waits.get(name, (0, 0.0))
            waits[name] = (held_count + count, held_seconds + seconds)
    return Figures(
        merge([f.snapshot for f in live], [f.snapshot for f in gone]),
        queue_waits=waits,
        cpu_seconds=_sum((f.cpu_seconds for f in everyone), 6),
        limit=_sum_int(f.limit for f in live),
        processes=sum(f.processes for f in live),
    )


# -- reports arriving over time ----------------------------------------------------------------


def report_time(snapshot: Snapshot) -> datetime:
    """When ``snapshot`` was taken, as an aware datetime (a naive timestamp is taken as UTC)."""
    try:
        instant = datetime.fromisoformat(snapshot.timestamp)
    except ValueError:
        raise ValueError(f"report timestamp {snapshot.timestamp!r} is not an ISO time") from None
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)


Step = Literal["later", "earlier", "restart"]

_COUNTERS = ("completed", "failed", "cancelled", "rejected", "lost")


def _less(stats: EndpointStats, before: EndpointStats | None) -> EndpointStats:
    if before is None:
        return stats
    less = {name: max(getattr(stats, name) - getattr(before, name), 0) for name in _COUNTERS}
    lifetime: dict[str, Distribution | None] = {}
    for name in DISTRIBUTIONS:
        now, then = stats.distribution(name, True), before.distribution(name, True)
        lifetime[f"{name}_all"] = now if now is None or then is None else now.minus(then)
    responses = {
        key: n - before.responses.get(key, 0)
        for key, n in stats.responses.items()
        if n > before.responses.get(key, 0)
    }
    counted = replace(stats, total=less["completed"] + stats.active, responses=responses, **less)
    return _with(counted, lifetime)


def _since(snapshot: Snapshot, baseline: Snapshot) -> Snapshot:
    """``snapshot`` with the counters ``baseline`` held taken off (gauges as they are)."""

    def section(
        now: Mapping[str, EndpointStats], then: Mapping[str, EndpointStats]
    ) -> dict[str, EndpointStats]:
        return {name: _less(stats, then.get(name)) for name, stats in now.items()}

    less = {name: max(getattr(snapshot, name) - getattr(baseline, name), 0) for name in _COUNTERS}
    return replace(
        snapshot,
        total=less["completed"] + snapshot.active,
        endpoints=section(snapshot.endpoints, baseline.endpoints),
        websockets=section(snapshot.websockets, baseline.websockets),
        background=section(snapshot.background, baseline.background),
        **less,
    )


class ProcessReports:
    """One worker process as its reports arrive: the latest two, and their lifetime totals.

    Queue waits and CPU seconds are added up over the reports taken in (each covers its own
    interval), so a series of reports gives the counters a live exporter reads from the monitor.
    """

    __slots__ = ("baseline", "cpu_seconds", "instant", "latest", "previous", "queue_waits")

    def __init__(self, first: Snapshot, baseline: Snapshot | None = None) -> None:
        self.latest = first
        # A worker taken for gone that reported again: what it had counted by then stays with
        # its gone self (its requests in flight as lost), so this one counts only what came
        # after; counters never go down (a request lost then and finished later counts twice).
        self.baseline = baseline
        self.previous: Snapshot | None = None
        self.instant = report_time(first)
        self.queue_waits: dict[str, tuple[int, float]] = {}
        self.cpu_seconds: float | None = None
        self._count(first)

    def step(self, snapshot: Snapshot) -> Step:
        """How ``snapshot`` relates to the latest report: a later one, an earlier one (or the
        same), or a new process under the same pid (its uptime or its totals went backwards)."""
        if report_time(snapshot) <= self.instant:
            return "earlier"
        held = self.latest
        if (
            snapshot.uptime_s < held.uptime_s
            or snapshot.completed < held.completed
            or snapshot.rejected < held.rejected
        ):
            return "restart"
        return "later"

    def add(self, snapshot: Snapshot) -> None:
        """Take a later report in (``step`` said ``"later"``)."""
        self.previous, self.latest = self.latest, snapshot
        self.instant = report_time(snapshot)
        self._count(snapshot)

    def add_earlier(self, snapshot: Snapshot) -> None:
        """Keep a late report as the previous one if it is newer than that (rates need it)."""
        when, held = report_time(snapshot), self.previous
        if when < self.instant and (held is None or when > report_time(held)):
            self.previous = snapshot

    def _count(self, snapshot: Snapshot) -> None:
        for name, q in snapshot.queues.items():
            count, seconds = self.queue_waits.get(name, (0, 0.0))
            self.queue_waits[name] = (
                count + q.waited,
                seconds + q.waited * (q.wait_avg_ms or 0.0) / 1000.0,
            )
        cpu = snapshot.system.cpu_percent
        if cpu is not None:
            self.cpu_seconds = (self.cpu_seconds or 0.0) + cpu / 100.0 * snapshot.interval_s

    @property
    def counted(self) -> Snapshot:
        """The latest report as it counts for the host (its counters past ``baseline``)."""
        baseline = self.baseline
        return self.latest if baseline is None else _since(self.latest, baseline)

    def figures(self) -> Figures:
        snapshot = self.counted
        limit = None
        if snapshot.saturation and snapshot.active:
            limit = round(snapshot.active / snapshot.saturation)
        return Figures(snapshot, dict(self.queue_waits), cpu_seconds=self.cpu_seconds, limit=limit)


Key = tuple[str, int]


class HostView:
    """The workers of a host as their reports arrive: which are live, and what all finished.

    A worker is one (host, pid) whose uptime and totals keep growing; a pid whose uptime or
    totals go backwards is a new process, and the old one is gone. A worker whose latest report
    is more than ``stale_intervals`` of its own report intervals older than the newest report
    seen is gone too (stopped, recycled or killed; ``None`` never takes a worker for gone by
    its silence). A gone worker that reports again is live again, counted past what its gone
    self counted (see :class:`ProcessReports`). :meth:`total` and
    :meth:`figures` apply the module's rule: counters of every worker seen, gauges of the live.
    """

    def __init__(self, stale_intervals: float | None = STALE_INTERVALS) -> None:
        self.stale_intervals = stale_intervals
        self.retired = 0
        """How many workers are gone now (their totals are kept)."""
        self._live: dict[Key, ProcessReports] = {}
        self._gone: dict[Key, ProcessReports] = {}
        self._folded: Figures | None = None
        self._newest: datetime | None = None

    def add(self, snapshot: Snapshot) -> None:
        """Take a report in; one older than the latest of its worker only serves as previous."""
        key = (snapshot.host, snapshot.pid)
        process = self._live.get(key) or self._gone.get(key)
        if process is None:
            process = self._live[key] = ProcessReports(snapshot)
        else:
            step = process.step(snapshot)
            if step == "earlier":
                process.add_earlier(snapshot)
                return
            if step == "restart":
                if self._live.get(key) is process:
                    del self._live[key]
                    self._retire(key, process)
                process = self._live[key] = ProcessReports(snapshot)
            elif self._gone.get(key) is process:
                # Only slow, not gone: live again, past what its gone self already counted.
                process = self._live[key] = ProcessReports(snapshot, baseline=process.latest)
                self.retired -= 1
            else:
                process.add(snapshot)
        if self._newest is None or process.instant > self._newest:
            self._newest = process.instant
        self._prune()

    def extend(self, snapshots: Iterable[Snapshot]) -> None:
        for snapshot in snapshots:
            self.add(snapshot)

    def add_finished(self, snapshot: Snapshot) -> None:
        """Take in the folded totals of workers that finished before they were seen here (a
        multi-process host's archive): counted as gone, never live."""
        self._fold(ProcessReports(snapshot))

    def _retire(self, key: Key, process: ProcessReports) -> None:
        self.retired += 1
        older = self._gone.pop(key, None)
        if older is not None:
            self._fold(older)
        self._gone[key] = process
        if len(self._gone) > GONE_KEPT:
            self._fold(self._gone.pop(next(iter(self._gone))))

    def _fold(self, process: ProcessReports) -> None:
        folded = [self._folded] if self._folded is not None else []
        self._folded = combine([], [*folded, process.figures()])

    def _prune(self) -> None:
        newest = self._newest
        if self.stale_intervals is None or newest is None:
            return
        for key, process in list(self._live.items()):
            window = self.stale_intervals * max(process.latest.interval_s, SHORTEST_INTERVAL_S)
            if process.instant < newest - timedelta(seconds=window):
                del self._live[key]
                self._retire(key, process)

    def _ordered(self) -> list[ProcessReports]:
        return sorted(self._live.values(), key=lambda p: (p.latest.pid, p.latest.host))

    def live(self) -> list[Snapshot]:
        """The live workers' latest reports, by pid."""
        return [process.counted for process in self._ordered()]

    def previous_of(self, snapshot: Snapshot) -> Snapshot | None:
        """The report before ``snapshot``'s worker's latest one, if it was seen."""
        process = self._live.get((snapshot.host, snapshot.pid))
        return process.previous if process is not None else None

    def gone(self) -> list[Snapshot]:
        """What the gone workers contribute: their latest reports, and one folded total."""
        gone = [process.counted for process in self._gone.values()]
        return gone + ([self._folded.snapshot] if self._folded is not None else [])

    def total(self) -> Snapshot | None:
        """The host's snapshot (pid 0 unless a single worker was ever seen), or None."""
        if not self._live and not self._gone and self._folded is None:
            return None
        return merge(self.live(), self.gone())

    def figures(self) -> Figures | None:
        """The host's figures for an exporter, with the queue waits and CPU the reports add up."""
        if not self._live and not self._gone and self._folded is None:
            return None
        gone = [process.figures() for process in self._gone.values()]
        if self._folded is not None:
            gone.append(self._folded)
        return combine([process.figures() for process in self._ordered()], gone)
