"""What the core costs: one request's begin/finish pair, and one snapshot of N endpoints.

Per request, three ways to count a request in and out of one endpoint:

* bare: a ``threading.Lock`` and a dict, incremented then decremented, the least a thread-safe
  in-flight counter costs in Python;
* concmon: ``monitor.http.begin(name)`` then ``ticket.finish()``;
* prometheus_client: ``Gauge.labels(name).inc()`` then ``.dec()``, what most exporters do.

Per snapshot, with N endpoints: a copy of N dicts of eight integers under one lock (bare),
``monitor.snapshot()``, and prometheus_client collecting a labelled Gauge and Counter of the same
N endpoints. Each round times every variant once; figures are medians over the rounds of this
thread's CPU time, ratios medians of the per-round ratios.

    .venv/bin/python bench/core.py [--pairs 100000] [--endpoints 20] [--rounds 9]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import positive_int, ratio_columns  # noqa: E402
from concmon import ConcurrencyMonitor  # noqa: E402

ENDPOINT = "/chat/completions"


def bare_pairs(pairs: int) -> int:
    lock = threading.Lock()
    counts = {ENDPOINT: 0}
    start = time.thread_time_ns()
    for _ in range(pairs):
        with lock:
            counts[ENDPOINT] += 1
        with lock:
            counts[ENDPOINT] -= 1
    return time.thread_time_ns() - start


def concmon_pairs(pairs: int) -> int:
    monitor = ConcurrencyMonitor()
    begin = monitor.http.begin
    start = time.thread_time_ns()
    for _ in range(pairs):
        begin(ENDPOINT).finish()
    elapsed = time.thread_time_ns() - start
    completed = monitor.snapshot().completed
    if completed != pairs:
        raise RuntimeError(f"concmon counted {completed} of {pairs} finished requests")
    return elapsed


def prometheus_pairs(pairs: int) -> int:
    from prometheus_client import CollectorRegistry, Gauge

    gauge = Gauge("inflight", "in flight", ["endpoint"], registry=CollectorRegistry())
    start = time.thread_time_ns()
    for _ in range(pairs):
        child = gauge.labels(ENDPOINT)
        child.inc()
        child.dec()
    return time.thread_time_ns() - start


def _names(endpoints: int) -> list[str]:
    return [f"/api/v1/resource{i}/{{id}}" for i in range(endpoints)]


def bare_snapshot(endpoints: int, calls: int) -> int:
    lock = threading.Lock()
    fields = ("active", "peak", "interval_peak", "completed", "failed", "cancelled", "ms", "max")
    table = {name: dict.fromkeys(fields, 1) for name in _names(endpoints)}
    start = time.thread_time_ns()
    for _ in range(calls):
        with lock:
            copy = {name: dict(figures) for name, figures in table.items()}
    elapsed = time.thread_time_ns() - start
    assert len(copy) == endpoints
    return elapsed


def concmon_snapshot(endpoints: int, calls: int) -> int:
    monitor = ConcurrencyMonitor()
    for name in _names(endpoints):
        monitor.http.begin(name).finish()
        monitor.http.begin(name)  # one request in flight on each endpoint
    start = time.thread_time_ns()
    for _ in range(calls):
        snap = monitor.snapshot()
    elapsed = time.thread_time_ns() - start
    if len(snap.endpoints) != endpoints:
        raise RuntimeError(f"the snapshot holds {len(snap.endpoints)} of {endpoints} endpoints")
    return elapsed


def prometheus_snapshot(endpoints: int, calls: int) -> int:
    from prometheus_client import CollectorRegistry, Counter, Gauge

    registry = CollectorRegistry()
    active = Gauge("requests_active", "in flight", ["endpoint"], registry=registry)
    total = Counter("requests", "finished", ["endpoint", "outcome"], registry=registry)
    for name in _names(endpoints):
        active.labels(name).set(1)
        for outcome in ("ok", "failed", "cancelled"):
            total.labels(name, outcome).inc()
    start = time.thread_time_ns()
    for _ in range(calls):
        metrics = list(registry.collect())
    elapsed = time.thread_time_ns() - start
    assert len(metrics) == 2
    return elapsed


def rounds_of(variants: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Every variant once per round (after one warm-up call each), in an order that turns."""
    names = list(variants)
    for fn in variants.values():
        fn()
    results: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        turn = index % len(names)
        for name in [*names[turn:], *names[:turn]]:
            results[name].append(variants[name]())
    return results


def report(title: str, unit: str, results: dict[str, list[float]]) -> None:
    print(title)
    for name, values in results.items():
        line = (
            f"  {name:20} {statistics.median(values):10.1f} {unit}  {ratio_columns(name, results)}"
        )
        print(line.rstrip())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/core.py", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--pairs", type=positive_int, default=100_000, help="pairs per round")
    parser.add_argument(
        "--endpoints", type=positive_int, default=20, help="endpoints in a snapshot"
    )
    parser.add_argument("--snapshots", type=positive_int, default=500, help="snapshots per round")
    parser.add_argument("--rounds", type=positive_int, default=9)
    args = parser.parse_args(argv)
    peer = importlib.util.find_spec("prometheus_client") is not None
    if not peer:
        print("prometheus_client is not installed, left out; install it with: "
              ".venv/bin/pip install -e '.[bench]'")  # fmt: skip

    pairs, endpoints, calls = args.pairs, args.endpoints, args.snapshots
    per_pair: dict[str, Callable[[], float]] = {
        "bare": lambda: bare_pairs(pairs) / pairs,
        "concmon": lambda: concmon_pairs(pairs) / pairs,
    }
    if peer:
        per_pair["prometheus_client"] = lambda: prometheus_pairs(pairs) / pairs
    report(
        f"one request counted in and out (ns per pair; {args.rounds} rounds of {pairs:,} pairs)",
        "ns/pair",
        rounds_of(per_pair, args.rounds),
    )
    per_snapshot: dict[str, Callable[[], float]] = {
        "bare": lambda: bare_snapshot(endpoints, calls) / calls / 1000,
        "concmon": lambda: concmon_snapshot(endpoints, calls) / calls / 1000,
    }
    if peer:
        per_snapshot["prometheus_client"] = lambda: (
            prometheus_snapshot(endpoints, calls) / calls / 1000
        )
    report(
        f"one snapshot of {endpoints} endpoints (us per snapshot; {args.rounds} rounds of {calls})",
        "us/snapshot",
        rounds_of(per_snapshot, args.rounds),
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as exc:  # a variant that failed its check: say which, no traceback
        sys.exit(f"core.py: {exc}")
