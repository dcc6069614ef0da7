"""Flask with ConcMon(app) against the same app bare: server throughput and in-process cost.

Run ``python bench/wsgi.py [--inprocess-only]`` from the repository root. Two measurements,
both interleaved (bare, instrumented, bare, ...) so that noise from other processes hits both
sides alike:

* in-process: the WSGI call (Flask routing, view, response, close) timed directly in short
  alternating batches; the best batches and the median paired difference give the cost.
* throughput: two gunicorn gthread servers on 127.0.0.1 (one bare, one instrumented) loaded in
  turn by keep-alive client threads for a fixed time each round; the median of the per-round
  ratios is reported. Then, where ``wrk`` is installed, both loaded at the same moments on one
  core (bench/simultaneous.py's method), which resolves a few percent where runs one at a time
  move by ten.

Every loop is bounded in count and time, and every server started here is stopped here.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flask import Flask  # noqa: E402
from werkzeug.test import EnvironBuilder  # noqa: E402

from bench.common import free_port, positive_float, positive_int, wait_for_port  # noqa: E402
from bench.simultaneous import bare_against_concmon  # noqa: E402
from concmon import ConcurrencyMonitor  # noqa: E402
from concmon_flask import ConcMon  # noqa: E402

HOST = "127.0.0.1"


def make_app(instrumented: bool | None = None) -> Flask:
    """A small JSON API; counted by ConcMon when ``instrumented`` (or BENCH_INSTRUMENTED=1)."""
    if instrumented is None:
        instrumented = os.environ.get("BENCH_INSTRUMENTED") == "1"
    app = Flask("bench", root_path=str(ROOT))

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, Any]:
        return {"id": item_id, "name": "item"}

    if instrumented:
        ConcMon(app, monitor=ConcurrencyMonitor(), start_reporter=False)
    return app


def _one_call(app: Flask, environ: dict[str, Any]) -> None:
    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        return None

    body = app(dict(environ), start_response)
    for _ in body:
        pass
    body.close()  # type: ignore[attr-defined]


def _batch(app: Flask, environ: dict[str, Any], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        _one_call(app, environ)
    return (time.perf_counter() - started) / calls * 1e6


def in_process(rounds: int, calls: int) -> tuple[float, float, float, float]:
    """Microseconds per request: best bare, best instrumented, best difference, median paired.

    Short batches alternate, swapping order every round, so that the machine's changes of
    speed (which last longer than a batch) hit both sides alike.
    """
    environ = EnvironBuilder(path="/items/42").get_environ()
    bare, inst = make_app(False), make_app(True)
    for app in (bare, inst):
        _batch(app, environ, 500)
    bare_t: list[float] = []
    inst_t: list[float] = []
    diffs: list[float] = []
    for r in range(rounds):
        if r % 2:
            i = _batch(inst, environ, calls)
            b = _batch(bare, environ, calls)
        else:
            b = _batch(bare, environ, calls)
            i = _batch(inst, environ, calls)
        bare_t.append(b)
        inst_t.append(i)
        diffs.append(i - b)
    best_bare, best_inst = min(bare_t), min(inst_t)
    return best_bare, best_inst, best_inst - best_bare, statistics.median(diffs)


@contextmanager
def gunicorn(instrumented: bool) -> Iterator[int]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), BENCH_INSTRUMENTED="1" if instrumented else "0")
    argv = [
        sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", "1", "--threads", "4",
        "-b", f"{HOST}:{port}", "--log-level", "warning", "bench.wsgi:make_app()",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, start_new_session=True)
    try:
        wait_for_port(port, proc)
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def load(port: int, seconds: float, clients: int) -> float:
    """Requests per second over keep-alive connections from ``clients`` threads."""
    counts = [0] * clients
    stop = time.monotonic() + seconds

    def client(index: int) -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=10)
        try:
            while time.monotonic() < stop:
                conn.request("GET", f"/items/{index}")
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"status {response.status}")
                counts[index] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    return sum(counts) / (time.monotonic() - started)


def throughput(rounds: int, seconds: float, clients: int) -> tuple[float, float, float]:
    """Median requests/s of each server and the median of the per-round ratios."""
    bare_rps: list[float] = []
    inst_rps: list[float] = []
    ratios: list[float] = []
    with gunicorn(False) as bare_port, gunicorn(True) as inst_port:
        load(bare_port, 0.5, clients)
        load(inst_port, 0.5, clients)
        for i in range(rounds):
            # Alternate which side goes first so a drift in machine load does not favour one.
            order = [(bare_port, bare_rps), (inst_port, inst_rps)]
            for port, results in order if i % 2 == 0 else order[::-1]:
                results.append(load(port, seconds, clients))
            ratios.append(inst_rps[-1] / bare_rps[-1])
    return statistics.median(bare_rps), statistics.median(inst_rps), statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=positive_int, default=9, help="throughput rounds")
    parser.add_argument("--batches", type=positive_int, default=400, help="in-process batch pairs")
    parser.add_argument("--calls", type=positive_int, default=20, help="in-process calls per batch")
    parser.add_argument("--seconds", type=positive_float, default=2.0, help="load time per round")
    parser.add_argument("--clients", type=positive_int, default=4)
    parser.add_argument("--inprocess-only", action="store_true")
    args = parser.parse_args()
    bare, inst, best, paired = in_process(args.batches, args.calls)
    print(
        f"in-process: bare {bare:.1f} us, concmon {inst:.1f} us (best batches); cost "
        f"+{best:.2f} us (best of batches), +{paired:.2f} us (median of pairs)"
    )
    if args.inprocess_only:
        return
    bare_rps, inst_rps, ratio = throughput(args.rounds, args.seconds, args.clients)
    print(
        f"gunicorn gthread: bare {bare_rps:.0f} req/s, concmon {inst_rps:.0f} req/s, "
        f"median ratio {ratio:.3f} ({args.rounds} interleaved rounds of {args.seconds:g}s)"
    )
    # One server at a time moves by +-10 % between runs on this machine; loading both at the
    # same moments on one core resolves a few percent (docs/performance.md).
    print(f"gunicorn gthread, {bare_against_concmon('flask')}")


if __name__ == "__main__":
    main()
