"""Prometheus exporter: live counters at scrape time, for one process or a whole host.

:func:`exposition` renders a ``/metrics`` response from a collector that reads the monitor when
Prometheus scrapes, never a copy of the last report, with prometheus_client's content
negotiation (OpenMetrics when the scraper asks for it). The web adapters call it from their
``/metrics`` route; :class:`PrometheusSink` (the ``prometheus`` entry point) keeps the
multi-process state fresh and can serve ``/metrics`` on a port of its own.

Multi-process mode (uvicorn ``--workers N``, gunicorn) is switched on by pointing
``CONCMON_PROMETHEUS_MULTIPROC_DIR`` (or prometheus_client's ``PROMETHEUS_MULTIPROC_DIR``) at a
directory the workers share; :mod:`concmon.exporters.multiprocess` finds the workers and
:mod:`concmon.host` adds them up. :func:`exposition_from_snapshots` renders the same metrics
from logged snapshots, for node_exporter's textfile collector. The families are those of
:mod:`concmon.exporters.catalogue`.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Final, Literal

from prometheus_client import CollectorRegistry
from prometheus_client import utils as prometheus_utils
from prometheus_client.exposition import choose_encoder, generate_latest, start_http_server
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from concmon.exporters.catalogue import (
    CATALOGUE,
    PROMETHEUS_NAMES,
    PROMETHEUS_UNITS,
    Histogram,
    Summary,
)
from concmon.exporters.config import ExporterSettings, load_exporter_settings
from concmon.exporters.figures import live_figures
from concmon.exporters.multiprocess import MultiProcessError, MultiProcessStore
from concmon.hookspecs import hookimpl
from concmon.host import STALE_INTERVALS, Figures, HostView
from concmon.monitor import ConcurrencyMonitor
from concmon.runtime import get_monitor
from concmon.settings import ConfigError, Settings
from concmon.snapshot import Snapshot

logger = logging.getLogger("concmon")

Mode = Literal["single-process", "multi-process"]

METRIC_NAMES: Final = PROMETHEUS_NAMES
"""Every metric family the exporter can publish, as a scraper sees them (from the catalogue)."""

_le: Callable[[float], str] = prometheus_utils.floatToGoString
"""A bucket bound as prometheus_client's own histograms write it (``0.25``, ``1.0``)."""

_NOTHING: Final = Figures(Snapshot("", 0, "", 0.0, 0.0), processes=0)


# -- rendering ---------------------------------------------------------------------------------


def _histogram(entry: Histogram, figures: Figures) -> HistogramMetricFamily:
    """``entry`` as a Prometheus histogram: cumulative ``_bucket`` counts up to ``+Inf``."""
    assert entry.prometheus is not None
    family = HistogramMetricFamily(
        entry.prometheus, entry.help, labels=list(entry.labels), unit=PROMETHEUS_UNITS[entry.unit]
    )
    distributions = entry.read(figures)
    for key in sorted(distributions):
        distribution = distributions[key]
        buckets, below = [], 0
        for bound, count in zip(distribution.bounds, distribution.counts, strict=False):
            below += count
            buckets.append((_le(bound), float(below)))
        buckets.append(("+Inf", float(distribution.count)))
        family.add_metric(list(key), buckets, distribution.sum_s)
    return family


def metric_families(figures: Figures, labels_off: frozenset[str] = frozenset()) -> list[Metric]:
    """The Prometheus metric families for ``figures``, one per catalogue entry that has a name.

    A labelled family is always published, empty or not; an unlabelled one only when its value
    is known (no CPU seconds where psutil cannot read them). ``labels_off`` names the optional
    labels switched off (``CONCMON_METRICS_METHOD_LABEL``, ``CONCMON_METRICS_STATUS_LABEL``).
    """
    families: list[Metric] = []
    for entry in CATALOGUE:
        if entry.prometheus is None:
            continue
        if isinstance(entry, Histogram):
            families.append(_histogram(entry, figures))
            continue
        if isinstance(entry, Summary):
            summary = SummaryMetricFamily(
                entry.prometheus,
                entry.help,
                labels=list(entry.count.labels),
                unit=PROMETHEUS_UNITS.get(entry.sum.unit, ""),
            )
            counts, sums = entry.count.read(figures), entry.sum.read(figures)
            for key in sorted(counts):
                count, seconds = int(counts[key]), sums.get(key, 0.0)
                summary.add_metric(list(key), count_value=count, sum_value=seconds)
            families.append(summary)
            continue
        labels, values = entry.series(figures, labels_off)
        if not labels and not values:
            continue
        kind = GaugeMetricFamily if entry.kind == "gauge" else CounterMetricFamily
        family = kind(
            entry.prometheus,
            entry.host_help,
            labels=list(labels),
            unit=PROMETHEUS_UNITS.get(entry.unit, ""),
        )
        for key in sorted(values):
            family.add_metric(list(key), values[key])
        families.append(family)
    return families


