"""What a scrape costs: concmon's exposition beside prometheus_client's own metrics.

Prints the time of one ``/metrics`` rendering for concmon (single-process, and multi-process
with several worker files) and for the same series kept in prometheus_client's labelled Gauge
and Counter objects, plus the cost of one OpenTelemetry collection and one DogStatsD report.
The request path is not measured here: no exporter adds anything to it.

    .venv/bin/python bench/exporters.py [--endpoints 20] [--workers 8] [--rounds 300]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

import concmon
from concmon.exporters import prometheus
from concmon.exporters.figures import live_figures
from concmon.exporters.multiprocess import MultiProcessStore
from concmon.exporters.prometheus import FiguresCollector

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import positive_int  # noqa: E402


def interleaved(variants: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds per call of each variant, timed in turn within every round."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():
        fn()
    for _ in range(rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=positive_int, default=20)
    parser.add_argument("--workers", type=positive_int, default=8)
    parser.add_argument("--rounds", type=positive_int, default=300)
    args = parser.parse_args()

    monitor = concmon.get_monitor()
    names = [f"/api/v1/resource{i}/{{id}}" for i in range(args.endpoints)]
    for name in names:
        for _ in range(10):
            monitor.http.begin(name).finish()
        monitor.http.begin(name)

    reference = CollectorRegistry()
    active = Gauge("ref_requests_active", "in flight", ["endpoint"], registry=reference)
    peak = Gauge("ref_requests_peak", "peak", ["endpoint"], registry=reference)
    total = Counter("ref_requests", "finished", ["endpoint", "outcome"], registry=reference)
    for name in names:
        active.labels(name).set(1)
        peak.labels(name).set(1)
        for outcome in ("ok", "failed", "cancelled"):
            total.labels(name, outcome).inc(10)

    with tempfile.TemporaryDirectory() as directory:
        stores = [MultiProcessStore(Path(directory)) for _ in range(args.workers)]
        for store in stores[1:]:
            store.write(live_figures(monitor, process=False))
        host = CollectorRegistry(auto_describe=False)
        host.register(FiguresCollector(lambda: stores[0].collect(lambda: live_figures(monitor))))
        times = interleaved(
            {
                "baseline": lambda: generate_latest(reference),
                "single": lambda: prometheus.exposition(None),
                "multi": lambda: generate_latest(host),
            },
            args.rounds,
        )
        for store in stores:
            store.close()
    baseline, single, multi = times["baseline"], times["single"], times["multi"]

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from concmon.exporters.config import load_exporter_settings
    from concmon.exporters.dogstatsd import DogStatsDSink
    from concmon.exporters.otel import OpenTelemetrySink

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    otel = OpenTelemetrySink(provider)
    otel.concmon_configure(monitor)

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as agent:
        agent.bind(("127.0.0.1", 0))
        statsd = DogStatsDSink(load_exporter_settings(statsd_port=agent.getsockname()[1]))
        statsd.concmon_configure()
        snap = monitor.snapshot()
        pushed = interleaved(
            {"otel": reader.get_metrics_data, "statsd": lambda: statsd.send(snap)}, args.rounds
        )
        statsd.concmon_shutdown(snap)
    provider.shutdown()
    otel_time, statsd_time = pushed["otel"], pushed["statsd"]

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
