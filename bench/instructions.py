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

Usage: ``python bench/instructions.py [--frameworks fastapi,flask] [--peers all|none|NAMES]``
(from the repository root; needs valgrind: ``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.peers import FRAMEWORKS, Framework  # noqa: E402

IDS = 1000
"""Distinct ids in the request paths, all seen during warm-up."""


def _paths(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"/items/{rng.randint(1, IDS)}" for _ in range(count)]


def child(framework: str, variant: str, requests: int) -> int:
    """Build one variant, warm it over every id, then drive ``requests`` more requests."""
    fw = FRAMEWORKS[framework]
    built = fw.build(variant)
    drive = fw.driver()
    try:
        drive(built.app, [f"/items/{i}" for i in range(1, IDS + 1)])
        before = built.recorded() if built.recorded is not None else None
        if requests:
            drive(built.app, _paths(requests, seed=requests))
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
    command = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
    command += [sys.executable, str(Path(__file__).resolve())]
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
        paths = _paths(batch, seed=3)
        drive(built.app, [f"/items/{i}" for i in range(1, IDS + 1)])
        return min(drive(built.app, paths) for _ in range(rounds)) / 1000.0
    finally:
        drive.close()


def measure(fw: Framework, variants: Sequence[str], base: int, extra: int) -> list[Row]:
    jobs = [(v, n) for v in variants for n in (base, base + extra)]
    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
        counts = dict(zip(jobs, pool.map(lambda job: _count(fw.name, *job), jobs), strict=True))
    per = {v: (counts[(v, base + extra)] - counts[(v, base)]) / extra for v in variants}
    bare_us = best_bare_us(fw)
    rows = []
    for v in variants:
        added = per[v] - per["bare"]
        share = added / per["bare"]
        rows.append(Row(v, per[v], added, share, share * bare_us))
    return rows


def print_rows(fw: Framework, rows: Sequence[Row], extra: int) -> None:
    print(
        f"\n### Instructions per request, {fw.name} (difference of runs {extra} requests apart)\n"
    )
    print("| variant | instructions per request | added | added % of bare | us at bare speed |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        if r.variant == "bare":
            print(f"| bare | {r.per_request:,.0f} |  |  |  |")
            continue
        print(
            f"| {r.variant} | {r.per_request:,.0f} | {r.added:,.0f} | {r.share * 100:.1f} | "
            f"{r.us_at_bare_speed:.2f} |"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--child", nargs=3, metavar=("FRAMEWORK", "VARIANT", "N"))
    parser.add_argument("--frameworks", default="fastapi,flask")
    parser.add_argument(
        "--peers", default="all", help="all, none, or a comma list of peer variant names"
    )
    parser.add_argument("--base", type=int, default=500, help="requests of the shorter run")
    parser.add_argument("--extra", type=int, default=2000, help="requests the longer run adds")
    args = parser.parse_args(argv)
    if args.child:
        framework, variant, n = args.child
        return child(framework, variant, int(n))
    if shutil.which("valgrind") is None:
        print("instructions: valgrind is missing; install it with: apt-get install valgrind")
        return 2
    started = time.monotonic()
    for name in args.frameworks.split(","):
        fw = FRAMEWORKS.get(name.strip())
        if fw is None:
            parser.error(f"unknown framework {name!r}; choose from {', '.join(FRAMEWORKS)}")
        peers = [v for v in fw.variants if v not in ("bare", "concmon")]
        if args.peers == "none":
            peers = []
        elif args.peers != "all":
            wanted = {p.strip() for p in args.peers.split(",")}
            peers = [p for p in peers if p in wanted]
        rows = measure(fw, ["bare", "concmon", *peers], args.base, args.extra)
        print_rows(fw, rows, args.extra)
        concmon = next(r for r in rows if r.variant == "concmon")
        for r in rows:
            if r.variant not in ("bare", "concmon") and concmon.added > 0:
                print(f"- {r.variant} adds {r.added / concmon.added:.1f} x what concmon adds")
    print(f"\n(ran {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