class FiguresCollector(Collector):
    """A prometheus_client collector that reads fresh figures on every ``collect()``.

    ``labels_off`` gives the optional labels switched off, read at each collection too.
    """

    def __init__(
        self,
        source: Callable[[], Figures],
        labels_off: Callable[[], frozenset[str]] = frozenset,
    ) -> None:
        self._source = source
        self._labels_off = labels_off

    def collect(self) -> Iterator[Metric]:
        yield from metric_families(self._source(), self._labels_off())


def exposition_from_snapshots(
    snapshots: Iterable[Snapshot],
    *,
    stale_intervals: float | None = STALE_INTERVALS,
    labels_off: frozenset[str] = frozenset(),
) -> str:
    """Prometheus text exposition of logged snapshots, for node_exporter's textfile collector.

    ``snapshots`` may interleave several worker processes of one host (a shared log or
    JSON-lines file); they are added up by :class:`concmon.host.HostView`, the rule of a live
    multi-process scrape: each process counts with its latest snapshot, the counters of every
    process are summed, and a process whose latest report is more than ``stale_intervals``
    report intervals older than the newest one counts as gone (its counters kept, its active
    requests dropped; ``None`` keeps every process). Queue wait and CPU totals cover the
    reports in ``snapshots``. ``labels_off`` folds optional labels away, as the exporter
    settings do live. Write the result to a ``.prom`` file by renaming a temporary file, as the
    textfile collector expects.
    """
    view = HostView(stale_intervals)
    view.extend(snapshots)
    figures = view.figures() or _NOTHING
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FiguresCollector(lambda: figures, lambda: labels_off))
    return generate_latest(registry).decode("utf-8")


# -- the live exposition -----------------------------------------------------------------------


class _Backend:
    """Where a scrape's figures come from: this process alone, or every worker of the host."""

    def __init__(
        self,
        store: MultiProcessStore | None,
        interval: float,
        labels_off: frozenset[str] = frozenset(),
    ) -> None:
        self.pid = os.getpid()
        self.store = store
        self.interval = interval
        self.labels_off = labels_off
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
        own = self.published(monitor)
        return self.store.collect(lambda: own)

    def published(self, monitor: ConcurrencyMonitor) -> Figures:
        """This worker's figures now, written to its state file first.

        A scrape adds this worker's figures to what the others last wrote. Were they its live
        figures while its file lagged behind, the next scrape, answered by another worker
        reading that file, could show a smaller total: counters must never go down, so every
        answer counts exactly what any later answer will find published.
        """
        own = live_figures(monitor)
        assert self.store is not None
        try:
            self.store.write(own)
        except OSError:
            self.publish()  # logs the failure once; this answer still counts the live figures
        return own

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
    interval, off = settings.prometheus_write_interval, settings.labels_off
    if directory is None:
        return _Backend(None, interval, off)
    try:
        store = MultiProcessStore(directory)
    except MultiProcessError as exc:
        _log_once("dir", "concmon: %s; /metrics reports this worker alone, counting goes on", exc)
        return _Backend(None, interval, off)
    return _Backend(store, interval, off)


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


def _labels_off() -> frozenset[str]:
    return _current_backend().labels_off


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
                reg.register(FiguresCollector(_collect_figures, _labels_off))
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


def host_snapshot() -> Snapshot:
    """This process's snapshot now or, in multi-process mode, the whole host's.

    The host's is :func:`concmon.host.merge` of every live worker and the totals of the
    finished ones (pid 0), the figures a multi-process scrape reports; a JSON endpoint can serve
    it in place of the monitor's own snapshot. Reads files in multi-process mode: call it off
    the event loop.
    """
    return _current_backend().figures().snapshot


def host_workers() -> tuple[list[Snapshot], list[Snapshot]]:
    """Each live worker's snapshot (this process's now) and the finished workers' folded
    totals; in single-process mode, this process alone. Reads files in multi-process mode:
    call it off the event loop."""
    backend = _current_backend()
    monitor = get_monitor()
    if backend.store is None:
        return [live_figures(monitor).snapshot], []
    own = backend.published(monitor)
    live, finished = backend.store.workers(lambda: own)
    return [f.snapshot for f in live], [f.snapshot for f in finished]


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
# A worker that exits (max-requests recycling, a graceful stop) hands its final figures to the
# host whether or not a sink's shutdown ran: what it counted since its last write is kept.
atexit.register(_close_backend)


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
