"""Nanoseconds per increment+decrement pair: concmon's monitor beside a bare lock+dict pair and
prometheus_client's labelled Gauge, measured in one run, interleaved, with median ratios.

Run: .venv/bin/python bench/core.py [--pairs 200000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from concmon import ConcurrencyMonitor
from concmon.monitor import KERNEL

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import positive_int  # noqa: E402


def bare_lock_dict(pairs: int) -> float:
    lock = threading.Lock()
    counts: dict[str, int] = {"/chat/completions": 0}
    key = "/chat/completions"
    start = time.perf_counter_ns()
    for _ in range(pairs):
        with lock:
            counts[key] += 1
        with lock:
            counts[key] -= 1
    return (time.perf_counter_ns() - start) / pairs


def concmon_ticket(pairs: int) -> float:
    begin = ConcurrencyMonitor().http.begin
    key = "/chat/completions"
    start = time.perf_counter_ns()
    for _ in range(pairs):
        begin(key).finish()
    return (time.perf_counter_ns() - start) / pairs


def concmon_seed_api(pairs: int) -> float:
    monitor = ConcurrencyMonitor()
    inc, dec = monitor.increment_task, monitor.decrement_task
    key = "/chat/completions"
    start = time.perf_counter_ns()
    for _ in range(pairs):
        inc(key)
        dec(key)
    return (time.perf_counter_ns() - start) / pairs


def prometheus_gauge(pairs: int) -> float:
    from prometheus_client import CollectorRegistry, Gauge

    gauge = Gauge("inflight", "in flight", ["endpoint"], registry=CollectorRegistry())
    key = "/chat/completions"
    start = time.perf_counter_ns()
    for _ in range(pairs):
        child = gauge.labels(key)
        child.inc()
        child.dec()
    return (time.perf_counter_ns() - start) / pairs


VARIANTS: dict[str, Callable[[int], float]] = {
    "bare lock+dict": bare_lock_dict,
    "concmon begin/finish": concmon_ticket,
    "concmon increment/decrement": concmon_seed_api,
    "prometheus_client Gauge.labels().inc/dec": prometheus_gauge,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=positive_int, default=200_000)
    parser.add_argument("--rounds", type=positive_int, default=7)
    args = parser.parse_args()
    results: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for fn in VARIANTS.values():
        fn(10_000)  # warm up
    for _ in range(args.rounds):
        for name, fn in VARIANTS.items():
            results[name].append(fn(args.pairs))
    bare = results["bare lock+dict"]
    gauge = results["prometheus_client Gauge.labels().inc/dec"]
    print(f"counting kernel: {KERNEL} (CONCMON_PURE_PYTHON=1 selects the Python one)")
    print(f"{'variant':44} {'ns/pair':>9} {'x bare':>8} {'x Gauge':>8}")
    for name, values in results.items():
        median = statistics.median(values)
        vs_bare = statistics.median(v / b for v, b in zip(values, bare, strict=True))
        vs_gauge = statistics.median(v / g for v, g in zip(values, gauge, strict=True))
        print(f"{name:44} {median:9.0f} {vs_bare:8.2f} {vs_gauge:8.2f}")


if __name__ == "__main__":
    main()
