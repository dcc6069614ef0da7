"""What concmon adds to a request in-process: FastAPI, Flask and Django, bare, with concmon, with
each peer.

The apps are called directly, with no socket and no server: FastAPI through an ASGI call with a
fake ``receive`` and ``send``, Flask and Django through a WSGI call with a complete environ, the
body iterated and closed. Three workloads:

* ``repeated``: ``GET /items/42``, the same path every request;
* ``fresh``: ``GET /items/{id}`` with an id never seen before on every request;
* ``stream``: ``GET /stream``, a response of 200 server-sent events, reported per request and
  per chunk.

Each round runs one batch of every variant, in an order that turns every round; the figure is
this thread's CPU time per request (other processes and background threads, such as a
reporter or an exporter, do not count), and every ratio is the median of the per-round ratios.
After the rounds every instrumentation must have recorded exactly the requests it was sent.

    .venv/bin/python bench/inprocess.py [--frameworks fastapi,flask,django] [--rounds 500]
        [--batch 20]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    BENCH_EXTRA_HINT,
    STREAM_CHUNKS,
    Built,
    available,
    build,
    name_list,
    positive_int,
    ratio_columns,
)

FRAMEWORKS = ("fastapi", "flask", "django")
WORKLOADS = {
    "repeated": "GET /items/42, the same path every request",
    "fresh": "GET /items/{id}, an id never seen before on every request",
    "stream": f"GET /stream, {STREAM_CHUNKS} server-sent events per response",
}


# -- the drivers: one batch of requests, this thread's CPU time -----------------------------------


class Delivered:
    """What the app delivered in a batch: responses with status 200, non-empty body chunks."""

    __slots__ = ("chunks", "ok")

    def __init__(self) -> None:
        self.ok = 0
        self.chunks = 0


def _scope(path: str) -> dict[str, Any]:
    """A GET scope as uvicorn builds it."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench"), (b"accept", b"*/*")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _asgi_batch(app: Any, paths: Sequence[str], seen: Delivered) -> int:
    async def send(message: Mapping[str, Any]) -> None:
        if message["type"] == "http.response.body":
            if message.get("body"):
                seen.chunks += 1
        elif message["type"] == "http.response.start" and message["status"] == 200:
            seen.ok += 1

    start = time.thread_time_ns()
    for path in paths:
        await app(_scope(path), _receive, send)
    return time.thread_time_ns() - start


_ENVIRON = {
    "REQUEST_METHOD": "GET",
    "SCRIPT_NAME": "",
    "QUERY_STRING": "",
    "SERVER_NAME": "127.0.0.1",
    "SERVER_PORT": "8000",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "127.0.0.1",
    "REMOTE_PORT": "50000",
    "HTTP_HOST": "127.0.0.1:8000",
    "HTTP_USER_AGENT": "bench",
    "HTTP_ACCEPT": "*/*",
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": True,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
}


def _wsgi_batch(app: Any, paths: Sequence[str], seen: Delivered) -> int:
    def start_response(status: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], None]:
        if status.startswith("200 "):
            seen.ok += 1
        return _write

    start = time.thread_time_ns()
    for path in paths:
        environ = {**_ENVIRON, "PATH_INFO": path, "wsgi.input": io.BytesIO()}
        body = app(environ, start_response)
        try:
            for chunk in body:
                if chunk:
                    seen.chunks += 1
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
    return time.thread_time_ns() - start


def _write(data: bytes) -> None:
    raise RuntimeError("the app used the write() callable; the driver reads only the body")


class Driver:
    """Runs batches of one framework's apps; ASGI batches share one event loop, as in a server.

    ``close`` cancels what an instrumentation left running on the loop (a loop-lag probe).
    """

    def __init__(self, framework: str) -> None:
        self._loop = asyncio.new_event_loop() if framework == "fastapi" else None

    def batch(self, app: Any, paths: Sequence[str]) -> tuple[int, Delivered]:
        seen = Delivered()
        if self._loop is None:
            return _wsgi_batch(app, paths, seen), seen
        return self._loop.run_until_complete(_asgi_batch(app, paths, seen)), seen

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


# -- the rounds ------------------------------------------------------------------------------------


def _paths(workload: str, count: int, ids: Iterator[int]) -> list[str]:
    if workload == "repeated":
        return ["/items/42"] * count
    if workload == "fresh":
        return [f"/items/{next(ids)}" for _ in range(count)]
    return ["/stream"] * count


