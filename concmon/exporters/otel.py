"""OpenTelemetry exporter: concmon's figures through the OpenTelemetry metrics API.

Every figure is an observable instrument whose callback reads the monitor when the SDK
collects, so whichever reader or exporter the application configured (OTLP, Prometheus, the
console) receives live values, not a copy of the last report. Gauges report what is happening
now; observable counters report cumulative totals, which the SDK turns into deltas if the
backend wants them.

The API has no observable histogram and the Python SDK no ``MetricProducer`` for data
aggregated elsewhere, so each distribution is an explicit-bucket ``Histogram`` on the
monitor's bounds, fed at collection time: the first callback of a collection records, for
every bucket, as many stand-in values as requests landed there since the previous collection.
Each stand-in lies inside its bucket and together they add up to the true sum, so bucket counts,
count and sum are exact; only the histogram's min and max are those of the stand-ins. This
costs one ``record`` per finished request, at collection, never on the request path.

The sink uses the global meter provider unless one is given, so set up the SDK
(``metrics.set_meter_provider``) before ``init_monitor`` loads the ``otel`` sink. In a
multi-process server each worker reports itself; backends tell them apart by the resource
attributes (``process.pid``) the SDK adds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, MeterProvider, Observation

from concmon import __version__
from concmon.exporters.catalogue import HISTOGRAMS, METRICS, Metric, added_since, stand_ins
from concmon.exporters.catalogue import Histogram as HistogramEntry
from concmon.exporters.config import load_exporter_settings
from concmon.exporters.figures import live_figures
from concmon.hookspecs import hookimpl
from concmon.host import Figures
from concmon.monitor import ConcurrencyMonitor
from concmon.settings import ConfigError
from concmon.snapshot import Distribution, Snapshot

logger = logging.getLogger("concmon")

SCOPE_NAME = "concmon"

Callback = Callable[[CallbackOptions], Iterable[Observation]]


class _Replay:
    """One catalogue histogram fed to its SDK instrument: what each series had last time."""

    def __init__(self, entry: HistogramEntry, instrument: Histogram) -> None:
        self.entry = entry
        self.instrument = instrument
        self.recorded: dict[tuple[str, ...], Distribution] = {}

    def record(self, figures: Figures) -> None:
        for key, now in self.entry.read(figures).items():
            added = added_since(now, self.recorded.get(key))
            self.recorded[key] = now
            if not added.count:
                continue
            attributes = dict(zip(self.entry.labels, key, strict=True))
            record = self.instrument.record
            for value, n in stand_ins(added):
                for _ in range(n):
                    record(value, attributes)


class OpenTelemetrySink:
    """The ``otel`` sink: observable gauges and counters read from the monitor on collection.

    There is one instrument for each metric of :mod:`concmon.exporters.catalogue` that has an
    OpenTelemetry name, created with the catalogue's unit and help; the distributions are
    explicit-bucket histograms on the monitor's bucket bounds (see the module's docstring).
    """

    name = "otel"

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        self._provider = meter_provider
        self._monitor: ConcurrencyMonitor | None = None
        self._lock = threading.Lock()
        self._figures: Figures | None = None
        self._replays: list[_Replay] = []
        self._labels_off: frozenset[str] = frozenset()
        self.meter: Meter | None = None

    def _refresh(self) -> Figures | None:
        """Read the monitor; called by the first instrument's callback of each collection.

        The SDK calls the callbacks one after the other in the order the instruments were
        created, so the later ones reuse this reading and a collection describes one instant.
        """
        monitor = self._monitor
        if monitor is None:
            return None
        figures = live_figures(monitor)
        with self._lock:
            self._figures = figures
            for replay in self._replays:
                replay.record(figures)
        return figures

    def _read(self) -> Figures | None:
        if self._monitor is None:
            return None
        with self._lock:
            figures = self._figures
        return figures if figures is not None else self._refresh()

    def _callback(self, metric: Metric, *, first: bool) -> Callback:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            figures = self._refresh() if first else self._read()
            if figures is None:
                return []
            labels, values = metric.series(figures, self._labels_off)
            return [Observation(v, dict(zip(labels, k, strict=True))) for k, v in values.items()]

        return callback

    @hookimpl
    def concmon_configure(self, monitor: ConcurrencyMonitor) -> None:
        provider = self._provider or metrics.get_meter_provider()
        meter = self.meter = provider.get_meter(SCOPE_NAME, __version__)
        try:
            self._labels_off = load_exporter_settings().labels_off
        except ConfigError as exc:
            logger.error("%s; the otel sink publishes every label", exc)
        for entry in HISTOGRAMS:
            if entry.otel is not None:
                histogram = meter.create_histogram(
                    entry.otel,
                    entry.unit,
                    entry.help,
                    explicit_bucket_boundaries_advisory=list(monitor.buckets),
                )
                self._replays.append(_Replay(entry, histogram))
        self._monitor = monitor
        instruments = [m for m in METRICS if m.otel is not None]
        for index, metric in enumerate(instruments):
            assert metric.otel is not None
            create = (
                meter.create_observable_gauge
                if metric.kind == "gauge"
                else meter.create_observable_counter
            )
            create(
                metric.otel, [self._callback(metric, first=index == 0)], metric.unit, metric.help
            )

    @hookimpl
    def concmon_shutdown(self, snapshot: Snapshot) -> None:
        # Instruments cannot be removed from a meter; they simply stop reporting.
        self._monitor = None
        self._figures = None
