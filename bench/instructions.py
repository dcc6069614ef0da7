"""Per-request cost counted in machine instructions: the in-process figure noise cannot move.

On a shared machine the time of one request moves by tens of percent from one second to the
next, and by a microsecond or two from one memory layout to another, which is the size of the
effect being measured. The number of instructions the CPU executes for a request does not
move: valgrind's cachegrind counts them, in a child process driving the same trivial app as
bench/peers.py (``GET /items/{id}``, ids 1..1000, every id seen once before counting starts,
so that warm-up and route caches are out of the figure). Two runs per variant, N and N + M
requests, and their difference divided by M is the cost of one request, start-up excluded.

The table gives the instructions each variant adds to the bare request, that addition as a
share of the bare request, and the share turned into microseconds at the bare request's own
best measured time on this machine (``us at bare speed``): what the addition would cost if it
ran at the framework's own instructions per second. Code that misses the caches more than
the framework does costs more than that in real time (docs/performance.md compares the two).

With ``--http`` the count is taken inside the real server instead: uvicorn (FastAPI) or
gunicorn's gthread worker (Flask) runs under cachegrind and a client outside it sends the same
requests over one keep-alive connection. That is the over-HTTP cost with no noise at all: the
server's HTTP parsing and writing are in the bare figure, so the share concmon adds is smaller
than in-process. Work done per second rather than per request (concmon's report, the
OpenTelemetry SDK's export) is moved out of these runs: under valgrind a run lasts fifty times
longer, and its periodic work would be charged fifty times over to the requests.

Usage: ``python bench/instructions.py [--http] [--frameworks fastapi,flask]
[--peers all|none|NAMES]`` (from the repository root; needs valgrind:
``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import HOST, free_port, positive_int, wait_for_port  # noqa: E402
from bench.peers import FRAMEWORKS, Framework, selected  # noqa: E402

IDS = 1000
"""Distinct ids in the request paths, all seen during warm-up."""

CACHEGRIND = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]

PERIODIC_OFF = {"MONITOR_UPDATE_INTERVAL": "3600", "BENCH_EXPORT_INTERVAL_MS": "3600000"}
"""Settings that keep per-second work (reports, metric exports) out of an ``--http`` run."""

SERVER_TIMEOUT_S = 900.0
"""How long a server under valgrind may take to start, or to stop and print its counts."""


def warm_paths() -> list[str]:
    """Every id once, so that route caches and first-call costs are paid before counting."""
    return [f"/items/{i}" for i in range(1, IDS + 1)]


def random_paths(count: int, seed: int) -> list[str]:
    """``count`` request paths with ids drawn from the warmed ones."""
    rng = random.Random(seed)
    return [f"/items/{rng.randint(1, IDS)}" for _ in range(count)]


def child(framework: str, variant: str, requests: int) -> int:
    """Build one variant, warm it over every id, then drive ``requests`` more requests."""
    fw = FRAMEWORKS[framework]
    built = fw.build(variant)
    drive = fw.driver()
    try:
        drive(built.app, warm_paths())
        before = built.recorded() if built.recorded is not None else None
        if requests:
            drive(built.app, random_paths(requests, seed=requests))
        if before is not None and built.recorded is not None:
            got = built.recorded() - before
            if got != requests:
                print(f"{framework}/{variant} recorded {got} of {requests}", file=sys.stderr)
                return 1
    finally:
        drive.close()
    return 0


def _count(framework: str, variant: str, requests: int) -> int:
    """Instructions executed by a child process driving ``requests`` requests after warm-up."""
    command = [*CACHEGRIND, sys.executable, str(Path(__file__).resolve())]
    command += ["--child", framework, variant, str(requests)]
    out = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=str(ROOT)),
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{framework}/{variant} under valgrind failed:\n{out.stderr[-2000:]}")
    for line in out.stderr.splitlines():
        if "I" in line and "refs:" in line:
            return int(line.split("refs:")[1].replace(",", "").strip())
    raise RuntimeError(f"no instruction count in valgrind's output for {framework}/{variant}")


def drive_http(port: int, paths: Sequence[str]) -> None:
    """GET every path in turn on one keep-alive connection; anything but a 200 is an error."""
    conn = http.client.HTTPConnection(HOST, port, timeout=SERVER_TIMEOUT_S)
    try:
        for path in paths:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"GET {path} answered {response.status}: {body[:200]!r}")
    finally:
        conn.close()


_TOTAL = re.compile(r"^==(\d+)== I\s+refs:\s+([\d,]+)\s*$", re.MULTILINE)


def instructions_by_pid(valgrind_output: str) -> dict[int, int]:
    """The instruction totals valgrind printed, per process (a forked worker has its own)."""
    return {int(pid): int(n.replace(",", "")) for pid, n in _TOTAL.findall(valgrind_output)}


def _count_http(framework: str, variant: str, requests: int) -> int:
    """Instructions the server process (for gunicorn: its one worker) executed for the
    warm-up and ``requests`` more requests, start-up and shutdown included."""
    fw = FRAMEWORKS[framework]
    port = free_port()
    argv = fw.argv(port)
    if framework == "flask":  # a worker booting under valgrind is slow to check in
        argv += ["--timeout", str(int(SERVER_TIMEOUT_S))]
    with tempfile.TemporaryDirectory(prefix="concmon-instructions-") as tmp:
        env = {
            **os.environ,
            **PERIODIC_OFF,
            "BENCH_VARIANT": variant,
            "PYTHONHASHSEED": "0",
            "PYTHONPATH": str(ROOT),
            "CONCMON_LOG_FILE": str(Path(tmp) / "concmon.log"),
        }
        log = Path(tmp) / "valgrind.txt"
        with log.open("w") as err:
            proc = subprocess.Popen(
                [*CACHEGRIND, "--trace-children=yes", *argv],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
            try:
                wait_for_port(port, proc, timeout=SERVER_TIMEOUT_S)
                drive_http(port, warm_paths())
                drive_http(port, random_paths(requests, seed=requests))
            finally:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(SERVER_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        counts = instructions_by_pid(log.read_text())
    workers = {pid: n for pid, n in counts.items() if pid != proc.pid}
    if framework == "fastapi" and proc.pid in counts:
        return counts[proc.pid]
    if len(workers) == 1:
        return next(iter(workers.values()))
    raise RuntimeError(
        f"{framework}/{variant}: expected the counts of one server process, got {counts}"
    )


@dataclass
class Row:
    variant: str
    per_request: float
    added: float
    share: float
    us_at_bare_speed: float


def best_bare_us(fw: Framework, rounds: int = 60, batch: int = 50) -> float:
    """The bare request's best time here (CPU of this thread, best batch of ``rounds``)."""
    built = fw.build("bare")
    drive = fw.driver()
    try:
        timed = random_paths(batch, seed=3)
        drive(built.app, warm_paths())
        return min(drive(built.app, timed) for _ in range(rounds)) / 1000.0
    finally:
        drive.close()