def measure(
    drive: Driver,
    built: Mapping[str, Built],
    workload: str,
    ids: Iterator[int],
    *,
    rounds: int,
    batch: int,
    deadline: float,
) -> dict[str, list[float]]:
    """Nanoseconds per request of every variant of ``built``, one figure per round.

    Stops after ``rounds`` rounds or at ``deadline`` (``time.monotonic``), whichever comes first,
    after one round at least. Fails if a response was not a 200, if a stream lost or merged
    chunks, or if an instrumentation recorded other than the requests it was sent.
    """
    variants = list(built)
    chunks = STREAM_CHUNKS if workload == "stream" else 1
    for item in built.values():  # warm up: middleware stacks, route tables, first start
        drive.batch(item.app, _paths(workload, batch, ids))
    before = {n: b.recorded() for n, b in built.items() if b.recorded is not None}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for index in range(rounds):
        turn = index % len(variants)
        for name in [*variants[turn:], *variants[:turn]]:
            paths = _paths(workload, batch, ids)
            ns, seen = drive.batch(built[name].app, paths)
            _check(built[name], seen, batch, chunks)
            times[name].append(ns / batch)
        if time.monotonic() > deadline:
            break
    for name, start in before.items():
        recorder = built[name].recorded
        assert recorder is not None
        got, sent = recorder() - start, len(times[name]) * batch
        if got != sent:
            raise RuntimeError(
                f"{name} recorded {got} of the {sent} requests it was sent; its "
                "instrumentation is not measuring what this benchmark sends"
            )
    return times


def _check(built: Built, seen: Delivered, requests: int, chunks: int) -> None:
    if seen.ok != requests or seen.chunks != requests * chunks:
        raise RuntimeError(
            f"{built.variant}: {seen.ok} of {requests} responses were 200 and they held "
            f"{seen.chunks} body chunks where {requests * chunks} were sent"
        )


def report(workload: str, times: dict[str, list[float]]) -> None:
    """One line per variant: us per request (and per chunk), what it adds to bare, the ratios."""
    stream = workload == "stream"
    bare = times["bare"]
    for name, values in times.items():
        per_request = statistics.median(values) / 1000
        added = statistics.median(v - b for v, b in zip(values, bare, strict=True)) / 1000
        cells = [f"{per_request:9.2f} us/request"]
        if stream:
            cells.append(f"{per_request / STREAM_CHUNKS:7.3f} us/chunk")
        if name == "bare":
            cells.append(" " * (29 if stream else 12))
        else:
            cells.append(f"{added:+8.2f} us")
            if stream:
                cells.append(f"{added / STREAM_CHUNKS:+7.3f} us/chunk")
        print(f"  {name:26} {'  '.join(cells)}  {ratio_columns(name, times)}".rstrip())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/inprocess.py", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument(
        "--frameworks", type=name_list(FRAMEWORKS), default=list(FRAMEWORKS), help="comma list"
    )
    parser.add_argument(
        "--workloads", type=name_list(list(WORKLOADS)), default=list(WORKLOADS), help="comma list"
    )
    parser.add_argument("--rounds", type=positive_int, default=500, help="rounds per workload")
    parser.add_argument("--batch", type=positive_int, default=20, help="requests per batch")
    parser.add_argument(
        "--stream-batch", type=positive_int, default=2, help="streamed responses per batch"
    )
    parser.add_argument(
        "--seconds", type=positive_int, default=120, help="time limit per workload (seconds)"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault(
        "CONCMON_LOG_FILE", str(Path(tempfile.gettempdir()) / "concmon-bench.log")
    )

    print(
        "in-process, this thread's CPU time per request (median over rounds); ratios are of "
        f"time, lower is cheaper; 1-minute load average {os.getloadavg()[0]:.2f}"
    )
    for framework in args.frameworks:
        variants, missing = available(framework)
        if "bare" not in variants or "concmon" not in variants:
            print(
                f"inprocess.py: {framework} is not installed; {BENCH_EXTRA_HINT}", file=sys.stderr
            )
            return 2
        kind = "ASGI" if framework == "fastapi" else "WSGI"
        print(f"\n{framework} ({kind} call)")
        if missing:
            print(f"  (peers not installed, left out: {', '.join(missing)}; {BENCH_EXTRA_HINT})")
        built = {name: build(framework, name) for name in variants}
        ids = itertools.count(1_000_000)
        drive = Driver(framework)
        try:
            for workload in args.workloads:
                batch = args.stream_batch if workload == "stream" else args.batch
                times = measure(
                    drive,
                    built,
                    workload,
                    ids,
                    rounds=args.rounds,
                    batch=batch,
                    deadline=time.monotonic() + args.seconds,
                )
                print(f" {WORKLOADS[workload]}: {len(times['bare'])} rounds of {batch}")
                report(workload, times)
        finally:
            drive.close()
    print(f"\n1-minute load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as exc:  # a variant that failed its check: say which, no traceback
        sys.exit(f"inprocess.py: {exc}")
