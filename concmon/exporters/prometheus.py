"""Prometheus exporter: live counters at scrape time, for one process or a whole host.

:func:`exposition` renders a ``/metrics`` response from a collector that reads the monitor when
Prometheus scrapes, never a copy of the last report, with prometheus_client's content
negotiation (OpenMetrics when the scraper asks for it). The web adapters call it from their
``/metrics`` route; :class:`PrometheusSink` (the ``prometheus`` entry point) keeps the
multi-process state fresh and can serve ``/metrics`` on a port of its own.

Multi-process mode (uvicorn ``--workers N``, gunicorn) is switched on by pointing
``CONCMON_PROMETHEUS_MULTIPROC_DIR`` (or prometheus_client's ``PROMETHEUS_MULTIPROC_DIR``) at a
directory the workers share; see :mod:`concmon.exporters.multiprocess` for how the workers are
added up. :func:`exposition_from_snapshots` renders the same metrics from logged snapshots, for
node_exporter's textfile collector.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Final, Literal

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, generate_latest, start_http_server
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from concmon.exporters.config import ExporterSettings, load_exporter_settings
from concmon.exporters.figures import (
    OUTCOMES,
    Figures,
    Finished,
    figures_from_snapshots,
    live_figures,
)
from concmon.exporters.multiprocess import MultiProcessError, MultiProcessStore
from concmon.hookspecs import hookimpl
from concmon.monitor import ConcurrencyMonitor
from concmon.runtime import get_monitor
from concmon.settings import ConfigError, Settings
from concmon.snapshot import Snapshot

logger = logging.getLogger("concmon")

Mode = Literal["single-process", "multi-process"]

METRIC_NAMES: Final = (
    "concmon_requests_active",
    "concmon_requests_peak",
    "concmon_requests_total",
    "concmon_requests_rejected_total",
    "concmon_requests_limit",
    "concmon_websocket_connections_active",
    "concmon_websocket_connections_total",
    "concmon_background_tasks_active",
    "concmon_background_tasks_total",
    "concmon_queue_depth",
    "concmon_queue_wait_seconds",
    "concmon_process_cpu_seconds_total",
    "concmon_process_resident_memory_bytes",
    "concmon_process_threads",
    "concmon_process_open_fds",
    "concmon_event_loop_lag_seconds",
    "concmon_sink_errors_total",
    "concmon_processes",
)
"""Every metric family the exporter can publish, as a scraper sees them."""


# -- rendering ---------------------------------------------------------------------------------


def _gauge_by(name: str, doc: str, label: str, values: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key in sorted(values):
        family.add_metric([key], values[key])
    return family


def _finished_by(name: str, doc: str, label: str, values: Finished) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label, "outcome"])
    for key in sorted(values):
        outcomes = values[key]
        for outcome in OUTCOMES:
            family.add_metric([key, outcome], outcomes.get(outcome, 0))
    return family


def metric_families(figures: Figures) -> list[Metric]:
    """The Prometheus metric families for ``figures``; names are listed in METRIC_NAMES."""
    g, c = figures.gauges, figures.counters
    # An endpoint known only from finished workers' totals still shows as 0 active, so its
    # active series ends at 0 rather than vanishing at its last non-zero value.
    known = dict.fromkeys(c.requests, 0)
    families: list[Metric] = [
        _gauge_by(
            "concmon_requests_active",
            "HTTP requests in flight now.",
            "endpoint",
            {**known, **g.active},
        ),
        _gauge_by(
            "concmon_requests_peak",
            "Highest number of HTTP requests in flight at once since the previous report "
            "(summed over processes).",
            "endpoint",
            {**known, **g.peak},
        ),
        _finished_by(
            "concmon_requests",
            "HTTP requests finished, by outcome (ok, failed, cancelled).",
            "endpoint",
            c.requests,
        ),
    ]
    rejected = CounterMetricFamily(
        "concmon_requests_rejected",
        "HTTP requests turned away by an admission limit (never active).",
        labels=["endpoint"],
    )
    for key in sorted(c.rejected):
        rejected.add_metric([key], c.rejected[key])
    families.append(rejected)
    if g.limit is not None:
        families.append(
            GaugeMetricFamily(
                "concmon_requests_limit",
                "Configured maximum of concurrent HTTP requests (summed over processes).",
                value=g.limit,
            )
        )
    families += [
        _gauge_by(
            "concmon_websocket_connections_active",
            "WebSocket connections open now.",
            "endpoint",
            g.websockets_active,
        ),
        _finished_by(
            "concmon_websocket_connections",
            "WebSocket connections closed, by outcome.",
            "endpoint",
            c.websockets,
        ),
        _gauge_by(
            "concmon_background_tasks_active",
            "Background tasks running now.",
            "task",
            g.background_active,
        ),
        _finished_by(
            "concmon_background_tasks",
            "Background tasks finished, by outcome.",
            "task",
            c.background,
        ),
        _gauge_by(
            "concmon_queue_depth", "Requests waiting in each queue now.", "queue", g.queue_depth
        ),
    ]
    waits = SummaryMetricFamily(
        "concmon_queue_wait_seconds",
        "Time requests spent waiting in each queue before they ran.",
        labels=["queue"],
        unit="seconds",
    )
    for key in sorted(c.queue_waits):
        count, seconds = c.queue_waits[key]
        waits.add_metric([key], count_value=count, sum_value=seconds)
    families.append(waits)
    if c.cpu_seconds is not None:
        families.append(
            CounterMetricFamily(
                "concmon_process_cpu_seconds",
                "User and system CPU time of the monitored processes.",
                value=c.cpu_seconds,
                unit="seconds",
            )
        )
    if g.memory_bytes is not None:
        families.append(
            GaugeMetricFamily(
                "concmon_process_resident_memory_bytes",
                "Resident memory of the monitored processes.",
                value=g.memory_bytes,
                unit="bytes",
            )
        )
    if g.threads is not None:
        families.append(
            GaugeMetricFamily(
                "concmon_process_threads", "Threads of the monitored processes.", value=g.threads
            )
        )
    if g.open_fds is not None:
        families.append(
            GaugeMetricFamily(
                "concmon_process_open_fds",
                "Open file descriptors of the monitored processes.",
                value=g.open_fds,
            )
        )
    if g.loop_lag_seconds is not None:
        families.append(
            GaugeMetricFamily(
                "concmon_event_loop_lag_seconds",
                "Worst event-loop lag since the previous report (the highest of any process).",
                value=g.loop_lag_seconds,
                unit="seconds",
            )
        )
    sink_errors = CounterMetricFamily(
        "concmon_sink_errors", "Failures of each concmon sink.", labels=["sink"]
    )
    for key in sorted(c.sink_errors):
        sink_errors.add_metric([key], c.sink_errors[key])
    families.append(sink_errors)
    families.append(
        GaugeMetricFamily(
            "concmon_processes",
            "Live processes whose figures this exposition adds up.",
            value=figures.processes,
        )
    )
    return families


class FiguresCollector(Collector):
    """A prometheus_client collector that reads fresh figures on every ``collect()``."""

    def __init__(self, source: Callable[[], Figures]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        yield from metric_families(self._source())


def exposition_from_snapshots(
    snapshots: Iterable[Snapshot], *, stale_intervals: float | None = 3.0
) -> str:
    """Prometheus text exposition of logged snapshots, for node_exporter's textfile collector.

    ``snapshots`` may interleave several worker processes of one host (a shared log or
    JSON-lines file); they are added up like a live multi-process scrape: each process counts
    with its latest snapshot, counters of every process are summed, and a process whose latest
    report is more than ``stale_intervals`` report intervals older than the newest one counts as
    gone (its counters kept, its active requests dropped; ``None`` keeps every process). Queue
    wait and CPU totals cover the reports in ``snapshots``. Write the result to a ``.prom``
    file by renaming a temporary file, as the textfile collector expects.
    """
    figures = figures_from_snapshots(snapshots, stale_intervals=stale_intervals)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FiguresCollector(lambda: figures))
    return generate_latest(registry).decode("utf-8")


# -- the live exposition -----------------------------------------------------------------------


class _Backend:
    """Where a scrape's figures come from: this process alone, or every worker of the host."""

    def __init__(self, store: MultiProcessStore | None, interval: float) -> None:
        self.pid = os.getpid()
        self.store = store
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if store is not None:
            self.publish()
            self._thread = threading.Thread(
                target=self._run, name="concmon-prometheus-state", daemon=True
            )
            self._thread.start()

    @property
    def mode(self) -> Mode:
        return "multi-process" if self.store is not None else "single-process"

    def figures(self) -> Figures:
        monitor = get_monitor()
        if self.store is None:
            return live_figures(monitor)
        return self.store.collect(lambda: live_figures(monitor))

    def publish(self) -> None:
        if self.store is not None:
            try:
                self.store.write(live_figures(get_monitor()))
            except OSError as exc:
                _log_once(
                    "write",
                    "concmon: cannot write the multi-process state file %s (%s); other workers' "
                    "scrapes miss this worker's latest figures, counting goes on",
                    self.store.state_path,
                    exc.strerror or exc,
                )

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.publish()

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)
        if self.store is not None:
            self.store.close(live_figures(get_monitor()))


