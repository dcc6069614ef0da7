"""A real OpenTelemetry SDK MeterProvider, exporting periodically to an exporter that counts.

The exporter keeps nothing but how many requests the duration histograms recorded, so the
benchmark can check that the instrumentation really measured the requests it was sent, while
the SDK does all its real work (aggregation per attribute set, periodic collection).
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)

EXPORT_INTERVAL_MS = int(os.environ.get("BENCH_EXPORT_INTERVAL_MS", "5000"))
"""Like concmon's default report interval, so both do their periodic work equally often
(``bench/instructions.py --http`` moves both out of its runs)."""


class CountingExporter(MetricExporter):
    """Counts the requests in the last exported server-duration histograms."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        seen = 0
        for resource in metrics_data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name.startswith("http.server") and "duration" in metric.name:
                        seen += sum(
                            p.count
                            for p in metric.data.data_points
                            if isinstance(p, HistogramDataPoint)
                        )
        self.requests = seen
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


def meter_provider() -> tuple[MeterProvider, CountingExporter]:
    exporter = CountingExporter()
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=EXPORT_INTERVAL_MS)
    return MeterProvider(metric_readers=[reader]), exporter


def recorded(provider: MeterProvider, exporter: CountingExporter) -> int:
    """Requests the instrumentation recorded so far (collects and exports once)."""
    provider.force_flush()
    return exporter.requests
