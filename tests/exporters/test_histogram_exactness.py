"""Real servers under mixed outcomes: at every scrape, each endpoint's duration histogram
counts exactly the requests its counter counts (uvicorn, and gunicorn in multi-process mode)."""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.exporters.helpers import Samples, parse, total, value
from tests.servers import HOST, free_port, server_process

pytest.importorskip("concmon_fastapi", reason="the FastAPI adapter is needed for /metrics")

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
APP = "tests.exporters.hist_app:app"
ENDPOINTS = ("/ok", "/boom", "/stream", "/abandoned")
ROUNDS = 25
WAIT_S = 60.0


# The failing handler's tracebacks are not logged: nobody reads the server's output pipe
# until it stops, and a full pipe would stall the server.


def _uvicorn(port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", APP, "--host", HOST, "--port", str(port),
            "--log-level", "critical"]  # fmt: skip


def _gunicorn(port: int) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-w", "2",
            "-b", f"{HOST}:{port}", "--graceful-timeout", "2", "--log-level", "critical",
            APP]  # fmt: skip


def _one(base: str, path: str) -> None:
    """One request to ``path``, ended the way that endpoint ends."""
    with httpx.Client(base_url=base, timeout=30, headers={"Connection": "close"}) as client:
        if path == "/abandoned":
            with client.stream("GET", path) as resp:
                next(resp.iter_raw())  # the first chunk, then hang up
            return
        resp = client.get(path)
        assert resp.status_code == (500 if path == "/boom" else 200), resp.text


def _mismatches(samples: Samples) -> list[str]:
    """Endpoints whose histogram count differs from their requests counter (lost excluded:
    a request lost in a dead worker has no duration)."""
    problems = []
    for endpoint in ENDPOINTS:
        counted = total(samples, "concmon_requests_total", endpoint=endpoint)
        lost = total(samples, "concmon_requests_total", endpoint=endpoint, outcome="lost")
        timed = value(samples, "concmon_request_duration_seconds_count", endpoint=endpoint)
        inf = value(samples, "concmon_request_duration_seconds_bucket", endpoint=endpoint,
                    le="+Inf")  # fmt: skip
        if (timed or 0) != counted - lost or inf != timed:
            problems.append(f"{endpoint}: counter {counted} (lost {lost}), histogram {timed}")
    return problems


def _scrape(base: str) -> Samples:
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            resp = httpx.get(f"{base}/metrics", timeout=10, headers={"Connection": "close"})
            return parse(resp.text)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _drive_and_check(base: str) -> None:
    stop = threading.Event()
    problems: list[str] = []
    scrapes = [0]

    def scraper() -> None:
        while not stop.is_set() and len(problems) < 5:
            samples = _scrape(base)
            scrapes[0] += 1
            problems.extend(_mismatches(samples))

    watcher = threading.Thread(target=scraper)
    watcher.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            for result in pool.map(lambda p: _one(base, p), ENDPOINTS * ROUNDS):
                assert result is None
    finally:
        stop.set()
        watcher.join(WAIT_S)
    assert problems == [], problems
    assert scrapes[0] >= 1
    # Abandoned streams finish once the server sees the hang-up: wait (bounded) for all.
    deadline = time.monotonic() + WAIT_S
    while True:
        samples = _scrape(base)
        assert _mismatches(samples) == []
        done = {e: total(samples, "concmon_requests_total", endpoint=e) for e in ENDPOINTS}
        if all(n == ROUNDS for n in done.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert done == dict.fromkeys(ENDPOINTS, ROUNDS)
    assert total(samples, "concmon_requests_total", endpoint="/boom", outcome="failed") == ROUNDS
    assert total(samples, "concmon_requests_total", endpoint="/abandoned",
                 outcome="cancelled") == ROUNDS  # fmt: skip
    assert total(samples, "concmon_requests_total", endpoint="/stream", outcome="ok") == ROUNDS


def test_uvicorn_histogram_count_equals_the_requests_counter_at_every_scrape() -> None:
    """uvicorn, ok/failing/streamed/abandoned requests while scraping: the duration histogram's
    count is the requests counter of the same endpoint in every scrape, and ends exact."""
    port = free_port()
    env = {"PYTHONPATH": str(ROOT), "CONCMON_SINKS": ""}
    with server_process(_uvicorn(port), port, env=env, cwd=ROOT):
        _drive_and_check(f"http://{HOST}:{port}")


def test_gunicorn_multiprocess_histogram_count_equals_the_requests_counter_at_every_scrape(
    tmp_path: Path,
) -> None:
    """gunicorn with two workers in multi-process mode: the same at every scrape, summed over
    the workers."""
    port = free_port()
    env = {
        "PYTHONPATH": str(ROOT),
        "CONCMON_SINKS": "",
        "CONCMON_PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "mp"),
        "PYTHONWARNINGS": "ignore",
    }
    with server_process(_gunicorn(port), port, env=env, cwd=ROOT):
        _drive_and_check(f"http://{HOST}:{port}")
