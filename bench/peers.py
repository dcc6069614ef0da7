"""Overhead against the peers: concmon beside the bare app and every peer, in one run.

Two measurements, each printed as a Markdown table:

* over HTTP: the same trivial app served by uvicorn (FastAPI) and by gunicorn gthread (Flask)
  on 127.0.0.1, bare and instrumented by concmon and by each peer, loaded in turn by ``wrk``
  with varied path parameters, server and load pinned to different CPUs. Every instrumented
  run sits between two bare runs (bare A bare B bare ...); ratios are medians of per-round
  ratios against the mean of the two bare runs around each run.
* in-process: the same apps called directly (no socket, no server) with a minimal ASGI/WSGI
  driver; nanoseconds of this thread's CPU per request, interleaved the same way. This table
  carries the fine comparison: it is immune to the load generator and to CPU stolen by the host.

Run from the repository root after ``scripts/bench-setup.sh``:

    .venv/bin/python bench/peers.py                  # the full run (about 10 minutes)
    .venv/bin/python bench/peers.py --quick          # a tiny run that checks the harness
    .venv/bin/python bench/peers.py --profile fastapi:concmon   # pyinstrument, in-process

Every load is bounded in time and in count, on 127.0.0.1 only; every server started here is
stopped here.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import http.client
import importlib.util
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    HOST,
    WRK_INSTALL_HINT,
    CorePlan,
    LoadResult,
    Server,
    ServerSpec,
    bracketed,
    core_plan,
    drive_asgi,
    drive_wsgi,
    free_port,
    positive_int,
    run_wrk,
    servers,
    wrk_available,
)

PEER_MODULES = (
    "starlette_exporter",
    "prometheus_fastapi_instrumentator",
    "prometheus_flask_exporter",
    "opentelemetry.instrumentation.fastapi",
    "opentelemetry.instrumentation.flask",
    "gunicorn",
)
TARGET_RATIO = 0.97
TARGET_NS = {"fastapi": 3_000, "flask": 5_000}
_OURS = frozenset({"bare", "concmon"})


@dataclass(frozen=True)
class Framework:
    """One framework's side of the benchmark: its variants, server and in-process driver."""

    name: str
    module: str
    variants: tuple[str, ...]
    server: str

    def build(self, variant: str) -> Any:
        return importlib.import_module(self.module).build(variant)

    def argv(self, port: int) -> list[str]:
        if self.name == "fastapi":
            return [
                sys.executable, "-m", "uvicorn", "--factory", f"{self.module}:from_env",
                "--host", HOST, "--port", str(port), "--log-level", "warning", "--no-access-log",
            ]  # fmt: skip
        return [
            sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", "1", "--threads", "8",
            "-b", f"{HOST}:{port}", "--log-level", "warning", f"{self.module}:from_env()",
        ]  # fmt: skip

    def driver(self) -> Driver:
        return Driver(self.name == "fastapi")


class Driver:
    """Calls an app in-process: CPU ns per request over ``paths``.

    ASGI calls share one event loop for the whole measurement, as in a server; the tasks an
    instrumentation leaves running on it (a loop-lag probe) are cancelled by ``close``.
    """

    def __init__(self, asgi: bool) -> None:
        self._loop = asyncio.new_event_loop() if asgi else None

    def __call__(self, app: Any, paths: Sequence[str]) -> int:
        if self._loop is None:
            return drive_wsgi(app, paths)
        return self._loop.run_until_complete(drive_asgi(app, paths))

    def close(self) -> None:
        loop = self._loop
        if loop is None:
            return
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()


FRAMEWORKS = {
    "fastapi": Framework(
        "fastapi",
        "bench.apps.fastapi_variants",
        ("bare", "concmon", "starlette-exporter", "instrumentator", "opentelemetry"),
        "uvicorn",
    ),
    "flask": Framework(
        "flask",
        "bench.apps.flask_variants",
        ("bare", "concmon", "prometheus-flask-exporter", "opentelemetry"),
        "gunicorn gthread (1 worker, 8 threads)",
    ),
}
ENDPOINTS = {"items": "/items/", "sleep": "/sleep/"}


def _rounds_order(others: Sequence[str], index: int) -> list[str]:
    """bare X1 bare X2 ... bare, the peers' order reversed every other round."""
    order = list(others) if index % 2 == 0 else list(reversed(others))
    sequence = ["bare"]
    for name in order:
        sequence += [name, "bare"]
    return sequence


