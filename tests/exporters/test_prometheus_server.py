"""A real Prometheus server scraping a real uvicorn app every second."""

from __future__ import annotations

import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.exporters.conftest import prometheus_server
from tests.exporters.helpers import parse, total
from tests.servers import HOST, free_port, server_process

pytest.importorskip("concmon_fastapi", reason="the FastAPI adapter is needed for /metrics")

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _uvicorn(port: int, *extra: str) -> list[str]:
    return [
        "python", "-m", "uvicorn", "tests.exporters.prom_app:app",
        "--host", HOST, "--port", str(port), "--log-level", "warning", *extra,
    ]  # fmt: skip


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"PYTHONPATH": str(ROOT), "CONCMON_SINKS": "", **extra}


def test_prometheus_scrapes_exact_totals_and_active_back_to_zero(tmp_path: Path) -> None:
    """Scraped concmon_requests_total equals the requests sent; held requests show, then 0."""
    port = free_port()
    with (
        server_process(_uvicorn(port), port, env=_env(tmp_path), cwd=ROOT) as app,
        prometheus_server([f"{HOST}:{port}"], tmp_path) as prom,
    ):
        base = f"http://{HOST}:{port}"
        sent = 0
        with httpx.Client(base_url=base, timeout=10) as client:
            for i in range(150):
                path = "/work" if i % 3 else f"/items/{i}"
                resp = client.get(path)
                if resp.status_code != 200:
                    app.terminate()
                    pytest.fail(f"{path}: {resp.status_code} {resp.text}\n{app.communicate()[0]}")
                sent += 1
        held_results: list[int] = []

        def held() -> None:
            held_results.append(httpx.get(f"{base}/hold", timeout=60).status_code)

        holders = [threading.Thread(target=held) for _ in range(5)]
        for t in holders:
            t.start()
        try:
            assert prom.wait_for('sum(concmon_requests_active{job="concmon"})', 5) == 5
        finally:
            httpx.post(f"{base}/release", timeout=10)
            for t in holders:
                t.join(30)
        sent += 6  # the held requests and the release
        assert held_results == [200] * 5
        expected = float(sent)
        assert prom.wait_for('sum(concmon_requests_total{job="concmon"})', expected) == expected
        assert prom.wait_for('sum(concmon_requests_active{job="concmon"})', 0) == 0
        by_endpoint = {
            r["metric"]["endpoint"]: float(r["value"][1])
            for r in prom.query('sum by (endpoint) (concmon_requests_total{job="concmon"})')
        }
        assert by_endpoint["/work"] == 100
        assert by_endpoint["/items/{item_id}"] == 50
        assert "/metrics" not in by_endpoint  # the scrape itself is not counted
        assert prom.value('max_over_time(concmon_requests_peak{endpoint="/hold"}[1m])') >= 5  # type: ignore[operator]


def test_two_worker_app_reports_the_whole_host_in_every_scrape(tmp_path: Path) -> None:
    """uvicorn --workers 2 in multi-process mode: the scraped totals add up across workers."""
    port = free_port()
    env = _env(tmp_path, CONCMON_PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "multiproc"))
    with (
        server_process(_uvicorn(port, "--workers", "2"), port, env=env, cwd=ROOT),
        prometheus_server([f"{HOST}:{port}"], tmp_path) as prom,
    ):
        pids: set[int] = set()
        sent = 0
        limits = httpx.Limits(max_keepalive_connections=0)

        def one(_: int) -> int:
            with httpx.Client(timeout=10, limits=limits) as client:
                resp = client.get(f"http://{HOST}:{port}/work")
                assert resp.status_code == 200
                pid: int = resp.json()["pid"]
                return pid

        with ThreadPoolExecutor(8) as pool:
            while len(pids) < 2 and sent < 2000:
                pids.update(pool.map(one, range(100)))
                sent += 100
        assert len(pids) == 2, "the kernel never handed a connection to the second worker"
        assert os.getpid() not in pids
        expected = float(sent)
        assert prom.wait_for('sum(concmon_requests_total{job="concmon"})', expected) == expected
        assert prom.wait_for('concmon_processes{job="concmon"}', 2) == 2
        assert prom.wait_for('sum(concmon_requests_active{job="concmon"})', 0) == 0


def test_unusable_multiprocess_directory_on_a_real_server_still_serves_and_counts(
    tmp_path: Path,
) -> None:
    """Multi-process directory under a regular file: one clear line; requests, /metrics work."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    port = free_port()
    env = _env(tmp_path, CONCMON_PROMETHEUS_MULTIPROC_DIR=str(blocker / "multiproc"))
    with server_process(_uvicorn(port), port, env=env, cwd=ROOT) as app:
        with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=10) as client:
            for _ in range(20):
                assert client.get("/work").status_code == 200
            metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert (
        total(parse(metrics.text), "concmon_requests_total", endpoint="/work", outcome="ok") == 20
    )
    output: str = app.output  # type: ignore[attr-defined]
    lines = [line for line in output.splitlines() if "multiproc" in line]
    assert len(lines) == 1, output
    assert "not usable" in lines[0] and "CONCMON_PROMETHEUS_MULTIPROC_DIR" in lines[0]
    assert "Traceback" not in output


def test_histogram_quantile_over_concmons_buckets_answers_in_prometheus(tmp_path: Path) -> None:
    """Prometheus scrapes the duration histogram on CONCMON_LATENCY_BUCKETS: its le labels are
    those bounds, its count the requests sent, and histogram_quantile gives a p99 inside the
    first bucket for requests that all took less than it."""
    port = free_port()
    env = _env(tmp_path, CONCMON_LATENCY_BUCKETS="0.5,1,2")
    with (
        server_process(_uvicorn(port), port, env=env, cwd=ROOT),
        prometheus_server([f"{HOST}:{port}"], tmp_path) as prom,
    ):
        count = 'sum(concmon_request_duration_seconds_count{job="concmon", endpoint="/work"})'
        with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=10) as client:
            # One request scraped first, so that the rest is an increase Prometheus can see.
            assert client.get("/work").status_code == 200
            assert prom.wait_for(count, 1) == 1
            for _ in range(39):
                assert client.get("/work").status_code == 200
        assert prom.wait_for(count, 40) == 40
        les = {
            r["metric"]["le"]
            for r in prom.query('concmon_request_duration_seconds_bucket{endpoint="/work"}')
        }
        assert les == {"0.5", "1.0", "2.0", "+Inf"}
        p99 = (
            "histogram_quantile(0.99, sum by (le) "
            '(increase(concmon_request_duration_seconds_bucket{endpoint="/work"}[1m])))'
        )
        deadline = time.monotonic() + 30
        seen = prom.value(p99)
        while (seen is None or math.isnan(seen)) and time.monotonic() < deadline:
            time.sleep(0.25)
            seen = prom.value(p99)
        assert seen is not None and 0 < seen <= 0.5
