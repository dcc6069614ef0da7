"""OpenTelemetry exporter: concmon's figures through the OpenTelemetry metrics API.

Every figure is an observable instrument whose callback reads the monitor when the SDK
collects, so whichever reader or exporter the application configured (OTLP, Prometheus, the
console) receives live values, not a copy of the last report. Gauges report what is happening
now; observable counters report cumulative totals, which the SDK turns into deltas if the
backend wants them.

The sink uses the global meter provider unless one is given, so set up the SDK
(``metrics.set_meter_provider``) before ``init_monitor`` loads the ``otel`` sink. In a
multi-process server each worker reports itself; backends tell them apart by the resource
attributes (``process.pid``) the SDK adds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation

from concmon import __version__
from concmon.exporters.figures import OUTCOMES, Counters, Figures, Finished, Gauges, live_figures
from concmon.hookspecs import hookimpl
from concmon.monitor import ConcurrencyMonitor
from concmon.snapshot import Snapshot

SCOPE_NAME = "concmon"

Callback = Callable[[CallbackOptions], Iterable[Observation]]


def _by(label: str, values: dict[str, int]) -> Iterator[Observation]:
    for key, value in values.items():
        yield Observation(value, {label: key})


def _finished_by(label: str, values: Finished) -> Iterator[Observation]:
    for key, outcomes in values.items():
        for outcome in OUTCOMES:
            yield Observation(outcomes.get(outcome, 0), {label: key, "outcome": outcome})


def _one(value: float | None) -> Iterator[Observation]:
    if value is not None:
        yield Observation(value)


class OpenTelemetrySink:
    """The ``otel`` sink: observable gauges and counters read from the monitor on collection."""

    name = "otel"

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        self._provider = meter_provider
        self._monitor: ConcurrencyMonitor | None = None
        self._lock = threading.Lock()
        self._figures: Figures | None = None
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
        return figures

    def _read(self) -> Figures | None:
        if self._monitor is None:
            return None
        with self._lock:
            figures = self._figures
        return figures if figures is not None else self._refresh()

    def _gauges(
        self, pick: Callable[[Gauges], Iterable[Observation]], *, first: bool = False
    ) -> Callback:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            figures = self._refresh() if first else self._read()
            return list(pick(figures.gauges)) if figures is not None else []

        return callback

    def _counters(self, pick: Callable[[Counters], Iterable[Observation]]) -> Callback:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            figures = self._read()
            return list(pick(figures.counters)) if figures is not None else []

        return callback

    @hookimpl
    def concmon_configure(self, monitor: ConcurrencyMonitor) -> None:
        provider = self._provider or metrics.get_meter_provider()
        meter = self.meter = provider.get_meter(SCOPE_NAME, __version__)
        self._monitor = monitor
        gauge, counter = meter.create_observable_gauge, meter.create_observable_counter
        g, c = self._gauges, self._counters
        gauge(
            "concmon.requests.active",
            [g(lambda x: _by("endpoint", x.active), first=True)],
            "{request}",
            "HTTP requests in flight now.",
        )
        gauge(
            "concmon.requests.peak",
            [g(lambda x: _by("endpoint", x.peak))],
            "{request}",
            "Highest number of HTTP requests in flight at once since the previous report.",
        )
        counter(
            "concmon.requests",
            [c(lambda x: _finished_by("endpoint", x.requests))],
            "{request}",
            "HTTP requests finished, by outcome (ok, failed, cancelled).",
        )
        counter(
            "concmon.requests.rejected",
            [c(lambda x: _by("endpoint", x.rejected))],
            "{request}",
            "HTTP requests turned away by an admission limit.",
        )
        gauge(
            "concmon.requests.limit",
            [g(lambda x: _one(x.limit))],
            "{request}",
            "Configured maximum of concurrent HTTP requests.",
        )
        gauge(
            "concmon.websocket_connections.active",
            [g(lambda x: _by("endpoint", x.websockets_active))],
            "{connection}",
            "WebSocket connections open now.",
        )
        counter(
            "concmon.websocket_connections",
            [c(lambda x: _finished_by("endpoint", x.websockets))],
            "{connection}",
            "WebSocket connections closed, by outcome.",
        )
        gauge(
            "concmon.background_tasks.active",
            [g(lambda x: _by("task", x.background_active))],
            "{task}",
            "Background tasks running now.",
        )
        counter(
            "concmon.background_tasks",
            [c(lambda x: _finished_by("task", x.background))],
            "{task}",
            "Background tasks finished, by outcome.",
        )
        gauge(
            "concmon.queue.depth",
            [g(lambda x: _by("queue", x.queue_depth))],
            "{request}",
            "Requests waiting in each queue now.",
        )
        counter(
            "concmon.queue.waits",
            [c(lambda x: (Observation(n, {"queue": q}) for q, (n, _) in x.queue_waits.items()))],
            "{request}",
            "Requests that finished waiting in each queue.",
        )
        counter(
            "concmon.queue.wait_time",
            [c(lambda x: (Observation(s, {"queue": q}) for q, (_, s) in x.queue_waits.items()))],
            "s",
            "Total time requests spent waiting in each queue.",
        )
        counter(
            "concmon.process.cpu.time",
            [c(lambda x: _one(x.cpu_seconds))],
            "s",
            "User and system CPU time of the process.",
        )
        gauge(
            "concmon.process.memory.usage",
            [g(lambda x: _one(x.memory_bytes))],
            "By",
            "Resident memory of the process.",
        )
        gauge(
            "concmon.process.threads",
            [g(lambda x: _one(x.threads))],
            "{thread}",
            "Threads of the process.",
        )
        gauge(
            "concmon.process.open_fds",
            [g(lambda x: _one(x.open_fds))],
            "{file_descriptor}",
            "Open file descriptors of the process.",
        )
        gauge(
            "concmon.event_loop.lag",
            [g(lambda x: _one(x.loop_lag_seconds))],
            "s",
            "Worst event-loop lag since the previous report.",
        )
        counter(
            "concmon.sink.errors",
            [c(lambda x: _by("sink", x.sink_errors))],
            "{error}",
            "Failures of each concmon sink.",
        )

    @hookimpl
    def concmon_shutdown(self, snapshot: Snapshot) -> None:
        # Instruments cannot be removed from a meter; they simply stop reporting.
        self._monitor = None
        self._figures = None
