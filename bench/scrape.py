"""What a Prometheus scrape costs: concmon's ``/metrics`` body beside prometheus_client's own.

concmon renders its exposition from the live monitor at scrape time
(``concmon.exporters.prometheus.exposition``, the function both adapters serve on
``/metrics``); the reference keeps the same series in prometheus_client's labelled ``Gauge`` and
``Counter`` objects and renders them with ``generate_latest``. Both with N endpoints, each with
requests finished and one in flight. Each round renders each one a number of times; figures
are medians over the rounds of this thread's CPU time, ratios medians of per-round ratios. The
request path is not in it: a scrape only reads the monitor.

    .venv/bin/python bench/scrape.py [--endpoints 20] [--rounds 9] [--scrapes 100]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import BENCH_EXTRA_HINT, positive_int, ratio_columns  # noqa: E402

OUTCOMES = ("ok", "failed", "cancelled")


def _names(endpoints: int) -> list[str]:
    return [f"/api/v1/resource{i}/{{id}}" for i in range(endpoints)]


def concmon_scrape(endpoints: int) -> Callable[[], bytes]:
    """The process's monitor with ``endpoints`` endpoints, and its ``/metrics`` body."""
    from concmon import Outcome, get_monitor
    from concmon.exporters.prometheus import exposition

    monitor = get_monitor()
    for name in _names(endpoints):
        for outcome in (Outcome.OK, Outcome.FAILED, Outcome.CANCELLED):
            monitor.http.begin(name).finish(outcome)
        monitor.http.begin(name)  # one request in flight on each endpoint

    def scrape() -> bytes:
        body, _ = exposition(None)
        return body

    return scrape


def prometheus_scrape(endpoints: int) -> Callable[[], bytes]:
    """The same series kept in prometheus_client's own metrics, and their rendering."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

    registry = CollectorRegistry()
    active = Gauge("requests_active", "in flight", ["endpoint"], registry=registry)
    peak = Gauge("requests_peak", "peak", ["endpoint"], registry=registry)
    total = Counter("requests", "finished", ["endpoint", "outcome"], registry=registry)
    for name in _names(endpoints):
        active.labels(name).set(1)
        peak.labels(name).set(1)
        for outcome in OUTCOMES:
            total.labels(name, outcome).inc()
    return lambda: generate_latest(registry)


def _timed(scrape: Callable[[], bytes], scrapes: int) -> float:
    start = time.thread_time_ns()
    for _ in range(scrapes):
        scrape()
    return (time.thread_time_ns() - start) / scrapes / 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/scrape.py", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--endpoints", type=positive_int, default=20)
    parser.add_argument("--rounds", type=positive_int, default=9)
    parser.add_argument("--scrapes", type=positive_int, default=100, help="scrapes per round")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("prometheus_client") is None:
        print(f"scrape.py: prometheus_client is not installed; {BENCH_EXTRA_HINT}", file=sys.stderr)
        return 2
    variants = {
        "prometheus_client": prometheus_scrape(args.endpoints),
        "concmon": concmon_scrape(args.endpoints),
    }
    for name, scrape in variants.items():
        if b'endpoint="/api/v1/resource0/{id}"' not in scrape():
            raise RuntimeError(f"the {name} scrape does not hold the endpoints' series")
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for index in range(args.rounds):
        for name in names if index % 2 == 0 else names[::-1]:
            times[name].append(_timed(variants[name], args.scrapes))
    print(
        f"one /metrics body with {args.endpoints} endpoints (ms per scrape; "
        f"{args.rounds} rounds of {args.scrapes})"
    )
    for name, values in times.items():
        ratios = ratio_columns(name, times, baseline="prometheus_client")
        print(f"  {name:20} {statistics.median(values):8.3f} ms/scrape  {ratios}".rstrip())
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as exc:  # a variant that failed its check: say which, no traceback
        sys.exit(f"scrape.py: {exc}")
