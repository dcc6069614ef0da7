"""Throughput and per-request cost of ``concmon_fastapi`` against a bare FastAPI app.

Two measurements, both printed as ratios against the bare app:

* in-process: the ASGI app called directly (no socket, no server), bare and instrumented runs
  interleaved; the difference of the medians is the middleware's cost per request;
* over HTTP: uvicorn on 127.0.0.1 serving each app in turn, driven by ``wrk`` when it is
  installed, otherwise by a bounded asyncio load generator in this file (the output says
  which); interleaved runs, median requests per second. Then, where ``wrk`` is installed,
  both served at the same moments on one core (bench/simultaneous.py's method), which resolves
  a few percent where runs one at a time move by ten.

Usage: python bench/asgi.py [--inprocess-only] [--rounds N] [--duration S]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("CONCMON_SINKS", "")
os.environ.setdefault("CONCMON_SYSTEM_METRICS", "false")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fastapi import FastAPI  # noqa: E402

from bench.common import (  # noqa: E402
    asgi_scope,
    free_port,
    positive_float,
    positive_int,
    wait_for_port,
)
from bench.simultaneous import bare_against_concmon  # noqa: E402
from concmon_fastapi import install  # noqa: E402


def make_app(instrumented: bool) -> FastAPI:
    app = FastAPI()

    @app.get("/json")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    if instrumented:
        install(app)
    return app


bare = make_app(False)
instrumented = make_app(True)

# -- in-process ---------------------------------------------------------------------------------


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Any) -> None:
    return None


async def _drive(app: Any, path: str, n: int) -> float:
    """Seconds per request over ``n`` sequential requests."""
    start = time.perf_counter()
    for _ in range(n):
        await app(asgi_scope(path), _receive, _send)
    return (time.perf_counter() - start) / n


async def inprocess(rounds: int, n: int, path: str) -> tuple[float, float, float]:
    """Best seconds per request of bare and instrumented, and the median paired difference.

    Short batches alternate (and swap order every round) so that load from other processes on
    the machine hits both sides alike; the paired difference is the robust figure.
    """
    for app in (bare, instrumented):
        await _drive(app, path, 500)  # warm up: middleware stack, route table, monitor
    bare_t: list[float] = []
    inst_t: list[float] = []
    diffs: list[float] = []
    for r in range(rounds):
        if r % 2:
            i = await _drive(instrumented, path, n)
            b = await _drive(bare, path, n)
        else:
            b = await _drive(bare, path, n)
            i = await _drive(instrumented, path, n)
        bare_t.append(b)
        inst_t.append(i)
        diffs.append(i - b)
    return min(bare_t), min(inst_t), statistics.median(diffs)


async def _tiny(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def middleware_alone(rounds: int, n: int) -> float:
    """Median paired cost of the middleware around a trivial ASGI app (no framework at all)."""
    from concmon_fastapi import ConcMonMiddleware

    wrapped = ConcMonMiddleware(_tiny, loop_lag_interval=None)
    await _drive(wrapped, "/json", 500)
    bare_t, inst_t = [], []
    for _ in range(rounds):
        bare_t.append(await _drive(_tiny, "/json", n))
        inst_t.append(await _drive(wrapped, "/json", n))
    return min(inst_t) - min(bare_t)


def route_lookup(path: str) -> float:
    """Seconds per endpoint-name lookup in the compiled route table (best of 5)."""
    import timeit

    from concmon_fastapi.routes import RouteTable, find_router

    table = RouteTable(find_router(bare))
    scope = asgi_scope(path)
    return min(timeit.repeat(lambda: table.name(scope), number=20000, repeat=5)) / 20000


# -- over HTTP ----------------------------------------------------------------------------------


async def _client(port: int, path: str, deadline: float, budget: list[int]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    done = 0
    try:
        while time.monotonic() < deadline and budget[0] > 0:
            budget[0] -= 1
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            done += 1
    finally:
        writer.close()
    return done


async def _pyload(port: int, path: str, duration: float, connections: int) -> float:
    budget = [2_000_000]  # a hard cap on requests, whatever the duration
    start = time.monotonic()
    counts = await asyncio.gather(
        *(_client(port, path, start + duration, budget) for _ in range(connections))
    )
    return sum(counts) / (time.monotonic() - start)


def _wrk(port: int, path: str, duration: float, connections: int) -> float:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        timeout=duration + 30,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"could not read wrk output:\n{out}")
    return float(match.group(1))


def _serve(which: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            f"bench.asgi:{which}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, proc)
    return proc, port


def http_runs(
    rounds: int, path: str, duration: float, connections: int, tool: str
) -> list[tuple[float, float]]:
    """(bare, instrumented) requests per second per round; both servers stay up (an idle one
    costs nothing) and short runs alternate, so machine noise hits both sides alike."""
    servers = [_serve("bare"), _serve("instrumented")]
    try:
        for _proc, port in servers:  # warm up both
            _load(tool, port, path, min(1.0, duration), connections)
        results = []
        for r in range(rounds):
            order = (0, 1) if r % 2 == 0 else (1, 0)
            rps = {i: _load(tool, servers[i][1], path, duration, connections) for i in order}
            results.append((rps[0], rps[1]))
        return results
    finally:
        for proc, _port in servers:
            proc.terminate()
            proc.wait(15)


def _load(tool: str, port: int, path: str, duration: float, connections: int) -> float:
    if tool == "wrk":
        return _wrk(port, path, duration, connections)
    return asyncio.run(_pyload(port, path, duration, connections))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=positive_int, default=7, help="HTTP rounds")
    parser.add_argument("--batches", type=positive_int, default=400, help="in-process batch pairs")
    parser.add_argument("--requests", type=positive_int, default=20, help="per in-process batch")
    parser.add_argument("--duration", type=positive_float, default=2.0, help="seconds per HTTP run")
    parser.add_argument("--connections", type=positive_int, default=32)
    parser.add_argument("--inprocess-only", action="store_true")
    args = parser.parse_args()

    print("in-process (app called directly, no socket; alternating batches):")
    for path in ("/json", "/items/42"):
        b, i, d = asyncio.run(inprocess(args.batches, args.requests, path))
        print(
            f"  GET {path:10s} bare {b * 1e6:7.2f} us  instrumented {i * 1e6:7.2f} us  "
            f"middleware +{(i - b) * 1e6:5.2f} us (best of batches), "
            f"+{d * 1e6:5.2f} us (median of pairs)  ratio {b / i:.3f}  "
            f"(route lookup {route_lookup(path) * 1e6:.2f} us)"
        )
    alone = asyncio.run(middleware_alone(args.batches, args.requests))
    print(f"  middleware alone around a trivial ASGI app: +{alone * 1e6:.2f} us/request")
    if args.inprocess_only:
        return
    tool = "wrk" if shutil.which("wrk") else "python"
    print(
        f"over HTTP (uvicorn on 127.0.0.1, load generator: {tool}, "
        f"{args.connections} connections, {args.duration:g}s runs alternating):"
    )
    ratios = []
    for r, (b, i) in enumerate(
        http_runs(args.rounds * 3, "/json", args.duration, args.connections, tool)
    ):
        ratios.append(i / b)
        print(
            f"  run {r + 1:2d}: bare {b:8.0f} req/s  instrumented {i:8.0f} req/s  ratio {i / b:.3f}"
        )
    print(f"  median throughput ratio (instrumented / bare): {statistics.median(ratios):.3f}")
    # One server at a time moves by +-10 % between runs on this machine; loading both at the
    # same moments on one core resolves a few percent (docs/performance.md).
    print(f"  {bare_against_concmon('fastapi')}")


if __name__ == "__main__":
    main()
