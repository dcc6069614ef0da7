"""The machine endpoints: live JSON snapshot and Prometheus exposition, with access control."""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Iterator

import httpx
import pytest

from concmon import SCHEMA, ConfigError, Snapshot
from concmon_fastapi import install
from tests.fastapi.apps import Hooks, make_app
from tests.fastapi.conftest import drained
from tests.servers import uvicorn_thread

pytestmark = pytest.mark.slow


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str | None, str]]]:
    """A stand-in for concmon.exporters.prometheus recording its calls and their thread."""
    calls: list[tuple[str | None, str]] = []
    module = types.ModuleType("concmon.exporters.prometheus")

    def exposition(accept: str | None) -> tuple[bytes, str]:
        calls.append((accept, threading.current_thread().name))
        return b"concmon_active 0\n", "text/plain; version=0.0.4; charset=utf-8"

    module.exposition = exposition  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "concmon.exporters.prometheus", module)
    yield calls


def test_json_endpoint_serves_the_live_snapshot_and_does_not_count_itself() -> None:
    """GET /concurrency returns the core's snapshot shape; it never appears in its own data."""
    hooks = Hooks()
    with uvicorn_thread(make_app(hooks, json_path="/concurrency")) as url:
        with httpx.Client(base_url=url) as client:
            assert client.get("/fast").status_code == 200
            drained()
            response = client.get("/concurrency")
            assert client.post("/concurrency").status_code == 405
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["schema"] == SCHEMA
    assert Snapshot.from_dict(body).endpoints["/fast"].completed == 1
    assert "/concurrency" not in body["endpoints"]
    assert body["system"]["memory_mb"] is not None


def test_metrics_endpoint_calls_the_exporter_off_the_loop(
    exporter: list[tuple[str | None, str]],
) -> None:
    """GET /metrics hands the Accept header to exposition() in a worker thread, returns its
    body and content type, and is not counted."""
    hooks = Hooks()
    with uvicorn_thread(make_app(hooks, prometheus=True)) as url:
        response = httpx.get(f"{url}/metrics", headers={"accept": "text/plain"})
        after = drained()
    assert response.status_code == 200
    assert response.text == "concmon_active 0\n"
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert exporter[0][0] == "text/plain"
    assert exporter[0][1] != threading.main_thread().name
    assert "/metrics" not in after.endpoints and after.total == 0


def test_metrics_token_and_allow_list(exporter: list[tuple[str | None, str]]) -> None:
    """A wrong or missing bearer token gets 401, an address outside the allow-list 403."""
    hooks = Hooks()
    app = make_app(hooks, prometheus=True, metrics_token="s3cret", metrics_allow=["127.0.0.0/8"])
    with uvicorn_thread(app) as url:
        with httpx.Client(base_url=url) as client:
            assert client.get("/metrics").status_code == 401
            bad = client.get("/metrics", headers={"authorization": "Bearer nope"})
            assert bad.status_code == 401
            assert "bearer" in bad.headers["www-authenticate"].lower()
            good = client.get("/metrics", headers={"authorization": "Bearer s3cret"})
            assert good.status_code == 200
    hooks2 = Hooks()
    elsewhere = make_app(hooks2, prometheus=True, metrics_allow=["10.0.0.0/8"])
    with uvicorn_thread(elsewhere) as url:
        assert httpx.get(f"{url}/metrics").status_code == 403
    assert len(exporter) == 1


def test_prometheus_without_the_exporter_fails_at_install_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """install(prometheus=True) without the exporter says which extra to install."""
    monkeypatch.setitem(sys.modules, "concmon.exporters.prometheus", None)
    from fastapi import FastAPI

    with pytest.raises(ConfigError) as info:
        install(FastAPI(), prometheus=True)
    message = str(info.value)
    assert "pip install 'concmon[prometheus]'" in message
    assert "\n" not in message


def test_metrics_endpoint_with_the_real_prometheus_exporter() -> None:
    """With the real exporter, /metrics serves Prometheus text that carries the counted routes
    and OpenMetrics when the scraper asks for it."""
    hooks = Hooks()
    with uvicorn_thread(make_app(hooks, prometheus=True)) as url:
        with httpx.Client(base_url=url) as client:
            assert client.get("/items/3").status_code == 200
            drained()
            text = client.get("/metrics")
            open_metrics = client.get(
                "/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
            )
    assert text.status_code == 200
    assert text.headers["content-type"].startswith("text/plain")
    assert "concmon_requests_active" in text.text
    assert 'endpoint="/items/{item_id}"' in text.text
    assert 'endpoint="/metrics"' not in text.text
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert open_metrics.text.rstrip().endswith("# EOF")