_lock = threading.Lock()
_backend: _Backend | None = None
_registry: CollectorRegistry | None = None
_logged: set[str] = set()


def _log_once(key: str, message: str, *args: object) -> None:
    if key not in _logged:
        _logged.add(key)
        logger.error(message, *args)


def _make_backend(settings: ExporterSettings | None) -> _Backend:
    if settings is None:
        try:
            settings = load_exporter_settings()
        except ConfigError as exc:
            _log_once("config", "%s; serving this process's figures only", exc)
            return _Backend(None, 1.0)
    directory = settings.prometheus_multiproc_dir
    if directory is None:
        return _Backend(None, settings.prometheus_write_interval)
    try:
        store = MultiProcessStore(directory)
    except MultiProcessError as exc:
        _log_once("dir", "concmon: %s; /metrics reports this worker alone, counting goes on", exc)
        return _Backend(None, settings.prometheus_write_interval)
    return _Backend(store, settings.prometheus_write_interval)


def _current_backend(settings: ExporterSettings | None = None) -> _Backend:
    backend = _backend
    if backend is not None and backend.pid == os.getpid():
        return backend
    return _replace_backend(settings)


def _replace_backend(settings: ExporterSettings | None) -> _Backend:
    global _backend
    with _lock:
        backend = _backend
        if backend is None or backend.pid != os.getpid():
            backend = _backend = _make_backend(settings)
        return backend


