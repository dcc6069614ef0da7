"""The Flask apps the tests serve, in-process and under gunicorn (``tests.flask.apps:...``).

Routes that must wait for the test use a ``threading.Event`` in-process, or poll for a file
whose path comes from the environment when several worker processes are involved.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Flask, Response, abort, request, stream_with_context

from concmon_flask import ConcMon

items = Blueprint("items", __name__, url_prefix="/api")


@items.get("/items/<int:item_id>")
def item(item_id: int) -> dict[str, int]:
    return {"id": item_id}


@items.get("/missing")
def missing() -> str:
    abort(404)


class Gates:
    """Events one app's slow routes wait on; each app gets its own."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.streaming = threading.Event()
        self.stream_ended = threading.Event()
        self.rest = threading.Event()


def _wait_for_file(path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)


def _released(gate: threading.Event, suffix: str = "") -> None:
    """Wait for ``gate`` in-process, or under gunicorn for the release file (+ ``suffix``)."""
    release_file = os.environ.get("FLASK_TEST_RELEASE_FILE")
    if release_file:
        _wait_for_file(release_file + suffix)
    else:
        gate.wait(30)


def build_app(**options: Any) -> tuple[Flask, Gates]:
    """A Flask app with one route per behaviour under test, and its gates (no ConcMon)."""
    app = Flask(__name__)
    gates = Gates()
    app.extensions["test_gates"] = gates
    app.register_blueprint(items)

    @app.get("/")
    def index() -> str:
        return "ok"

    @app.get("/slow")
    def slow() -> str:
        release_file = os.environ.get("FLASK_TEST_RELEASE_FILE")
        if release_file:
            _wait_for_file(release_file)
        else:
            gates.release.wait(30)
        return "done"

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    @app.get("/status/<int:code>")
    def status(code: int) -> tuple[str, int]:
        return f"status {code}", code

    @app.get("/exit")
    def exit_view() -> str:
        raise SystemExit(3)

    @app.get("/cancel")
    def cancel() -> str:
        raise asyncio.CancelledError

    @app.get("/stream/<int:chunks>")
    def stream(chunks: int) -> Response:
        size = request.args.get("size", 16, type=int)

        @stream_with_context
        def body() -> Iterator[bytes]:
            try:
                for i in range(chunks):
                    if i == 1:
                        gates.streaming.set()
                        if request.args.get("hold"):
                            gates.release.wait(30)
                    yield b"x" * size
            finally:
                gates.stream_ended.set()

        return Response(body(), mimetype="application/octet-stream")

    @app.get("/held")
    def held() -> Response:
        """A stream whose first chunk (``size`` bytes) waits for the release, the rest for
        ``rest``."""
        size = request.args.get("size", 16, type=int)

        def body() -> Iterator[bytes]:
            _released(gates.release)
            yield b"x" * size
            _released(gates.rest, ".rest")
            yield b"end"

        return Response(body(), mimetype="text/event-stream")

    @app.route("/any", methods=["GET", "PUT"])
    def any_method() -> str:
        return "ok"

    @app.get("/stream-fail")
    def stream_fail() -> Response:
        def body() -> Iterator[bytes]:
            yield b"first"
            raise RuntimeError("failed mid-stream")

        return Response(body())

    @app.errorhandler(500)
    def on_500(error: Exception) -> tuple[str, int]:
        return "handled by the app", 500

    if options:
        ConcMon(app, **options)
    return app, gates


def create_app() -> Flask:
    """The app factory gunicorn loads: ``tests.flask.apps:create_app()``."""
    app, _ = build_app()
    ConcMon(app)
    return app


def create_served_app() -> Flask:
    """``create_app`` with the JSON endpoint at /concurrency: ``create_served_app()``."""
    app, _ = build_app()
    ConcMon(app, json_path=True)
    return app
