"""Throughput of each variant against the bare app, loaded at the same moments on one core.

bench/peers.py loads one server at a time and brackets every run between two bare runs; on a
machine whose speed changes by tens of percent from one run to the next, that resolves tens of
percent. Here every variant's server runs pinned to the same CPU and all are loaded together,
one wrk each on the other CPU, for the same seconds. The kernel shares the server CPU equally
among processes that all want it, so in each round every variant gets the same CPU time at the
same moments, and the requests it completes are inversely proportional to what a request costs
it. Whatever the machine does during the round, it does to all of them alike; the ratio of
completed requests to bare is steady to a percent or two. Several server processes per variant
(each with its own hash seed), one per round in turn, average out one process's luck.

Usage (repository root, after ``bash scripts/bench-setup.sh``):
``python bench/simultaneous.py [--framework fastapi|flask] [--variants bare,concmon,...]``;
besides bare, concmon and the peers, ``passthrough`` and ``uncounted`` take concmon apart
(bench/apps/__init__.py says what each is)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.apps import EXPERIMENTS  # noqa: E402
from bench.common import (  # noqa: E402
    WRK_INSTALL_HINT,
    core_plan,
    positive_int,
    run_wrk,
    wrk_available,
)
from bench.peers import ENDPOINTS, FRAMEWORKS, replica_servers  # noqa: E402


class Ratios(NamedTuple):
    median: float
    low: float
    high: float
    cpu: float


def measure(
    framework: str,
    variants: Sequence[str],
    *,
    endpoint: str,
    rounds: int,
    seconds: int,
    connections: int,
    replicas: int,
) -> dict[str, list[tuple[int, float]]]:
    """Per variant, per round: (completed requests, server CPU microseconds per request)."""
    fw = FRAMEWORKS[framework]
    plan = core_plan()
    results: dict[str, list[tuple[int, float]]] = {v: [] for v in variants}
    with replica_servers(fw, variants, replicas, plan) as by_name:
        prefix = ENDPOINTS[endpoint]
        with ThreadPoolExecutor(max_workers=len(variants)) as pool:
            for index in range(-1, rounds):  # round -1 warms every server up
                chosen = [by_name[name][max(index, 0) % replicas] for name in variants]
                cpu = [srv.cpu_seconds() for srv in chosen]
                secs = seconds if index >= 0 else 1
                loads = pool.map(
                    lambda srv, secs=secs: run_wrk(
                        srv.port,
                        prefix,
                        seconds=secs,
                        connections=connections,
                        cpus=plan.load,
                        max_requests=0,
                    ),
                    chosen,
                )
                done = list(loads)
                if index < 0:
                    continue
                for name, srv, before, load in zip(variants, chosen, cpu, done, strict=True):
                    spent = srv.cpu_seconds() - before
                    results[name].append((load.requests, spent / max(load.requests, 1) * 1e6))
    return results


def against_bare(runs: list[tuple[int, float]], bare: list[tuple[int, float]]) -> Ratios:
    """Per-round ratios to bare: the median, its range over rounds, and the median of the
    server CPU per request."""
    ratios = [r[0] / b[0] for r, b in zip(runs, bare, strict=True)]
    cpu = [r[1] / b[1] for r, b in zip(runs, bare, strict=True)]
    return Ratios(statistics.median(ratios), min(ratios), max(ratios), statistics.median(cpu))


def report(results: dict[str, list[tuple[int, float]]]) -> None:
    print(
        "| variant | requests x bare (median) | range over rounds | server CPU per request x bare |"
    )
    print("| --- | ---: | ---: | ---: |")
    for name, runs in results.items():
        r = against_bare(runs, results["bare"])
        print(f"| {name} | {r.median:.3f} | {r.low:.3f}-{r.high:.3f} | {r.cpu:.3f} |")


def bare_against_concmon(framework: str, rounds: int = 9) -> str:
    """One line for bench/asgi.py and bench/wsgi.py: concmon against bare by this method, or
    why it cannot run here."""
    if not wrk_available():
        return f"at the same moments on one core: skipped, no wrk ({WRK_INSTALL_HINT})"
    results = measure(
        framework,
        ["bare", "concmon"],
        endpoint="items",
        rounds=rounds,
        seconds=5,
        connections=16,
        replicas=3,
    )
    r = against_bare(results["concmon"], results["bare"])
    return (
        f"at the same moments on one core (bench/simultaneous.py, {rounds} rounds of 5s, "
        f"GET /items/{{id}}): concmon keeps {r.median:.3f} of bare ({r.low:.3f}-{r.high:.3f} "
        f"over rounds), server CPU per request x{r.cpu:.3f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--framework", default="fastapi", choices=sorted(FRAMEWORKS))
    parser.add_argument("--variants", default="bare,concmon", help="comma list; bare first")
    parser.add_argument("--endpoint", default="items", choices=sorted(ENDPOINTS))
    parser.add_argument("--rounds", type=positive_int, default=9)
    parser.add_argument("--seconds", type=positive_int, default=5)
    parser.add_argument("--connections", type=positive_int, default=16, help="per variant")
    parser.add_argument(
        "--replicas", type=positive_int, default=3, help="server processes per variant"
    )
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    choices = (*FRAMEWORKS[args.framework].variants, *EXPERIMENTS)
    unknown = [v for v in variants if v not in choices]
    if unknown or not variants or variants[0] != "bare":
        parser.error(f"variants must start with bare and come from {', '.join(choices)}")
    if not wrk_available():
        print(f"simultaneous: wrk is not installed; {WRK_INSTALL_HINT}", file=sys.stderr)
        return 2
    started = time.monotonic()
    results = measure(
        args.framework,
        variants,
        endpoint=args.endpoint,
        rounds=args.rounds,
        seconds=args.seconds,
        connections=args.connections,
        replicas=args.replicas,
    )
    print(
        f"\n### {args.framework}, GET {ENDPOINTS[args.endpoint]}{{id}}: {len(variants)} servers "
        f"loaded together on one core, {args.rounds} rounds of {args.seconds}s\n"
    )
    report(results)
    print(f"\n({time.monotonic() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
