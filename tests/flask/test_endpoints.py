"""The monitor's own endpoints: GET /concurrency JSON and the guarded Prometheus /metrics."""

from __future__ import annotations

import sys
import types

import httpx
import pytest
from flask import Flask

from concmon import ConfigError, get_monitor
from concmon.snapshot import Snapshot
from concmon_flask import ConcMon
from tests.flask.apps import build_app
from tests.flask.serving import settled, werkzeug_thread


@pytest.fixture
def exposition(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """A stand-in exporter module: records the Accept header, answers a fixed body."""
    accepts: list[str | None] = []
    module = types.ModuleType("concmon.exporters.prometheus")

    def exposition(accept: str | None) -> tuple[bytes, str]:
        accepts.append(accept)
        return b"concmon_active 0\n", "text/plain; version=0.0.4; charset=utf-8"

    module.exposition = exposition  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "concmon.exporters.prometheus", module)
    return accepts


def test_json_endpoint_serves_the_snapshot_and_is_not_counted() -> None:
    """GET /concurrency returns the snapshot JSON; the endpoint never counts itself."""
    app, _ = build_app(sinks=(), start_reporter=False, json_path=True)
    with werkzeug_thread(app) as base, httpx.Client(base_url=base, timeout=20) as client:
        client.get("/api/items/1")
        settled(get_monitor())
        response = client.get("/concurrency")
        assert response.headers["content-type"] == "application/json"
        data = response.json()
        assert client.head("/concurrency").content == b""
        assert client.post("/concurrency").status_code == 405
    snap = Snapshot.from_dict(data)
    assert set(snap.endpoints) == {"/api/items/<int:item_id>"}
    assert snap.total == 1
    assert snap.system.memory_mb is not None
    assert get_monitor().snapshot().total == 1


def test_metrics_endpoint_hands_accept_to_the_exporter(exposition: list[str | None]) -> None:
    """/metrics returns the exporter's body and content type and is not counted."""
    app, _ = build_app(sinks=(), start_reporter=False, prometheus=True)
    with werkzeug_thread(app) as base, httpx.Client(base_url=base, timeout=20) as client:
        response = client.get("/metrics", headers={"Accept": "text/plain"})
    assert response.status_code == 200
    assert response.text == "concmon_active 0\n"
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert exposition == ["text/plain"]
    assert get_monitor().snapshot().total == 0


def test_metrics_token_is_required(exposition: list[str | None]) -> None:
    """With metrics_token, a missing or wrong bearer token gets 401; the right one gets 200."""
    app, _ = build_app(sinks=(), start_reporter=False, prometheus=True, metrics_token="s3cret")
    with werkzeug_thread(app) as base, httpx.Client(base_url=base, timeout=20) as client:
        missing = client.get("/metrics")
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        basic = client.get("/metrics", headers={"Authorization": "Basic s3cret"})
        right = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert [r.status_code for r in (missing, wrong, basic, right)] == [401, 401, 401, 200]
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert len(exposition) == 1


def test_metrics_allow_list_refuses_other_clients(exposition: list[str | None]) -> None:
    """A client address outside metrics_allow gets 403 before any token check."""
    allowed, _ = build_app(
        sinks=(), start_reporter=False, prometheus=True, metrics_allow="127.0.0.0/8,::1"
    )
    refused = Flask("refused")
    ConcMon(refused, prometheus=True, metrics_allow=["10.0.0.0/8"], metrics_token="t")
    with werkzeug_thread(allowed) as base, httpx.Client(base_url=base, timeout=20) as client:
        assert client.get("/metrics").status_code == 200
    with werkzeug_thread(refused) as base, httpx.Client(base_url=base, timeout=20) as client:
        response = client.get("/metrics", headers={"Authorization": "Bearer t"})
        assert response.status_code == 403


def test_metrics_path_is_configurable_and_app_routes_stay_reachable(
    exposition: list[str | None],
) -> None:
    """metrics_path moves the endpoint; without prometheus the app's own /metrics is its own."""
    app, _ = build_app(
        sinks=(), start_reporter=False, prometheus=True, metrics_path="/internal/metrics"
    )
    client = app.test_client()
    assert client.get("/internal/metrics").status_code == 200
    plain = Flask("plain")

    @plain.get("/metrics")
    def own() -> str:
        return "the app's own"

    ConcMon(plain)
    assert plain.test_client().get("/metrics").text == "the app's own"


def test_missing_exporter_fails_at_init_with_install_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """prometheus=True without the exporter fails at ConcMon(), naming the pip extra."""
    monkeypatch.setitem(sys.modules, "concmon.exporters.prometheus", None)
    with pytest.raises(ConfigError, match=r"pip install 'concmon\[prometheus\]'") as caught:
        ConcMon(Flask("no_exporter"), prometheus=True)
    assert "\n" not in str(caught.value)


def test_real_prometheus_exporter_reports_the_flask_counts() -> None:
    """With the real exporter, /metrics shows the app's requests under their URL rule."""
    app, _ = build_app(sinks=(), start_reporter=False, prometheus=True)
    with werkzeug_thread(app) as base, httpx.Client(base_url=base, timeout=20) as client:
        for item_id in range(3):
            client.get(f"/api/items/{item_id}")
        settled(get_monitor())
        text = client.get("/metrics").text
        open_metrics = client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
    assert "/api/items/<int:item_id>" in text
    assert "/metrics" not in text.replace("# ", "")
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