# -- in-process -----------------------------------------------------------------------------------


@dataclass
class InProcessRow:
    variant: str
    ns_per_request: float
    added_ns: float
    ratio_to_bare: float
    added_vs_concmon: float | None = None
    samples: list[int] = field(default_factory=list)
    added_best_ns: float = 0.0


@dataclass
class _Series:
    """Per-batch timings of one variant and of the bare batches just before and after each."""

    times: list[int] = field(default_factory=list)
    before: list[int] = field(default_factory=list)
    after: list[int] = field(default_factory=list)


def _interleave(
    drive: Driver, built: dict[str, Any], paths: Sequence[str], rounds: int
) -> dict[str, _Series]:
    series = {name: _Series() for name in built}
    for index in range(rounds):
        last_bare = 0
        pending: str | None = None
        for name in _rounds_order(list(built)[1:], index):
            ns = drive(built[name].app, paths)
            series[name].times.append(ns)
            if name == "bare":
                if pending is not None:
                    series[pending].before.append(last_bare)
                    series[pending].after.append(ns)
                    pending = None
                last_bare = ns
            else:
                pending = name
    return series


def in_process(fw: Framework, rounds: int, batch: int, seed: int = 7) -> list[InProcessRow]:
    """Per-request CPU of each variant, each batch bracketed by two bare batches.

    Afterwards every instrumentation must have recorded exactly the requests it was sent: one
    that silently stopped measuring would otherwise look free.
    """
    rng = random.Random(seed)
    paths = [f"/items/{rng.randint(1, 1000)}" for _ in range(batch)]
    built = {name: fw.build(name) for name in fw.variants}
    drive = fw.driver()
    try:
        for item in built.values():  # warm up: middleware stacks, route caches, first start
            drive(item.app, paths)
        start_counts = {n: b.recorded() for n, b in built.items() if b.recorded is not None}
        series = _interleave(drive, built, paths, rounds)
    finally:
        drive.close()
    for name, count in start_counts.items():
        got = built[name].recorded() - count
        expected = len(series[name].times) * batch
        if got != expected:
            raise RuntimeError(
                f"{fw.name}/{name} recorded {got} of the {expected} requests it was sent; "
                "its instrumentation is not measuring what this benchmark sends"
            )
    times = {name: s.times for name, s in series.items()}

    rows = [InProcessRow("bare", statistics.median(times["bare"]), 0.0, 1.0, None, times["bare"])]
    for name in fw.variants[1:]:
        one = series[name]
        added = statistics.median(
            t - (b + a) / 2 for t, b, a in zip(one.times, one.before, one.after, strict=True)
        )
        rows.append(
            InProcessRow(
                name,
                statistics.median(one.times),
                added,
                bracketed(one.times, one.before, one.after),
                samples=one.times,
                added_best_ns=min(one.times) - min(times["bare"]),
            )
        )
    concmon_added = next(r.added_ns for r in rows if r.variant == "concmon")
    for row in rows[1:]:
        row.added_vs_concmon = row.added_ns / concmon_added if concmon_added > 0 else None
    return rows


