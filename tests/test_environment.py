"""The environment never breaks the watched app: real servers with shared and bad variables."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from flask import Flask

from concmon import get_monitor
from concmon_fastapi import install
from concmon_flask import ConcMon
from tests.flask.serving import werkzeug_thread
from tests.servers import uvicorn_thread

pytestmark = pytest.mark.slow

ENVIRONMENTS = [
    pytest.param({"LOG_LEVEL": "trace"}, True, id="uvicorn-level-trace"),
    pytest.param({"LOG_LEVEL": "critical"}, True, id="uvicorn-level-critical"),
    pytest.param({"DEBUG": "2"}, True, id="debug-2"),
    pytest.param({"MONITOR_UPDATE_INTERVAL": "abc"}, False, id="bad-own-variable"),
    pytest.param({"ENABLED": "false", "SINKS": "nope"}, True, id="other-tools-variables"),
]


def _fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    install(app)
    return app


def _flask_app() -> Flask:
    app = Flask(__name__)

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    ConcMon(app)
    return app


@pytest.mark.parametrize(("environment", "counting"), ENVIRONMENTS)
def test_fastapi_on_uvicorn_serves_whatever_the_environment(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], counting: bool
) -> None:
    """Shared variables read leniently, a bad own one switches counting off: the app starts
    (lifespan included) and answers every request as without concmon."""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with uvicorn_thread(_fastapi_app(), lifespan="on") as url:
        responses = [httpx.get(f"{url}/items/{i}", timeout=10) for i in range(5)]
    assert [r.status_code for r in responses] == [200] * 5
    assert [r.json() for r in responses] == [{"id": i} for i in range(5)]
    assert get_monitor().snapshot().total == (5 if counting else 0)


@pytest.mark.parametrize(("environment", "counting"), ENVIRONMENTS)
def test_flask_serves_whatever_the_environment(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], counting: bool
) -> None:
    """ConcMon(app) never raises for the environment, and the app answers as without it."""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with werkzeug_thread(_flask_app()) as url:
        responses = [httpx.get(f"{url}/items/{i}", timeout=10) for i in range(5)]
    assert [r.status_code for r in responses] == [200] * 5
    assert get_monitor().snapshot().total == (5 if counting else 0)
