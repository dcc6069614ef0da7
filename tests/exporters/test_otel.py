"""The OpenTelemetry sink, read through the SDK's in-memory reader."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

import concmon
from concmon import Outcome
from concmon.exporters.catalogue import stand_ins
from concmon.exporters.otel import OpenTelemetrySink
from concmon.monitor import DEFAULT_BUCKETS, ConcurrencyMonitor
from concmon.snapshot import Distribution
from concmon.testing import FakeClock

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


Histograms = dict[tuple[str, frozenset[tuple[str, Any]]], HistogramDataPoint]


def _collect(reader: InMemoryMetricReader) -> tuple[Points, Histograms]:
    """One collection: the gauges' and counters' values, and the histograms' points."""
    data = reader.get_metrics_data()
    out: Points = {}
    histograms: Histograms = {}
    if data is None:
        return out, histograms
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "concmon"
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    key = (metric.name, frozenset((point.attributes or {}).items()))
                    if isinstance(point, HistogramDataPoint):
                        histograms[key] = point
                    else:
                        out[key] = point.value  # type: ignore[union-attr]
    return out, histograms


def _points(reader: InMemoryMetricReader) -> Points:
    return _collect(reader)[0]


def _sum(points: Points, name: str, **attributes: str) -> float:
    """``name``'s points whose attributes include ``attributes``, added up."""
    want = set(attributes.items())
    return sum(v for (n, attrs), v in points.items() if n == name and want <= attrs)


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
    assert _sum(points, "concmon.requests", endpoint="/fast", outcome="ok") == 1
    assert _sum(points, "concmon.requests", endpoint="/fast", outcome="failed") == 1
    assert points[("concmon.requests.rejected", frozenset({("endpoint", "/fast")}))] == 1
    for ticket in held:
        ticket.finish(Outcome.CANCELLED)
    points = _points(reader)
    assert points[("concmon.requests.active", frozenset({("endpoint", "/slow")}))] == 0
    assert _sum(points, "concmon.requests", endpoint="/slow", outcome="cancelled") == 3


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
    seen = []
    for _ in range(3):
        monitor.http.begin("/r").finish()
        runtime.reporter.report_now()
        seen.append(_sum(_points(reader), "concmon.requests", endpoint="/r", outcome="ok"))
    assert seen == [1, 2, 3]


def test_after_shutdown_the_instruments_report_nothing(reader: InMemoryMetricReader) -> None:
    """Shutting the monitor down stops the callbacks instead of reporting stale figures; the
    histograms keep their final counts (an SDK histogram cannot be withdrawn, nor go down)."""
    concmon.get_monitor().http.begin("/x").finish()
    assert _points(reader)
    concmon.shutdown_monitor()
    points, histograms = _collect(reader)
    assert not points
    assert histograms[("concmon.request.duration", frozenset({("endpoint", "/x")}))].count == 1


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


def _timed(monitor: ConcurrencyMonitor, clock: FakeClock, name: str, seconds: float) -> None:
    ticket = monitor.http.begin(name, "GET")
    clock.advance(seconds)
    ticket.finish()


def test_histograms_carry_the_monitors_buckets_exactly_across_collections() -> None:
    """The OTel duration histogram has the monitor's bounds and, at every collection, exactly
    its bucket counts, count and sum (values on a bound, above the top one, two collections)."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    clock = FakeClock()
    monitor = ConcurrencyMonitor(clock=clock, buckets=(0.1, 1.0, 10.0))
    sink = OpenTelemetrySink(meter_provider=provider)
    sink.concmon_configure(monitor)
    key = ("concmon.request.duration", frozenset({("endpoint", "/x")}))
    try:
        for batch in ([0.05, 0.1, 0.5, 0.5, 3.0, 20.0], [0.1, 1.0, 1.0000001, 250.0, 0.0]):
            for seconds in batch:
                _timed(monitor, clock, "/x", seconds)
            point = _collect(reader)[1][key]
            want = monitor.snapshot().endpoints["/x"].duration_all
            assert want is not None
            assert list(point.explicit_bounds) == [0.1, 1.0, 10.0]
            assert list(point.bucket_counts) == list(want.counts)
            assert point.count == want.count
            assert point.sum == pytest.approx(want.sum_s, rel=1e-9)
        assert point.count == 11 and point.bucket_counts[-1] == 2
    finally:
        sink.concmon_shutdown(monitor.snapshot())
        provider.shutdown()


@given(
    st.lists(st.floats(0.0, 400.0, allow_nan=False), min_size=1, max_size=60),
    st.sampled_from([(0.1, 1.0, 10.0), DEFAULT_BUCKETS, (5.0,)]),
)
def test_stand_ins_land_in_the_true_buckets_and_add_up_to_the_true_sum(
    values: list[float], bounds: tuple[float, ...]
) -> None:
    """Whatever the values, the stand-ins fill each bucket with its true count and sum to the
    true total (to float rounding)."""
    counts = [0] * (len(bounds) + 1)
    for v in values:
        counts[bisect.bisect_left(bounds, v)] += 1
    true = Distribution(bounds, tuple(counts), sum(values), max(values))
    got = [0] * len(counts)
    total = 0.0
    for value, n in stand_ins(true):
        got[bisect.bisect_left(bounds, value)] += n
        total += value * n
    assert got == counts
    assert total == pytest.approx(true.sum_s, rel=1e-9, abs=1e-9)
