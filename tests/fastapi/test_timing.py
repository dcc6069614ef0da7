"""Response head, first byte, status, method and time queued before the app, on real uvicorn.

Every figure is read from the JSON endpoint of the running server, from the lifetime
distributions (a report between two reads restarts the interval ones). Holds are imposed by the
test and only lower bounds are asserted: a loaded machine makes everything slower, never faster.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.responses import Response
from uvicorn.protocols.utils import ClientDisconnected

from concmon import get_monitor
from concmon.testing import FakeClock, check_balanced
from concmon_fastapi import ConcMonMiddleware, install
from tests.fastapi.apps import Latch
from tests.fastapi.conftest import snap
from tests.servers import HOST, uvicorn_thread
from tests.timing import STAMP_FORMS, count, settled, total

pytestmark = pytest.mark.slow

HOLD = 0.2
"""Seconds the test keeps a first chunk back, once the response head has reached it."""


class TeapotError(Exception):
    """Raised by an endpoint and turned into a 500 by an exception handler inside concmon."""


class Hooks:
    def __init__(self) -> None:
        self.release = Latch()
        self.rest = Latch()


def timing_app(hooks: Hooks, **options: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/held")
    async def held(request: Request, media: str = "text/event-stream") -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            await hooks.release.wait()  # the first chunk waits for the test
            yield b"data: 0\n\n"
            await hooks.rest.wait()
            yield b"data: 1\n\n"

        return StreamingResponse(body(), media_type=media)

    @app.get("/status/{code}")
    async def status(code: int) -> Response:
        return Response(status_code=code, headers={"location": "/"} if code == 302 else None)

    @app.put("/status/{code}")
    async def put_status(code: int) -> Response:
        return Response(status_code=code)

    @app.get("/fast")
    async def fast() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    @app.get("/teapot")
    async def teapot() -> None:
        raise TeapotError

    @app.exception_handler(TeapotError)
    async def on_teapot(request: Request, exc: TeapotError) -> JSONResponse:
        return JSONResponse({"error": "teapot"}, status_code=500)

    install(app, json_path=True, loop_lag_interval=None, **options)
    return app


@pytest.fixture
def hooks() -> Hooks:
    return Hooks()


@pytest.fixture
def server(hooks: Hooks) -> Iterator[str]:
    try:
        with uvicorn_thread(timing_app(hooks)) as url:
            yield url
    finally:
        hooks.release.set()
        hooks.rest.set()


@pytest.mark.parametrize("media", ["text/event-stream", "text/plain"])
def test_held_first_chunk_is_the_time_to_first_byte(server: str, hooks: Hooks, media: str) -> None:
    """A stream (SSE or chunked) whose first chunk is held: its time to first byte exceeds its
    response head's by the hold, and its duration exceeds both."""
    with httpx.Client(base_url=server, timeout=30) as client:
        with client.stream("GET", "/held", params={"media": media}) as response:
            assert response.status_code == 200  # the head is here; the body is held back
            time.sleep(HOLD)
            hooks.release.set()
            chunks = response.iter_bytes()
            assert next(chunks).startswith(b"data: 0")
            hooks.rest.set()
            assert b"".join(chunks).endswith(b"data: 1\n\n")
    figures = settled(server, "/held", 1)
    assert [count(figures, d) for d in ("duration", "head", "ttfb")] == [1, 1, 1]
    head, ttfb, duration = (total(figures, d) for d in ("head", "ttfb", "duration"))
    assert ttfb - head >= HOLD
    assert duration > ttfb
    assert figures["responses"] == {"GET 2xx ok": 1}