def _collect_figures() -> Figures:
    return _current_backend().figures()


def registry() -> CollectorRegistry:
    """The registry behind :func:`exposition`, for serving it with prometheus_client's servers.

    It holds only concmon's collector, so a scrape never includes metrics the application put
    in prometheus_client's default registry (serve those separately or register the collector
    there: ``REGISTRY.register(FiguresCollector(...))``).
    """
    global _registry
    reg = _registry
    if reg is None:
        with _lock:
            if _registry is None:
                reg = CollectorRegistry(auto_describe=False)
                reg.register(FiguresCollector(_collect_figures))
                _registry = reg
            reg = _registry
    return reg


def activate() -> Mode:
    """Choose single- or multi-process mode from the environment, once per process.

    In multi-process mode this starts publishing this worker's figures for the others, so
    every worker must call it at start (the ``prometheus`` sink and the adapters'
    ``prometheus=True`` do); :func:`exposition` calls it too. After ``fork()`` the child
    chooses again under its own pid.
    """
    return _current_backend().mode


def exposition(accept: str | None = None) -> tuple[bytes, str]:
    """Body and content type of a ``/metrics`` response for this process's monitor.

    ``accept`` is the scrape's ``Accept`` header: OpenMetrics when it asks for
    ``application/openmetrics-text``, the classic text format otherwise. The figures are read
    at call time; in multi-process mode they cover every live worker of the host plus the
    totals of finished ones. Safe to call from any thread; do it off the event loop.
    """
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry()), content_type


def _close_backend() -> None:
    """Stop publishing and release this worker's lock (its totals get folded by the others)."""
    global _backend
    with _lock:
        backend, _backend = _backend, None
    if backend is not None and backend.pid == os.getpid():
        backend.close()


def _after_fork_in_child() -> None:
    global _backend, _lock
    _lock = threading.Lock()
    backend, _backend = _backend, None
    if backend is not None and backend.store is not None:
        backend.store.forget_after_fork()
        # A worker forked from a publishing parent (gunicorn --preload) publishes under its
        # own pid at once, whether or not it is ever scraped.
        _current_backend()


os.register_at_fork(after_in_child=_after_fork_in_child)


class PrometheusSink:
    """The ``prometheus`` sink: multi-process publishing, and ``/metrics`` on its own port.

    Enable it with ``CONCMON_SINKS=...,prometheus``. A web adapter's ``/metrics`` route does not
    need it in single-process mode; in multi-process mode every worker must publish its
    figures, which this sink (or the adapter's ``prometheus=True``) starts. With
    ``CONCMON_PROMETHEUS_PORT`` it also serves :func:`exposition` itself, for processes
    without a web adapter.
    """

    name = "prometheus"

    def __init__(self) -> None:
        self.mode: Mode | None = None
        self.port: int | None = None
        self._server: object | None = None

    @hookimpl
    def concmon_configure(self, settings: Settings, monitor: ConcurrencyMonitor) -> None:
        try:
            config = load_exporter_settings()
        except ConfigError as exc:
            logger.error("%s; the prometheus sink stays off, counting goes on", exc)
            return
        self.mode = _current_backend(config).mode
        if config.prometheus_port is not None:
            self._serve(config.prometheus_addr, config.prometheus_port)

    def _serve(self, addr: str, port: int) -> None:
        try:
            server, _thread = start_http_server(port, addr=addr, registry=registry())
        except OSError as exc:
            logger.error(
                "concmon: cannot serve /metrics on %s:%d (%s; CONCMON_PROMETHEUS_PORT); "
                "counting goes on",
                addr,
                port,
                exc.strerror or exc,
            )
            return
        self._server = server
        self.port = int(server.server_address[1])

    @hookimpl
    def concmon_report(self, snapshot: Snapshot) -> None:
        # A report restarts the interval peaks; publish right away so the other workers'
        # scrapes see the new interval rather than the old one for up to a write interval.
        backend = _backend
        if backend is not None and backend.pid == os.getpid():
            backend.publish()
        elif self.mode is not None:
            _current_backend()  # a forked child starts publishing under its own pid

    @hookimpl
    def concmon_shutdown(self, snapshot: Snapshot) -> None:
        server = self._server
        self._server = None
        if server is not None:
            shutdown = getattr(server, "shutdown", None)
            close = getattr(server, "server_close", None)
            if shutdown is not None:
                shutdown()
            if close is not None:
                close()
        _close_backend()
