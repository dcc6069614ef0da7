"""The demo's proxy app in-process: a client that leaves before its body is quietly cancelled."""

from __future__ import annotations

import asyncio
from typing import Any

from concmon import get_monitor
from concmon.testing import check_balanced
from concmon_cli.demo_app import create_app
from concmon_fastapi import install


def test_client_gone_before_its_body_is_cancelled_without_an_error() -> None:
    """The demo cancels its clients when it ends; none of that may surface as a traceback."""
    app = create_app()
    install(app, loop_lag_interval=None)
    sent: list[dict[str, Any]] = []

    async def gone() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"20")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }
    asyncio.run(app(scope, gone, send))  # raises nothing
    assert sent[0]["status"] == 499
    stats = check_balanced(get_monitor().snapshot()).endpoints["/v1/chat/completions"]
    assert (stats.completed, stats.cancelled, stats.failed) == (1, 1, 0)
