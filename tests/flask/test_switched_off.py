"""A switched-off monitor says so at /concurrency instead of serving zeros (real werkzeug)."""

from __future__ import annotations

import os

import httpx
import pytest

from concmon import init_monitor
from concmon_flask import ConcMonWSGIMiddleware
from tests.flask.apps import build_app
from tests.flask.serving import werkzeug_thread


def test_switched_off_monitor_answers_enabled_false(monkeypatch: pytest.MonkeyPatch) -> None:
    """ENABLE_CONCURRENCY_MONITOR=false: the WSGI middleware's /concurrency answers enabled
    false and no figures, exactly as the ASGI adapter does, and the app still answers."""
    monkeypatch.setenv("ENABLE_CONCURRENCY_MONITOR", "false")
    monitor = init_monitor()
    assert not monitor.enabled
    app, _ = build_app()
    app.wsgi_app = ConcMonWSGIMiddleware(app.wsgi_app, json_path=True)  # type: ignore[method-assign]
    with werkzeug_thread(app) as base, httpx.Client(base_url=base, timeout=20) as client:
        assert client.get("/").status_code == 200
        response = client.get("/concurrency")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"enabled": False, "pid": os.getpid()}