def test_client_gone_before_the_first_byte_has_no_ttfb(server: str, hooks: Hooks) -> None:
    """A client that hangs up while the first chunk is held counts cancelled, with a duration
    and a response head but no time to first byte."""
    port = int(server.rsplit(":", 1)[1])
    sock = socket.create_connection((HOST, port), timeout=10)
    sock.sendall(f"GET /held HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
    assert sock.recv(1024).startswith(b"HTTP/1.1 200")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()
    figures = settled(server, "/held", 1)
    hooks.release.set()  # the body, produced now, is never sent
    hooks.rest.set()
    assert figures["cancelled"] == 1
    assert count(figures, "duration") == 1
    assert count(figures, "head") == 1
    assert count(figures, "ttfb") == 0
    assert figures["responses"] == {"GET 2xx cancelled": 1}


def test_status_classes_and_methods_label_the_responses(server: str) -> None:
    """2xx/3xx/4xx/5xx and the method label each response; a 4xx is not failed; an unknown
    method counts as other; every response is in every distribution once."""
    with httpx.Client(base_url=server, timeout=30) as client:
        for code in (204, 302, 404, 503):
            assert client.get(f"/status/{code}").status_code == code
        assert client.put("/status/201").status_code == 201
        assert client.request("PURGE", "/status/200").status_code == 405
    figures = settled(server, "/status/{code}", 6)
    assert figures["responses"] == {
        "GET 2xx ok": 1,
        "GET 3xx ok": 1,
        "GET 4xx ok": 1,
        "GET 5xx failed": 1,
        "PUT 2xx ok": 1,
        "other 4xx ok": 1,
    }
    assert figures["failed"] == 1
    assert [count(figures, d) for d in ("duration", "head", "ttfb")] == [6, 6, 6]


def test_exceptions_count_failed_with_the_status_the_app_sent(server: str) -> None:
    """An exception turned into a 500 inside concmon counts 5xx failed; one that leaves the
    application (the 500 sent by the framework outside it) counts failed with status none."""
    with httpx.Client(base_url=server, timeout=30) as client:
        assert client.get("/teapot").status_code == 500
    with httpx.Client(base_url=server, timeout=30) as client:
        assert client.get("/boom").status_code == 500
    teapot = settled(server, "/teapot", 1)
    assert teapot["responses"] == {"GET 5xx failed": 1}
    assert [count(teapot, d) for d in ("duration", "head", "ttfb")] == [1, 1, 1]
    boom = settled(server, "/boom", 1)
    assert boom["responses"] == {"GET none failed": 1}
    assert (count(boom, "duration"), count(boom, "head"), count(boom, "ttfb")) == (1, 0, 0)


WAITS = STAMP_FORMS


def test_request_start_in_every_unit_is_a_queued_sample(server: str) -> None:
    """X-Request-Start in seconds, nginx's t=msec, milliseconds or microseconds gives one
    queued sample per request, at least as long as the stamp is old."""
    expected = 0.0
    with httpx.Client(base_url=server, timeout=30) as client:
        for i, (form, (ago, written)) in enumerate(WAITS.items(), 1):
            stamp = written(time.time() - ago)
            assert client.get("/fast", headers={"X-Request-Start": stamp}).status_code == 200
            figures = settled(server, "/fast", i)
            expected += ago
            assert count(figures, "queued") == i, form
            assert total(figures, "queued") >= expected - 0.001 * i, form


def test_absent_or_implausible_request_start_gives_no_sample(server: str) -> None:
    """No header, a stamp in the future, one older than the bound, one in nanoseconds and one
    that is no number: durations recorded, no queued sample."""
    now = time.time()
    stamps = [None, f"t={now + 3600:.3f}", "t=1000", str(int(now * 1e9)), "t=soon"]
    with httpx.Client(base_url=server, timeout=30) as client:
        for stamp in stamps:
            headers = {} if stamp is None else {"X-Request-Start": stamp}
            assert client.get("/fast", headers=headers).status_code == 200
    figures = settled(server, "/fast", len(stamps))
    assert count(figures, "duration") == len(stamps)
    assert count(figures, "queued") == 0


@pytest.mark.parametrize("header", ["X-Queue-Start", None])
def test_request_start_header_can_be_renamed_or_switched_off(header: str | None) -> None:
    """``request_start_header`` names the header read (the default one is then ignored), and
    None reads none."""
    stamp = f"t={time.time() - 2.0:.3f}"
    with uvicorn_thread(timing_app(Hooks(), request_start_header=header)) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            client.get("/fast", headers={"X-Request-Start": stamp})
            if header is not None:
                client.get("/fast", headers={header: stamp})
        figures = settled(url, "/fast", 2 if header is not None else 1)
    assert count(figures, "queued") == (1 if header is not None else 0)


# -- the middleware driven directly: what no real server can be made to do on cue ---------------


def _run(app: Any, send: Any, method: str = "GET") -> None:
    from tests.fastapi.test_inprocess import receive, scope

    async def run() -> None:
        await ConcMonMiddleware(app, loop_lag_interval=None)(scope("/x", method), receive, send)

    with contextlib.suppress(ClientDisconnected):
        asyncio.run(run())


@pytest.mark.parametrize(
    ("bodies", "ttfb_s"),
    [
        ([(b"", True), (b"", True), (b"abc", True), (b"", False)], 7.0),  # empty chunks first
        ([(b"", False)], 1.0),  # an empty body: its end is the first byte
        ([(b"whole", False)], 1.0),
    ],
)
def test_first_byte_is_the_first_non_empty_chunk_or_the_end(
    bodies: list[tuple[bytes, bool]], ttfb_s: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Empty chunks before the first byte are not it; an empty body's end is (exact times on
    a fake clock moved 1, 2, 4, 8 s before each body message)."""
    clock = FakeClock()
    monkeypatch.setattr(get_monitor().http, "clock", clock)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        step = 1.0
        for body, more in bodies:
            clock.advance(step)
            step *= 2
            await send({"type": "http.response.body", "body": body, "more_body": more})

    async def server_send(message: Any) -> None:
        return None

    _run(app, server_send)
    stats = check_balanced(snap()).endpoints["/{path:path}"]
    assert stats.ttfb_all is not None and stats.head_all is not None
    assert (stats.ttfb_all.count, stats.ttfb_all.sum_s) == (1, ttfb_s)
    assert (stats.head_all.count, stats.head_all.sum_s) == (1, 0.0)


def test_send_raising_at_the_first_chunk_records_no_first_byte() -> None:
    """The server's send raising (the client gone) as the first chunk goes out: cancelled,
    with a response head and a duration but no time to first byte."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"data: 0\n\n", "more_body": True})

    async def server_send(message: Any) -> None:
        if message["type"] == "http.response.body":
            raise ClientDisconnected()

    _run(app, server_send)
    stats = check_balanced(snap()).endpoints["/{path:path}"]
    assert stats.cancelled == 1
    assert (stats.ttfb_all.count, stats.head_all.count, stats.duration_all.count) == (0, 1, 1)
    assert stats.responses == {"GET 2xx cancelled": 1}


def test_pathsend_is_the_first_byte() -> None:
    """A file sent with http.response.pathsend is the body: first byte and end at once."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": "/dev/null"})

    async def server_send(message: Any) -> None:
        return None

    _run(app, server_send, "DELETE")
    stats = check_balanced(snap()).endpoints["/{path:path}"]
    assert (stats.ttfb_all.count, stats.head_all.count, stats.duration_all.count) == (1, 1, 1)
    assert stats.responses == {"DELETE 2xx ok": 1}