def measure(
    fw: Framework, variants: Sequence[str], base: int, extra: int, *, over_http: bool = False
) -> list[Row]:
    jobs = [(v, n) for v in variants for n in (base, base + extra)]
    count = _count_http if over_http else _count
    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
        counts = dict(zip(jobs, pool.map(lambda job: count(fw.name, *job), jobs), strict=True))
    per = {v: (counts[(v, base + extra)] - counts[(v, base)]) / extra for v in variants}
    bare_us = 0.0 if over_http else best_bare_us(fw)
    rows = []
    for v in variants:
        added = per[v] - per["bare"]
        share = added / per["bare"]
        rows.append(Row(v, per[v], added, share, share * bare_us))
    return rows


def print_rows(fw: Framework, rows: Sequence[Row], extra: int, *, over_http: bool = False) -> None:
    where = f"inside {fw.server} over HTTP" if over_http else "in-process"
    print(
        f"\n### Instructions per request, {fw.name}, {where} "
        f"(difference of runs {extra} requests apart)\n"
    )
    # Over HTTP the in-process bare time does not apply; what the count says there is the
    # throughput the variant would keep if time followed instructions.
    last = "bare / variant" if over_http else "us at bare speed"
    print(f"| variant | instructions per request | added | added % of bare | {last} |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        if r.variant == "bare":
            print(f"| bare | {r.per_request:,.0f} |  |  |  |")
            continue
        figure = r.per_request - r.added
        tail = f"{figure / r.per_request:.3f}" if over_http else f"{r.us_at_bare_speed:.2f}"
        print(
            f"| {r.variant} | {r.per_request:,.0f} | {r.added:,.0f} | {r.share * 100:.1f} | "
            f"{tail} |"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--child", nargs=3, metavar=("FRAMEWORK", "VARIANT", "N"))
    parser.add_argument(
        "--http", action="store_true", help="count inside the real server, requests over HTTP"
    )
    parser.add_argument("--frameworks", default="fastapi,flask")
    parser.add_argument(
        "--peers", default="all", help="all, none, or a comma list of peer variant names"
    )
    parser.add_argument(
        "--base", type=positive_int, default=500, help="requests of the shorter run"
    )
    parser.add_argument(
        "--extra", type=positive_int, default=2000, help="requests the longer run adds"
    )
    args = parser.parse_args(argv)
    if args.child:
        framework, variant, n = args.child
        return child(framework, variant, int(n))
    if shutil.which("valgrind") is None:
        print("instructions: valgrind is missing; install it with: apt-get install valgrind")
        return 2
    try:
        chosen = selected(args.frameworks, args.peers)
    except ValueError as exc:
        parser.error(str(exc))
    started = time.monotonic()
    for fw, variants in chosen:
        rows = measure(fw, variants, args.base, args.extra, over_http=args.http)
        print_rows(fw, rows, args.extra, over_http=args.http)
        concmon = next(r for r in rows if r.variant == "concmon")
        for r in rows:
            if r.variant not in ("bare", "concmon") and concmon.added > 0:
                print(f"- {r.variant} adds {r.added / concmon.added:.1f} x what concmon adds")
    print(f"\n(ran {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
