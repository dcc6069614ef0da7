"""What a scrape costs: concmon's exposition beside prometheus_client's own metrics.

Prints the time of one ``/metrics`` rendering for concmon (single-process, and multi-process
with several worker files) and for the same series kept in prometheus_client's labelled Gauge
and Counter objects, plus the cost of one OpenTelemetry collection and one DogStatsD report.
The request path is not measured here: no exporter adds anything to it.

    .venv/bin/python bench/exporters.py [--endpoints 20] [--workers 8] [--rounds 300]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

import concmon
from concmon.exporters import prometheus
from concmon.exporters.figures import live_figures
from concmon.exporters.multiprocess import MultiProcessStore


def timed(fn: Callable[[], object], rounds: int) -> float:
    """Median seconds of one call."""
    fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=20)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()

    monitor = concmon.get_monitor()
    names = [f"/api/v1/resource{i}/{{id}}" for i in range(args.endpoints)]
    for name in names:
        for _ in range(10):
            monitor.http.begin(name).finish()
        monitor.http.begin(name)

    single = timed(lambda: prometheus.exposition(None), args.rounds)

    reference = CollectorRegistry()
    active = Gauge("ref_requests_active", "in flight", ["endpoint"], registry=reference)
    peak = Gauge("ref_requests_peak", "peak", ["endpoint"], registry=reference)
    total = Counter("ref_requests", "finished", ["endpoint", "outcome"], registry=reference)
    for name in names:
        active.labels(name).set(1)
        peak.labels(name).set(1)
        for outcome in ("ok", "failed", "cancelled"):
            total.labels(name, outcome).inc(10)
    baseline = timed(lambda: generate_latest(reference), args.rounds)

    with tempfile.TemporaryDirectory() as directory:
        others = []
        for _ in range(args.workers - 1):
            store = MultiProcessStore(Path(directory))
            store.write(live_figures(monitor, process=False))
            others.append(store)
        os.environ["CONCMON_PROMETHEUS_MULTIPROC_DIR"] = directory
        prometheus._close_backend()
        assert prometheus.activate() == "multi-process"
        multi = timed(lambda: prometheus.exposition(None), args.rounds)
        prometheus._close_backend()
        del os.environ["CONCMON_PROMETHEUS_MULTIPROC_DIR"]
        for store in others:
            store.close()

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from concmon.exporters.config import ExporterSettings
    from concmon.exporters.dogstatsd import DogStatsDSink
    from concmon.exporters.otel import OpenTelemetrySink

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    otel = OpenTelemetrySink(provider)
    otel.concmon_configure(monitor)
    otel_time = timed(reader.get_metrics_data, args.rounds)
    provider.shutdown()

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as agent:
        agent.bind(("127.0.0.1", 0))
        statsd = DogStatsDSink(ExporterSettings(statsd_port=agent.getsockname()[1]))
        statsd.concmon_configure()
        snap = monitor.snapshot()
        statsd_time = timed(lambda: statsd.send(snap), args.rounds)
        statsd.concmon_shutdown(snap)

    print(f"endpoints: {args.endpoints}, rounds: {args.rounds}, median per call")
    print(f"prometheus_client labelled metrics, generate_latest: {baseline * 1e3:8.3f} ms  (1.00x)")
    print(
        f"concmon exposition, single process:                {single * 1e3:8.3f} ms  "
        f"({single / baseline:.2f}x)"
    )
    print(
        f"concmon exposition, {args.workers} workers (multi-process):    {multi * 1e3:8.3f} ms  "
        f"({multi / baseline:.2f}x)"
    )
    print(f"OpenTelemetry collection (in-memory reader):       {otel_time * 1e3:8.3f} ms")
    print(f"DogStatsD report (UDP to 127.0.0.1):                {statsd_time * 1e3:8.3f} ms")


if __name__ == "__main__":
    main()
