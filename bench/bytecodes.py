"""Python bytecodes executed per request: the count that predicts what a request costs a loaded
server.

Inside a busy server, each request runs a little of our code between a lot of the framework's,
so our code meets cold caches and a branch predictor trained on other code. There, what a
middleware costs follows the number of bytecodes it makes the interpreter dispatch far better
than the machine instructions behind them (docs/performance.md shows the measurements): a tight
loop is cheap per instruction, and straight-line code touching a dozen objects is dear.

This bench counts them exactly: a child process builds the same trivial app as bench/peers.py
(``GET /items/{id}``), warms it over ids 1..1000, then drives N requests with ``sys.settrace``
reporting every bytecode of this thread. Code that runs in C (pydantic-core, uvloop, a C
extension of a peer) counts nothing; background threads are not traced.

Usage: ``python bench/bytecodes.py [--frameworks fastapi,flask] [--peers all|none|NAMES]``
(from the repository root; about a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import positive_int  # noqa: E402
from bench.instructions import random_paths, warm_paths  # noqa: E402
from bench.peers import FRAMEWORKS, missing_peers, selected  # noqa: E402


def child(framework: str, variant: str, requests: int) -> int:
    """Print the bytecodes per request of one variant as JSON."""
    fw = FRAMEWORKS[framework]
    built = fw.build(variant)
    drive = fw.driver()
    dispatched = 0

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal dispatched
        frame.f_trace_opcodes = True
        if event == "opcode":
            dispatched += 1
        return trace

    try:
        drive(built.app, warm_paths())
        traced = random_paths(requests, seed=requests)
        sys.settrace(trace)
        try:
            drive(built.app, traced)
        finally:
            sys.settrace(None)
    finally:
        drive.close()
    print(json.dumps({"bytecodes_per_request": dispatched / requests}))
    return 0


def _count(framework: str, variant: str, requests: int) -> float:
    script = str(Path(__file__).resolve())
    done = subprocess.run(
        [sys.executable, script, "--child", framework, variant, str(requests)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{framework}/{variant} failed:\n{done.stderr[-2000:]}")
    figure: float = json.loads(done.stdout.strip().splitlines()[-1])["bytecodes_per_request"]
    return figure


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--child", nargs=3, metavar=("FRAMEWORK", "VARIANT", "N"))
    parser.add_argument("--frameworks", default="fastapi,flask")
    parser.add_argument(
        "--peers", default="all", help="all, none, or a comma list of peer variant names"
    )
    parser.add_argument("--requests", type=positive_int, default=50, help="traced requests")
    args = parser.parse_args(argv)
    if args.child:
        framework, variant, n = args.child
        return child(framework, variant, int(n))
    missing = missing_peers()
    if missing and args.peers != "none":
        print(
            f"bytecodes: the `bench` extra is not installed (missing {', '.join(missing)}); "
            "run .venv/bin/pip install -e '.[bench]', or pass --peers none",
            file=sys.stderr,
        )
        return 2
    try:
        chosen = selected(args.frameworks, args.peers)
    except ValueError as exc:
        parser.error(str(exc))
    for fw, variants in chosen:
        per = {v: _count(fw.name, v, args.requests) for v in variants}
        print(f"\n### Python bytecodes per request, {fw.name} ({args.requests} requests traced)\n")
        print("| variant | bytecodes per request | added | added % of bare | added x concmon |")
        print("| --- | ---: | ---: | ---: | ---: |")
        bare, ours = per["bare"], per["concmon"] - per["bare"]
        for variant, figure in per.items():
            if variant == "bare":
                print(f"| bare | {figure:,.0f} |  |  |  |")
                continue
            added = figure - bare
            print(
                f"| {variant} | {figure:,.0f} | {added:,.0f} | {added / bare * 100:.1f} | "
                f"{added / ours:.1f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