def print_in_process(fw: Framework, rows: list[InProcessRow], rounds: int, batch: int) -> None:
    kind = "ASGI" if fw.name == "fastapi" else "WSGI"
    print(f"\n### In-process, {fw.name} ({kind}): {rounds} rounds of {batch} requests\n")
    print(
        "| variant | ns per request | added ns per request | added ns, best batches | x bare "
        "| added x concmon |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        vs = "" if row.added_vs_concmon is None else f"{row.added_vs_concmon:.1f}"
        added = "" if row.variant == "bare" else f"{row.added_ns:,.0f}"
        best = "" if row.variant == "bare" else f"{row.added_best_ns:,.0f}"
        print(
            f"| {row.variant} | {row.ns_per_request:,.0f} | {added} | {best} | "
            f"{row.ratio_to_bare:.3f} | {vs} |"
        )


# -- over HTTP ------------------------------------------------------------------------------------


@dataclass
class HTTPRow:
    variant: str
    endpoint: str
    median_rps: float
    ratio_to_bare: float
    ratio_to_concmon: float | None
    p99_ms: float
    rss_mb: float
    errors: int
    capped: bool
    cpu_us: float = 0.0
    cpu_ratio_to_bare: float = 1.0
    runs: list[dict[str, Any]] = field(default_factory=list)


def _check_answers(port: int, name: str) -> None:
    """Each endpoint answers 200 with its JSON, so a broken variant fails loudly up front."""
    for prefix in ENDPOINTS.values():
        conn = http.client.HTTPConnection(HOST, port, timeout=10)
        try:
            conn.request("GET", f"{prefix}7")
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        if response.status != 200 or json.loads(body).get("id") != 7:
            raise RuntimeError(f"{name} answered {response.status} {body[:200]!r} on {prefix}7")


@contextmanager
def replica_servers(
    fw: Framework, variants: Sequence[str], replicas: int, plan: CorePlan
) -> Iterator[dict[str, list[Server]]]:
    """``replicas`` running servers per variant, each checked to answer both endpoints.

    Several server processes per variant, each with its own hash seed: one process can run a
    few percent faster or slower than another of the same code (dict layouts, where its
    memory landed), which is the size of the effect measured. Callers load replica i mod K of
    every variant in round i, so that luck averages out over the rounds.
    """
    with tempfile.TemporaryDirectory(prefix="concmon-bench-") as tmp:
        specs = []
        for name in variants:
            for replica in range(replicas):
                port = free_port()
                env = {
                    "BENCH_VARIANT": name,
                    "PYTHONHASHSEED": str(replica + 1),
                    "CONCMON_LOG_FILE": str(Path(tmp) / f"{name}-{replica}.log"),
                    "CONCMON_JSONL_FILE": str(Path(tmp) / f"{name}-{replica}.jsonl"),
                }
                specs.append(ServerSpec(f"{fw.name}-{name}-{replica}", fw.argv(port), port, env))
        with servers(specs, plan.server) as running:
            for spec, srv in zip(specs, running, strict=True):
                _check_answers(srv.port, spec.name)
            yield {
                name: running[i * replicas : (i + 1) * replicas] for i, name in enumerate(variants)
            }


def over_http(
    fw: Framework,
    endpoints: Sequence[str],
    *,
    rounds: int,
    seconds: int,
    connections: int,
    cap: int,
    warmup: bool,
    plan: CorePlan,
    replicas: int = 1,
) -> list[HTTPRow]:
    with replica_servers(fw, fw.variants, replicas, plan) as by_name:

        def load(name: str, prefix: str, secs: int, replica: int = 0) -> LoadResult:
            srv = by_name[name][replica]
            cpu = srv.cpu_seconds()
            result = run_wrk(
                srv.port,
                prefix,
                seconds=secs,
                connections=connections,
                cpus=plan.load,
                max_requests=cap,
            )
            spent = srv.cpu_seconds() - cpu
            return dataclasses.replace(result, server_cpu_us=spent / max(result.requests, 1) * 1e6)

        if warmup:
            for name in fw.variants:
                for replica in range(replicas):
                    load(name, ENDPOINTS["items"], 1, replica)
        results: dict[tuple[str, str], list[LoadResult]] = {}
        before: dict[tuple[str, str], list[LoadResult]] = {}
        after: dict[tuple[str, str], list[LoadResult]] = {}
        for endpoint in endpoints:
            for index in range(rounds):
                last_bare: LoadResult | None = None
                pending: tuple[str, str] | None = None
                for name in _rounds_order(fw.variants[1:], index):
                    result = load(name, ENDPOINTS[endpoint], seconds, index % replicas)
                    key = (name, endpoint)
                    results.setdefault(key, []).append(result)
                    if name == "bare":
                        if pending is not None and last_bare is not None:
                            before.setdefault(pending, []).append(last_bare)
                            after.setdefault(pending, []).append(result)
                            pending = None
                        last_bare = result
                    else:
                        pending = key
        rss = {
            name: statistics.mean(srv.rss_mb() for srv in group) for name, group in by_name.items()
        }

    rows: list[HTTPRow] = []
    for endpoint in endpoints:
        part: list[HTTPRow] = []
        for name in fw.variants:
            key = (name, endpoint)
            runs = results[key]
            if name == "bare":
                per_round = [1.0] * len(runs)
                cpu_round = [1.0] * len(runs)
            else:
                pairs = list(zip(runs, before[key], after[key], strict=True))
                per_round = [r.rps / ((b.rps + a.rps) / 2) for r, b, a in pairs]
                cpu_round = [
                    r.server_cpu_us / ((b.server_cpu_us + a.server_cpu_us) / 2) for r, b, a in pairs
                ]
            part.append(
                HTTPRow(
                    variant=name,
                    endpoint=endpoint,
                    median_rps=statistics.median(r.rps for r in runs),
                    ratio_to_bare=statistics.median(per_round),
                    ratio_to_concmon=None,
                    p99_ms=statistics.median(r.p99_ms for r in runs),
                    rss_mb=rss[name],
                    errors=sum(r.errors for r in runs),
                    capped=any(r.capped for r in runs),
                    cpu_us=statistics.median(r.server_cpu_us for r in runs),
                    cpu_ratio_to_bare=statistics.median(cpu_round),
                    runs=[
                        {**asdict(r), "ratio_to_bare": x, "cpu_ratio_to_bare": c}
                        for r, x, c in zip(runs, per_round, cpu_round, strict=True)
                    ],
                )
            )
        ours = [run["ratio_to_bare"] for run in _row(part, "concmon", endpoint).runs]
        for row in part:
            if row.variant == "bare":
                row.ratio_to_concmon = statistics.median(1 / c for c in ours)
                continue
            row.ratio_to_concmon = statistics.median(
                run["ratio_to_bare"] / c for run, c in zip(row.runs, ours, strict=True)
            )
        rows += part
    return rows


def _row(rows: Sequence[HTTPRow], variant: str, endpoint: str) -> HTTPRow:
    return next(r for r in rows if r.variant == variant and r.endpoint == endpoint)


def print_http(
    fw: Framework, rows: list[HTTPRow], rounds: int, seconds: int, connections: int
) -> None:
    for endpoint in dict.fromkeys(r.endpoint for r in rows):
        print(
            f"\n### Over HTTP, {fw.name} on {fw.server}, GET {ENDPOINTS[endpoint]}{{id}}: "
            f"{rounds} rounds of {seconds}s, {connections} connections\n"
        )
        print(
            "| variant | median req/s | x bare | x concmon | p99 ms | RSS MB after "
            "| server CPU us/request | CPU x bare |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for row in (r for r in rows if r.endpoint == endpoint):
            flags = (f" (errors: {row.errors})" if row.errors else "") + (
                " (capped)" if row.capped else ""
            )
            print(
                f"| {row.variant}{flags} | {row.median_rps:,.0f} | {row.ratio_to_bare:.3f} | "
                f"{row.ratio_to_concmon:.3f} | {row.p99_ms:.1f} | {row.rss_mb:.0f} | "
                f"{row.cpu_us:.0f} | {row.cpu_ratio_to_bare:.3f} |"
            )
        loads = [run["load_average"] for r in rows if r.endpoint == endpoint for run in r.runs]
        print(f"\n1-minute load average over these runs: {min(loads):.2f} to {max(loads):.2f}")


# -- targets, profile, main -----------------------------------------------------------------------


def targets(
    inproc: dict[str, list[InProcessRow]], http_rows: dict[str, list[HTTPRow]]
) -> list[str]:
    """One line per target: met or missed, with the measured figure."""
    lines = []
    for fw_name, rows in http_rows.items():
        for endpoint in dict.fromkeys(r.endpoint for r in rows):
            concmon = _row(rows, "concmon", endpoint)
            ok = concmon.ratio_to_bare >= TARGET_RATIO
            lines.append(
                f"{'met   ' if ok else 'MISSED'} {fw_name} {endpoint}: concmon keeps "
                f"{concmon.ratio_to_bare:.3f} of bare throughput (target >= {TARGET_RATIO})"
            )
            peers = [r for r in rows if r.endpoint == endpoint and r.variant not in _OURS]
            if not peers:  # --peers none
                continue
            best = max(peers, key=lambda r: r.ratio_to_bare)
            ok = concmon.ratio_to_bare > best.ratio_to_bare
            lines.append(
                f"{'met   ' if ok else 'MISSED'} {fw_name} {endpoint}: concmon "
                f"{concmon.ratio_to_bare:.3f} vs the best peer ({best.variant}) "
                f"{best.ratio_to_bare:.3f}"
            )
    for fw_name, in_rows in inproc.items():
        added = next(r.added_ns for r in in_rows if r.variant == "concmon")
        limit = TARGET_NS[fw_name]
        lines.append(
            f"{'met   ' if added <= limit else 'MISSED'} {fw_name} in-process: concmon adds "
            f"{added / 1000:.2f} us per request (target <= {limit / 1000:g} us)"
        )
        in_peers = [r for r in in_rows if r.variant not in _OURS]
        if not in_peers:
            continue
        cheapest = min(in_peers, key=lambda r: r.added_ns)
        ok = added < cheapest.added_ns
        lines.append(
            f"{'met   ' if ok else 'MISSED'} {fw_name} in-process: concmon {added / 1000:.2f} us "
            f"vs the cheapest peer ({cheapest.variant}) {cheapest.added_ns / 1000:.2f} us"
        )
    return lines


def profile(target: str, requests: int) -> None:
    """Profile one variant's in-process request path with pyinstrument and print the tree."""
    from pyinstrument import Profiler

    fw_name, _, variant = target.partition(":")
    if fw_name not in FRAMEWORKS or variant not in FRAMEWORKS[fw_name].variants:
        raise SystemExit("peers.py: --profile takes FRAMEWORK:VARIANT, such as fastapi:concmon")
    fw = FRAMEWORKS[fw_name]
    app = fw.build(variant).app
    rng = random.Random(7)
    paths = [f"/items/{rng.randint(1, 1000)}" for _ in range(requests)]
    drive = fw.driver()
    try:
        drive(app, paths[:300])
        profiler = Profiler(interval=0.0001)
        profiler.start()
        drive(app, paths)
        profiler.stop()
    finally:
        drive.close()
    print(profiler.output_text(unicode=False, color=False, show_all=False))
    session = profiler.last_session
    root = session.root_frame() if session is not None else None
    if root is None:
        return
    ours: dict[str, float] = {}
    stack = [root]
    while stack:
        frame = stack.pop()
        stack.extend(frame.children)
        path = (frame.file_path or "").replace(os.sep, "/")
        if "/concmon" in path and "/site-packages/" not in path and "/bench/" not in path:
            key = f"{frame.function} ({frame.file_path_short}:{frame.line_no})"
            ours[key] = ours.get(key, 0.0) + frame.total_self_time
    total = root.time
    print(f"self time in concmon's own code: {sum(ours.values()) / total:.1%} of the run")
    for key, spent in sorted(ours.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {spent / total:6.2%}  {key}")


def _stack() -> str:
    parts = []
    for module in ("uvloop", "httptools"):
        parts.append(f"{module} {'yes' if importlib.util.find_spec(module) else 'no'}")
    return ", ".join(parts)


def selected(frameworks: str, peers: str) -> list[tuple[Framework, list[str]]]:
    """Each framework of the comma list ``frameworks`` with the variants to run: bare, concmon
    and the peers ``peers`` names (``all``, ``none`` or a comma list). An unknown name raises
    ``ValueError`` naming it and the choices, rather than being left out without a word."""
    chosen = []
    wanted = {p.strip() for p in peers.split(",") if p.strip()} - {"all", "none"}
    known: set[str] = set()
    for name in (f.strip() for f in frameworks.split(",") if f.strip()):
        fw = FRAMEWORKS.get(name)
        if fw is None:
            raise ValueError(f"unknown framework {name!r}; choose from {', '.join(FRAMEWORKS)}")
        others = [v for v in fw.variants if v not in _OURS]
        known.update(others)
        if peers.strip() == "none":
            others = []
        elif wanted:
            others = [v for v in others if v in wanted]
        chosen.append((fw, ["bare", "concmon", *others]))
    if wanted - known:
        unknown = ", ".join(sorted(wanted - known))
        raise ValueError(f"unknown peer {unknown}; choose from {', '.join(sorted(known))}")
    return chosen


def missing_peers() -> list[str]:
    """The modules of the `bench` extra that are not installed here."""
    missing = []
    for name in PEER_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(name)
    return missing


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/peers.py", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--frameworks", default="fastapi,flask", help="comma-separated")
    parser.add_argument(
        "--peers",
        default="all",
        help="comma-separated peers to compare, or none (bare and concmon always run)",
    )
    parser.add_argument("--endpoints", default="items,sleep", help="items, sleep or both")
    parser.add_argument("--rounds", type=positive_int, default=6, help="HTTP rounds")
    parser.add_argument(
        "--replicas", type=positive_int, default=3, help="server processes per variant over HTTP"
    )
    parser.add_argument("--seconds", type=positive_int, default=3, help="seconds per wrk run")
    parser.add_argument("--connections", type=positive_int, default=32)
    parser.add_argument("--cap", type=positive_int, default=1_000_000, help="requests per wrk run")
    parser.add_argument("--inprocess-rounds", type=positive_int, default=150)
    parser.add_argument("--batch", type=positive_int, default=50, help="requests per batch")
    parser.add_argument("--inprocess-only", action="store_true")
    parser.add_argument("--http-only", action="store_true")
    parser.add_argument("--quick", action="store_true", help="tiny run that checks the harness")
    parser.add_argument("--json", type=Path, help="write every measurement to this file")
    parser.add_argument("--profile", metavar="FRAMEWORK:VARIANT")
    args = parser.parse_args(argv)

    missing = missing_peers()
    if missing:
        print(
            f"peers.py: the `bench` extra is not installed (missing {', '.join(missing)}); "
            "run .venv/bin/pip install -e '.[bench]'",
            file=sys.stderr,
        )
        return 2
    if args.profile:
        profile(args.profile, args.batch * 40)
        return 0
    chosen = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in FRAMEWORKS]
    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    unknown += [e for e in endpoints if e not in ENDPOINTS]
    peers = {p.strip() for p in args.peers.split(",") if p.strip()} - {"all"}
    only_ours = peers == {"none"}
    known = {v for name in chosen if name in FRAMEWORKS for v in FRAMEWORKS[name].variants}
    unknown += [] if only_ours else sorted(peers - known)
    if unknown or not chosen or not endpoints:
        choices = ", ".join([*FRAMEWORKS, *ENDPOINTS, *sorted(known - _OURS)])
        print(f"peers.py: unknown name {', '.join(unknown)}; choose from {choices}",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.quick:
        args.rounds, args.seconds, args.connections, args.cap = 1, 1, 4, 300
        args.replicas = 1
        args.inprocess_rounds, args.batch, endpoints = 2, 100, ["items"]
    do_http = not args.inprocess_only
    if do_http and not wrk_available():
        print(f"peers.py: wrk is not installed; {WRK_INSTALL_HINT}, or pass --inprocess-only",
              file=sys.stderr)  # fmt: skip
        return 2

    os.environ.setdefault(
        "CONCMON_LOG_FILE", str(Path(tempfile.gettempdir()) / "concmon-bench.log")
    )
    plan = core_plan()
    load_start = os.getloadavg()
    print(f"# concmon against the peers, {dt.date.today().isoformat()}")
    print(
        f"\n{os.cpu_count()} CPUs, Python {platform.python_version()}, {_stack()}; "
        f"load average at start {load_start[0]:.2f}; {plan.describe()}"
    )
    record: dict[str, Any] = {"date": dt.datetime.now().isoformat(), "cpus": os.cpu_count()}
    inproc: dict[str, list[InProcessRow]] = {}
    http_rows: dict[str, list[HTTPRow]] = {}
    for name in chosen:
        fw = FRAMEWORKS[name]
        if peers or only_ours:
            kept = tuple(v for v in fw.variants if v in _OURS or v in peers)
            fw = dataclasses.replace(fw, variants=kept)
        if not args.http_only:
            inproc[name] = in_process(fw, args.inprocess_rounds, args.batch)
            print_in_process(fw, inproc[name], args.inprocess_rounds, args.batch)
        if do_http:
            started = time.monotonic()
            http_rows[name] = over_http(
                fw,
                endpoints,
                rounds=args.rounds,
                seconds=args.seconds,
                connections=args.connections,
                cap=args.cap,
                warmup=not args.quick,
                plan=plan,
                replicas=args.replicas,
            )
            print_http(fw, http_rows[name], args.rounds, args.seconds, args.connections)
            print(f"\n({args.replicas} server processes per variant, one per round in turn)")
            print(f"\n({time.monotonic() - started:.0f}s)")
    load_end = os.getloadavg()
    print(f"\nload average at the end {load_end[0]:.2f}")
    print("\n## Targets\n")
    for line in targets(inproc, http_rows):
        print(f"    {line}")
    if args.json:
        record.update(
            load_average=[load_start[0], load_end[0]],
            in_process={k: [asdict(r) for r in v] for k, v in inproc.items()},
            http={k: [asdict(r) for r in v] for k, v in http_rows.items()},
        )
        args.json.write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
