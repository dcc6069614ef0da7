"""A switched-off monitor says so at /concurrency instead of serving zeros (real uvicorn)."""

from __future__ import annotations

import os

import httpx
import pytest
from fastapi import FastAPI

from concmon import get_monitor
from concmon_fastapi import install
from tests.servers import uvicorn_thread

pytestmark = pytest.mark.slow


def test_switched_off_monitor_answers_enabled_false(monkeypatch: pytest.MonkeyPatch) -> None:
    """ENABLE_CONCURRENCY_MONITOR=false: /concurrency answers enabled false and no figures,
    and the app's own routes still answer."""
    monkeypatch.setenv("ENABLE_CONCURRENCY_MONITOR", "false")
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    install(app, json_path=True)
    with uvicorn_thread(app) as url, httpx.Client(base_url=url, timeout=20) as client:
        assert client.get("/hello").json() == {"hello": "world"}
        response = client.get("/concurrency")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"enabled": False, "pid": os.getpid()}
    assert not get_monitor().enabled
