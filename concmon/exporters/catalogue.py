"""Every metric concmon publishes, declared once for all exporters.

Each :class:`Metric` says what it is (gauge or counter), its labels, unit and help, how its
values are read from :class:`concmon.host.Figures`, and the name each exporter gives it:
Prometheus, OpenTelemetry, DogStatsD, or only some of them. Each :class:`Histogram` does the
same for a distribution per endpoint (durations, time to first byte), read from the lifetime
bucket counts of the snapshot. The Prometheus collector, the OpenTelemetry instruments, the
DogStatsD emitter and the tables in docs/exporters.md are all built from :data:`CATALOGUE`;
none of them lists metrics of its own. A Prometheus summary is made of two catalogue counters
(:class:`Summary`). Labels a setting may switch off (:attr:`Metric.optional`) are folded by
:meth:`Metric.series`, their series summed. Importing this module imports no exporter library.
``python -m concmon.exporters.catalogue`` prints the documentation tables.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from concmon.host import Figures
from concmon.snapshot import Distribution, EndpointStats, QueueStats, Snapshot
from concmon.system import MIB

Kind = Literal["gauge", "counter"]
Values = dict[tuple[str, ...], float]
"""Label values (in the order of the metric's labels) -> the value of that series."""
Reader = Callable[[Figures], Values]
Distributions = dict[tuple[str, ...], Distribution]
"""Label values -> the lifetime distribution of that series."""
Section = Callable[[Snapshot], Mapping[str, EndpointStats]]

OUTCOMES: Final = ("ok", "failed", "cancelled", "lost")
"""Label values of the ``outcome`` of a finished request, connection or task (``lost``: in
flight in a worker that died, found by a host view)."""

NO_METHOD: Final = "other"
NO_STATUS: Final = "none"
"""The ``method`` and ``status`` of requests counted without them: lost in a dead worker,
finished by name, or read from a report older than these labels."""

PROMETHEUS_UNITS: Final = {"s": "seconds", "By": "bytes"}
"""Prometheus's unit suffix for the units whose metric names end in one."""


@dataclass(frozen=True, slots=True)
class Metric:
    """One figure as a monitoring system sees it; an exporter name of ``None`` leaves it out."""

    kind: Kind
    labels: tuple[str, ...]
    unit: str
    """The unit as OpenTelemetry writes it (UCUM): ``{request}``, ``s``, ``By``."""
    help: str
    read: Reader
    prometheus: str | None = None
    """The family name; prometheus_client adds ``_total`` to a counter's samples."""
    otel: str | None = None
    statsd: str | None = None
    """The name under the configured namespace (``CONCMON_STATSD_NAMESPACE``)."""
    host_note: str = ""
    """How a sum over processes combines it, added to the help where an exposition adds
    processes up (Prometheus)."""
    optional: tuple[str, ...] = ()
    """Labels a setting may switch off (``CONCMON_METRICS_<LABEL>_LABEL``)."""

    def series(self, figures: Figures, off: Collection[str] = ()) -> tuple[tuple[str, ...], Values]:
        """The labels published and the values read, the labels in ``off`` folded away (their
        series summed; only :attr:`optional` ones can be)."""
        values = self.read(figures)
        dropped = [label for label in self.optional if label in off]
        if not dropped:
            return self.labels, values
        keep = [i for i, label in enumerate(self.labels) if label not in dropped]
        folded: Values = {}
        for key, value in values.items():
            short = tuple(key[i] for i in keep)
            folded[short] = folded.get(short, 0) + value
        return tuple(self.labels[i] for i in keep), folded

    @property
    def host_help(self) -> str:
        if not self.host_note:
            return self.help
        return f"{self.help.removesuffix('.')} ({self.host_note})."

    @property
    def prometheus_samples(self) -> str:
        """The name a scraper sees: the family name, with ``_total`` for a counter."""
        assert self.prometheus is not None
        return f"{self.prometheus}_total" if self.kind == "counter" else self.prometheus


@dataclass(frozen=True, slots=True)
class Summary:
    """A Prometheus summary whose ``_count`` and ``_sum`` are two counters of the catalogue."""

    prometheus: str
    help: str
    count: Metric
    sum: Metric


@dataclass(frozen=True, slots=True)
class Histogram:
    """A distribution per endpoint, with the monitor's bucket bounds (``CONCMON_LATENCY_BUCKETS``).

    ``read`` gives each series' lifetime :class:`concmon.snapshot.Distribution`: bucket counts
    that never go down, exactly what a Prometheus histogram is. Every endpoint has a series, so
    a histogram's count matches the requests counter from the first scrape, except the time
    queued before the application, whose series appear once they count something (where no
    proxy sets ``X-Request-Start`` there are none).
    """

    labels: tuple[str, ...]
    help: str
    section: Literal["endpoints", "websockets", "background"]
    """The snapshot's section the series are read from, one per name."""
    distribution: str
    """Which of :data:`concmon.snapshot.DISTRIBUTIONS` (its lifetime reading)."""
    prometheus: str | None = None
    """The family name, ending in ``_seconds``."""
    otel: str | None = None
    statsd: str | None = None
    unit: str = "s"
    sparse: bool = False
    """Only the series that counted something (the time queued before the application)."""

    def read(self, figures: Figures) -> Distributions:
        found: Distributions = {}
        stats_by_name: Mapping[str, EndpointStats] = getattr(figures.snapshot, self.section)
        for name, stats in stats_by_name.items():
            distribution = stats.distribution(self.distribution, lifetime=True)
            if distribution is not None and (distribution.count or not self.sparse):
                found[(name,)] = distribution
        return found


def added_since(now: Distribution, before: Distribution | None) -> Distribution:
    """What the lifetime distribution ``now`` holds beyond ``before``, the same series as the
    exporter last sent it; all of ``now`` when there was none, or when the series restarted
    (a new process: another set of bounds, or a bucket holding fewer than before)."""
    if before is None:
        return now
    if before.bounds != now.bounds or any(
        b > a for a, b in zip(now.counts, before.counts, strict=False)
    ):
        return now
    return now.minus(before)


def stand_ins(added: Distribution) -> Iterator[tuple[float, int]]:
    """``(value, how many)`` to record (or send) so that a histogram on ``added.bounds`` gains
    exactly ``added``, for the exporters that take single values, not bucket counts.

    Each value lies inside its bucket and all of them add up to ``added.sum_s``.
    The true values of a bucket lie between its bounds (the last one's between the top bound
    and ``added.max_s``), so their sum does too; every stand-in sits at the same fraction of its
    bucket's width, the fraction that gives that sum.
    """
    bounds = added.bounds
    edges = []
    for i, n in enumerate(added.counts):
        if not n:
            continue
        low = bounds[i - 1] if i else 0.0
        if i < len(bounds):
            high = bounds[i]
        else:
            above = math.nextafter(bounds[-1], math.inf)
            high = max(added.max_s or above, above)
        edges.append((low, high, n))
    lowest = sum(low * n for low, _, n in edges)
    width = sum((high - low) * n for low, high, n in edges)
    share = min(max((added.sum_s - lowest) / width, 0.0), 1.0) if width > 0 else 1.0
    for low, high, n in edges:
        value = low + (high - low) * share
        # Buckets include their upper bound only: a value on the lower one belongs below.
        floor = math.nextafter(low, math.inf) if low > 0 else 0.0
        yield min(max(value, floor), high), n


def _per_name(section: Section, figure: Callable[[EndpointStats], float]) -> Reader:
    def read(figures: Figures) -> Values:
        return {(name,): figure(stats) for name, stats in section(figures.snapshot).items()}

    return read


def _by_outcome(section: Section) -> Reader:
    def read(figures: Figures) -> Values:
        values: Values = {}
        for name, s in section(figures.snapshot).items():
            ok = s.completed - s.failed - s.cancelled - s.lost
            counts = (ok, s.failed, s.cancelled, s.lost)
            for outcome, count in zip(OUTCOMES, counts, strict=True):
                values[(name, outcome)] = count
        return values

    return read


def _by_response(section: Section) -> Reader:
    """Finished requests by endpoint, method, status class and outcome.

    Every finish of the kernel is in one ``responses`` key; what they do not cover (requests
    lost in a dead worker, reports older than the keys) is counted under method ``other`` and
    status ``none``, so each outcome adds up to the outcome counts. An outcome that never
    happened shows as one series at 0 there, so that ratios by outcome exist from the start.
    """

    def read(figures: Figures) -> Values:
        values: Values = {}
        for name, s in section(figures.snapshot).items():
            by_outcome = dict.fromkeys(OUTCOMES, 0)
            for key, count in s.responses.items():
                method, status, outcome = key.split(" ")
                series = (name, method, status, outcome)
                values[series] = values.get(series, 0) + count
                by_outcome[outcome] = by_outcome.get(outcome, 0) + count
            ok = s.completed - s.failed - s.cancelled - s.lost
            for outcome, count in zip(OUTCOMES, (ok, s.failed, s.cancelled, s.lost), strict=True):
                series = (name, NO_METHOD, NO_STATUS, outcome)
                rest = max(count - by_outcome[outcome], 0)
                if rest or not by_outcome[outcome]:
                    values[series] = values.get(series, 0) + rest
        return values

    return read


def _per_queue(figure: Callable[[QueueStats], float | None]) -> Reader:
    def read(figures: Figures) -> Values:
        values = {(name,): figure(q) for name, q in figures.snapshot.queues.items()}
        return {key: value for key, value in values.items() if value is not None}

    return read


def _queue_waits(part: Literal[0, 1]) -> Reader:
    def read(figures: Figures) -> Values:
        return {(name,): waits[part] for name, waits in figures.queue_waits.items()}

    return read


def _one(figure: Callable[[Figures], float | None]) -> Reader:
    def read(figures: Figures) -> Values:
        value = figure(figures)
        return {} if value is None else {(): value}

    return read


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def _endpoints(s: Snapshot) -> Mapping[str, EndpointStats]:
    return s.endpoints


def _websockets(s: Snapshot) -> Mapping[str, EndpointStats]:
    return s.websockets


def _background(s: Snapshot) -> Mapping[str, EndpointStats]:
    return s.background


QUEUE_WAITS: Final = Metric(
    "counter",
    ("queue",),
    "{request}",
    "Requests that finished waiting in each queue.",
    _queue_waits(0),
    otel="concmon.queue.waits",
    statsd="queue.waits",
)
QUEUE_WAIT_TIME: Final = Metric(
    "counter",
    ("queue",),
    "s",
    "Total time requests spent waiting in each queue.",
    _queue_waits(1),
    otel="concmon.queue.wait_time",
)

CATALOGUE: Final[tuple[Metric | Summary | Histogram, ...]] = (
    Metric(
        "gauge",
        ("endpoint",),
        "{request}",
        "HTTP requests in flight now.",
        _per_name(_endpoints, lambda s: s.active),
        prometheus="concmon_requests_active",
        otel="concmon.requests.active",
        statsd="requests.active",
    ),
    Metric(
        "gauge",
        ("endpoint",),
        "{request}",
        "Highest number of HTTP requests in flight at once since the previous report.",
        _per_name(_endpoints, lambda s: s.interval_peak),
        prometheus="concmon_requests_peak",
        otel="concmon.requests.peak",
        statsd="requests.peak",
        host_note="summed over processes",
    ),
    Metric(
        "counter",
        ("endpoint", "method", "status", "outcome"),
        "{request}",
        "HTTP requests finished, by method, status class (2xx, ..., none: no response sent) "
        "and outcome (ok, failed, cancelled, lost).",
        _by_response(_endpoints),
        prometheus="concmon_requests",
        otel="concmon.requests",
        statsd="requests",
        optional=("method", "status"),
    ),
    Histogram(
        ("endpoint",),
        "Duration of the HTTP requests, from admission to the end of the response.",
        "endpoints",
        "duration",
        prometheus="concmon_request_duration_seconds",
        otel="concmon.request.duration",
        statsd="request.duration",
    ),
    Histogram(
        ("endpoint",),
        "Time from admission to the response head (status line and headers) going out.",
        "endpoints",
        "head",
        prometheus="concmon_response_head_seconds",
        otel="concmon.response.head",
        statsd="response.head",
    ),
    Histogram(
        ("endpoint",),
        "Time from admission to the first byte of the response body (time to first token of "
        "a stream).",
        "endpoints",
        "ttfb",
        prometheus="concmon_time_to_first_byte_seconds",
        otel="concmon.response.time_to_first_byte",
        statsd="response.time_to_first_byte",
    ),
    Histogram(
        ("endpoint",),
        "Time HTTP requests queued before the application, from a proxy's X-Request-Start.",
        "endpoints",
        "queued",
        prometheus="concmon_request_queued_before_app_seconds",
        otel="concmon.request.queued_before_app",
        statsd="request.queued_before_app",
        sparse=True,
    ),
    Metric(
        "gauge",
        (),
        "{request}",
        "HTTP requests in flight whose route the application has not chosen yet.",
        _one(lambda f: f.snapshot.routing),
        prometheus="concmon_requests_routing",
        otel="concmon.requests.routing",
        statsd="requests.routing",
    ),
    Metric(
        "counter",
        ("endpoint",),
        "{request}",
        "HTTP requests turned away by an admission limit (never active).",
        _per_name(_endpoints, lambda s: s.rejected),
        prometheus="concmon_requests_rejected",
        otel="concmon.requests.rejected",
        statsd="requests.rejected",
    ),
    Metric(
        "gauge",
        (),
        "{request}",
        "Configured maximum of concurrent HTTP requests.",
        _one(lambda f: f.limit),
        prometheus="concmon_requests_limit",
        otel="concmon.requests.limit",
        host_note="summed over processes",
    ),
    Metric(
        "gauge",
        (),
        "1",
        "Share of the configured maximum of concurrent HTTP requests in use.",
        _one(lambda f: f.snapshot.saturation),
        statsd="requests.saturation",
    ),
    Metric(
        "gauge",
        ("endpoint",),
        "{connection}",
        "WebSocket connections open now.",
        _per_name(_websockets, lambda s: s.active),
        prometheus="concmon_websocket_connections_active",
        otel="concmon.websocket_connections.active",
        statsd="websocket_connections.active",
    ),
    Metric(
        "gauge",
        ("endpoint",),
        "{connection}",
        "Highest number of WebSocket connections open at once since the previous report.",
        _per_name(_websockets, lambda s: s.interval_peak),
        statsd="websocket_connections.peak",
    ),
    Metric(
        "counter",
        ("endpoint", "outcome"),
        "{connection}",
        "WebSocket connections closed, by outcome.",
        _by_outcome(_websockets),
        prometheus="concmon_websocket_connections",
        otel="concmon.websocket_connections",
        statsd="websocket_connections",
    ),
    Histogram(
        ("endpoint",),
        "How long WebSocket connections stayed open.",
        "websockets",
        "duration",
        prometheus="concmon_websocket_connection_duration_seconds",
        otel="concmon.websocket_connection.duration",
        statsd="websocket_connection.duration",
    ),
    Metric(
        "gauge",
        ("task",),
        "{task}",
        "Background tasks running now.",
        _per_name(_background, lambda s: s.active),
        prometheus="concmon_background_tasks_active",
        otel="concmon.background_tasks.active",
        statsd="background_tasks.active",
    ),
    Metric(
        "gauge",
        ("task",),
        "{task}",
        "Highest number of background tasks running at once since the previous report.",
        _per_name(_background, lambda s: s.interval_peak),
        statsd="background_tasks.peak",
    ),
    Metric(
        "counter",
        ("task", "outcome"),
        "{task}",
        "Background tasks finished, by outcome.",
        _by_outcome(_background),
        prometheus="concmon_background_tasks",
        otel="concmon.background_tasks",
        statsd="background_tasks",
    ),
    Histogram(
        ("task",),
        "Duration of the background tasks.",
        "background",
        "duration",
        prometheus="concmon_background_task_duration_seconds",
        otel="concmon.background_task.duration",
        statsd="background_task.duration",
    ),
    Metric(
        "gauge",
        ("queue",),
        "{request}",
        "Requests waiting in each queue now.",
        _per_queue(lambda q: q.depth),
        prometheus="concmon_queue_depth",
        otel="concmon.queue.depth",
        statsd="queue.depth",
    ),
    Metric(
        "gauge",
        ("queue",),
        "{request}",
        "Highest number of requests waiting in each queue since the previous report.",
        _per_queue(lambda q: q.peak),
        statsd="queue.peak",
    ),
    Summary(
        "concmon_queue_wait_seconds",
        "Time requests spent waiting in each queue before they ran.",
        count=QUEUE_WAITS,
        sum=QUEUE_WAIT_TIME,
    ),
    QUEUE_WAITS,
    QUEUE_WAIT_TIME,
    Metric(
        "gauge",
        ("queue",),
        "s",
        "Mean time the requests that finished waiting since the previous report waited.",
        _per_queue(lambda q: _scaled(q.wait_avg_ms, 0.001)),
        statsd="queue.wait_time.avg",
    ),
    Metric(
        "gauge",
        ("queue",),
        "s",
        "Longest time a request waited in each queue since the previous report.",
        _per_queue(lambda q: _scaled(q.wait_max_ms, 0.001)),
        statsd="queue.wait_time.max",
    ),
    Metric(
        "counter",
        (),
        "s",
        "User and system CPU time of the monitored processes.",
        _one(lambda f: f.cpu_seconds),
        prometheus="concmon_process_cpu_seconds",
        otel="concmon.process.cpu.time",
    ),
    Metric(
        "gauge",
        (),
        "%",
        "CPU use of the process since the previous report, in percent of one core.",
        _one(lambda f: f.snapshot.system.cpu_percent),
        statsd="process.cpu.percent",
    ),
    Metric(
        "gauge",
        (),
        "By",
        "Resident memory of the monitored processes.",
        _one(lambda f: _scaled(f.snapshot.system.memory_mb, MIB)),
        prometheus="concmon_process_resident_memory_bytes",
        otel="concmon.process.memory.usage",
        statsd="process.memory.rss",
    ),
    Metric(
        "gauge",
        (),
        "{thread}",
        "Threads of the monitored processes.",
        _one(lambda f: f.snapshot.system.threads),
        prometheus="concmon_process_threads",
        otel="concmon.process.threads",
        statsd="process.threads",
    ),
    Metric(
        "gauge",
        (),
        "{file_descriptor}",
        "Open file descriptors of the monitored processes.",
        _one(lambda f: f.snapshot.system.open_fds),
        prometheus="concmon_process_open_fds",
        otel="concmon.process.open_fds",
        statsd="process.open_fds",
    ),
    Metric(
        "gauge",
        (),
        "s",
        "Worst event-loop lag since the previous report.",
        _one(lambda f: _scaled(f.snapshot.system.loop_lag_ms, 0.001)),
        prometheus="concmon_event_loop_lag_seconds",
        otel="concmon.event_loop.lag",
        statsd="event_loop.lag",
        host_note="the highest of any process",
    ),
    Metric(
        "counter",
        ("sink",),
        "{error}",
        "Failures of each concmon sink.",
        lambda f: {(name,): count for name, count in f.snapshot.sink_errors.items()},
        prometheus="concmon_sink_errors",
        otel="concmon.sink.errors",
        statsd="sink.errors",
    ),
    Metric(
        "gauge",
        (),
        "{process}",
        "Live processes whose figures this exposition adds up.",
        _one(lambda f: f.processes),
        prometheus="concmon_processes",
    ),
)
"""Every metric, in the order the exporters publish them."""

METRICS: Final = tuple(m for m in CATALOGUE if isinstance(m, Metric))
"""The catalogue without the summaries (whose parts are in it) and the histograms."""

HISTOGRAMS: Final = tuple(m for m in CATALOGUE if isinstance(m, Histogram))
"""The distributions of the catalogue."""

PROMETHEUS_NAMES: Final = tuple(
    m.prometheus_samples if isinstance(m, Metric) else m.prometheus
    for m in CATALOGUE
    if m.prometheus is not None
)
"""Every metric family the Prometheus exporter can publish, as a scraper sees them."""


# -- the documentation tables ------------------------------------------------------------------


def _code(names: tuple[str, ...]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def prometheus_table() -> str:
    rows = ["| metric | type | labels | meaning |", "| --- | --- | --- | --- |"]
    for m in CATALOGUE:
        if isinstance(m, Summary):
            labels = _code(m.count.labels)
            rows.append(f"| `{m.prometheus}` | summary (`_count`, `_sum`) | {labels} | {m.help} |")
        elif isinstance(m, Histogram):
            if m.prometheus is not None:
                kind = "histogram (`_bucket`, `_sum`, `_count`)"
                rows.append(f"| `{m.prometheus}` | {kind} | {_code(m.labels)} | {m.help} |")
        elif m.prometheus is not None:
            line = f"| `{m.prometheus_samples}` | {m.kind} | {_code(m.labels)} | {m.host_help} |"
            rows.append(line)
    return "\n".join(rows)


def otel_table() -> str:
    rows = [
        "| instrument | kind | unit | attributes | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for m in CATALOGUE:
        if isinstance(m, Histogram) and m.otel is not None:
            kind = "histogram (explicit buckets)"
            rows.append(f"| `{m.otel}` | {kind} | `{m.unit}` | {_code(m.labels)} | {m.help} |")
        elif isinstance(m, Metric) and m.otel is not None:
            line = f"| `{m.otel}` | {m.kind} | `{m.unit}` | {_code(m.labels)} | {m.help} |"
            rows.append(line)
    return "\n".join(rows)


def statsd_table() -> str:
    rows = [
        "| metric (namespace `concmon.`) | type | tags | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for m in CATALOGUE:
        if isinstance(m, Histogram) and m.statsd is not None:
            rows.append(f"| `{m.statsd}` | distribution | {_code(m.labels)} | {m.help} |")
        elif isinstance(m, Metric) and m.statsd is not None:
            kind = "gauge" if m.kind == "gauge" else "count"
            tags = (*m.labels, "pid") if m.kind == "gauge" else m.labels
            rows.append(f"| `{m.statsd}` | {kind} | {_code(tags)} | {m.help} |")
    return "\n".join(rows)


if __name__ == "__main__":
    for table in (prometheus_table(), otel_table(), statsd_table()):
        print(table, end="\n\n")
