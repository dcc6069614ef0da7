"""The OpenTelemetry sink, read through the SDK's in-memory reader."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import concmon
from concmon import Outcome
from concmon.exporters.otel import OpenTelemetrySink

Points = dict[tuple[str, frozenset[tuple[str, Any]]], float]


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    concmon.init_monitor(update_interval=3600, sinks=(), start_reporter=False)
    runtime = concmon.get_runtime()
    assert runtime is not None
    assert runtime.plugins.register(OpenTelemetrySink(meter_provider=provider), "otel")
    yield reader
    concmon.shutdown_monitor()
    provider.shutdown()


def _points(reader: InMemoryMetricReader) -> Points:
    data = reader.get_metrics_data()
    out: Points = {}
    if data is None:
        return out
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "concmon"
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    key = (metric.name, frozenset((point.attributes or {}).items()))
                    out[key] = point.value  # type: ignore[union-attr]
    return out


def test_gauges_and_counters_report_live_values_at_collection(
    reader: InMemoryMetricReader,
) -> None:
    """Each collection reads the monitor: active, peak and outcome totals per endpoint."""
    monitor = concmon.get_monitor()
    held = [monitor.http.begin("/slow") for _ in range(3)]
    monitor.http.begin("/fast").finish()
    monitor.http.begin("/fast").finish(Outcome.FAILED)
    monitor.reject("/fast")
    points = _points(reader)
    assert points[("concmon.requests.active", frozenset({("endpoint", "/slow")}))] == 3
    assert points[("concmon.requests.peak", frozenset({("endpoint", "/slow")}))] == 3
    fast_ok = ("concmon.requests", frozenset({("endpoint", "/fast"), ("outcome", "ok")}))
    fast_failed = ("concmon.requests", frozenset({("endpoint", "/fast"), ("outcome", "failed")}))
    assert points[fast_ok] == 1 and points[fast_failed] == 1
    assert points[("concmon.requests.rejected", frozenset({("endpoint", "/fast")}))] == 1
    for ticket in held:
        ticket.finish(Outcome.CANCELLED)
    points = _points(reader)
    assert points[("concmon.requests.active", frozenset({("endpoint", "/slow")}))] == 0
    slow_cancelled = (
        "concmon.requests",
        frozenset({("endpoint", "/slow"), ("outcome", "cancelled")}),
    )
    assert points[slow_cancelled] == 3


def test_queues_process_and_loop_lag_are_reported(reader: InMemoryMetricReader) -> None:
    """Queue depth and waits, process CPU/memory/threads and loop lag reach the backend."""
    monitor = concmon.get_monitor()
    with monitor.queued("/q", source="gate"):
        points = _points(reader)
        assert points[("concmon.queue.depth", frozenset({("queue", "gate")}))] == 1
    monitor.record_loop_lag(0.03)
    monitor.max_concurrency = 4
    monitor.websocket.begin("/ws")
    monitor.background.begin("job").finish()
    points = _points(reader)
    assert points[("concmon.queue.depth", frozenset({("queue", "gate")}))] == 0
    assert points[("concmon.queue.waits", frozenset({("queue", "gate")}))] == 1
    assert points[("concmon.queue.wait_time", frozenset({("queue", "gate")}))] >= 0
    assert points[("concmon.event_loop.lag", frozenset())] == pytest.approx(0.03)
    assert points[("concmon.requests.limit", frozenset())] == 4
    assert points[("concmon.process.memory.usage", frozenset())] > 0
    assert points[("concmon.process.threads", frozenset())] >= 1
    assert points[("concmon.process.cpu.time", frozenset())] > 0
    assert points[("concmon.websocket_connections.active", frozenset({("endpoint", "/ws")}))] == 1
    job_ok = ("concmon.background_tasks", frozenset({("task", "job"), ("outcome", "ok")}))
    assert points[job_ok] == 1
    assert ("concmon.requests.active", frozenset({("endpoint", "/ws")})) not in points


def test_counters_stay_cumulative_and_monotonic_across_reports(
    reader: InMemoryMetricReader,
) -> None:
    """A report closing an interval never makes an OpenTelemetry counter go down."""
    monitor = concmon.get_monitor()
    runtime = concmon.get_runtime()
    assert runtime is not None
    key = ("concmon.requests", frozenset({("endpoint", "/r"), ("outcome", "ok")}))
    seen = []
    for _ in range(3):
        monitor.http.begin("/r").finish()
        runtime.reporter.report_now()
        seen.append(_points(reader)[key])
    assert seen == [1, 2, 3]


def test_after_shutdown_the_instruments_report_nothing(reader: InMemoryMetricReader) -> None:
    """Shutting the monitor down stops the callbacks instead of reporting stale figures."""
    concmon.get_monitor().http.begin("/x").finish()
    assert _points(reader)
    concmon.shutdown_monitor()
    assert not _points(reader)


def test_otel_sink_loads_by_entry_point_on_the_global_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CONCMON_SINKS=otel loads the sink like a third-party plugin and it configures cleanly."""
    monkeypatch.setenv("CONCMON_PLUGIN_AUTOLOAD", "true")
    monkeypatch.setenv("CONCMON_SINKS", "otel")
    concmon.init_monitor(update_interval=3600, start_reporter=False)
    runtime = concmon.get_runtime()
    assert runtime is not None and runtime.plugins.names() == ["otel"]
    sink = runtime.plugins.get("otel")
    assert isinstance(sink, OpenTelemetrySink) and sink.meter is not None
    assert runtime.monitor.sink_errors == {}
