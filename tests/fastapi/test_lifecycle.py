"""Lifespan, lazy start, double registration and nesting, with real uvicorn servers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from fastapi import FastAPI
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import Response

from concmon import get_runtime
from concmon.testing import CapturingSink
from concmon_fastapi import CATCH_ALL, ConcMonMiddleware, install
from tests.fastapi.apps import Hooks, make_app, plain_asgi_app, request_tag
from tests.fastapi.conftest import drained, wait_until
from tests.servers import free_port, uvicorn_thread

pytestmark = pytest.mark.slow


def test_lifespan_starts_reporting_and_flushes_a_final_report() -> None:
    """Startup starts the monitor next to the app's own lifespan; shutdown hands every sink
    the final snapshot."""
    seen: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, str]]:
        seen.append("startup")
        yield {"from_lifespan": "yes"}
        seen.append("shutdown")

    app = FastAPI(lifespan=lifespan)

    @app.get("/state")
    async def state(request: Request) -> dict[str, str]:
        return {"value": request.state.from_lifespan}

    install(app)
    sink = CapturingSink()
    with uvicorn_thread(app) as url:
        runtime = get_runtime()
        assert runtime is not None
        runtime.plugins.register(sink, "capture")
        assert httpx.get(f"{url}/state").json() == {"value": "yes"}
        drained()
    assert seen == ["startup", "shutdown"]
    assert get_runtime() is None
    assert sink.final is not None and sink.final.endpoints["/state"].completed == 1


def test_failing_app_startup_still_fails_the_server() -> None:
    """An application whose startup raises keeps failing to start with the middleware on."""

    @asynccontextmanager
    async def broken(app: FastAPI) -> AsyncIterator[None]:
        raise RuntimeError("database unreachable")
        yield

    app = FastAPI(lifespan=broken)
    install(app)
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="critical")
    server = uvicorn.Server(config)
    exits: list[object] = []

    def serve() -> None:
        try:
            asyncio.run(server.serve())
        except SystemExit as exc:  # uvicorn exits when the application cannot start
            exits.append(exc.code)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive()
    assert not server.started
    assert exits == [3]
    assert get_runtime() is None  # the reporter started for startup was stopped again


def test_plain_asgi_app_without_lifespan_counts_under_one_name() -> None:
    """A router-less ASGI app that refuses lifespan is counted under the catch-all name."""
    app = ConcMonMiddleware(plain_asgi_app)
    with uvicorn_thread(app) as url:
        with httpx.Client(base_url=url) as client:
            for i in range(20):
                assert client.get(f"/any/{i}").text == "plain"
        after = drained()
    assert list(after.endpoints) == [CATCH_ALL]
    assert after.endpoints[CATCH_ALL].completed == 20


def test_lifespan_off_starts_lazily_on_the_first_request() -> None:
    """With the server's lifespan off, the first request starts the monitor and the probe."""
    hooks = Hooks()
    with uvicorn_thread(make_app(hooks), lifespan="off") as url:
        assert get_runtime() is None
        assert httpx.get(f"{url}/fast").status_code == 200
        # The reporting starts in a thread of its own, off the loop: wait for it (bounded).
        deadline = time.monotonic() + 15
        while get_runtime() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert get_runtime() is not None
        wait_until(lambda s: s.system.loop_lag_ms is not None, what="probe started lazily")
        drained()


def test_install_twice_and_rebuilt_stack_count_each_request_once() -> None:
    """install() twice registers once; a middleware stack built again still counts once."""
    hooks = Hooks()
    app = make_app(hooks)
    install(app)
    assert sum(m.cls is ConcMonMiddleware for m in app.user_middleware) == 1
    with uvicorn_thread(app) as url:
        with httpx.Client(base_url=url) as client:
            assert client.get("/fast").status_code == 200
            app.middleware_stack = app.build_middleware_stack()  # e.g. a handler added later
            assert client.get("/fast").status_code == 200
        after = drained()
    assert after.endpoints["/fast"].total == 2


def test_instrumented_app_mounted_in_instrumented_app_counts_once() -> None:
    """Two instrumented apps, one mounted in the other: the outer one counts, once."""
    inner = FastAPI()

    @inner.get("/thing/{tid}")
    async def thing(tid: int) -> dict[str, int]:
        return {"tid": tid}

    install(inner)
    outer = FastAPI()
    outer.mount("/inner", inner)
    install(outer)
    with uvicorn_thread(outer) as url:
        assert httpx.get(f"{url}/inner/thing/5").json() == {"tid": 5}
        after = drained()
    assert after.total == 1
    assert list(after.endpoints) == ["/inner/thing/{tid}"]


class TagMiddleware(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: Any) -> Response:
        token = request_tag.set("tagged")
        try:
            response: Response = await call_next(request)
        finally:
            request_tag.reset(token)
        return response


@pytest.mark.parametrize("outside", [False, True], ids=["concmon-outermost", "concmon-inner"])
def test_identical_counts_inside_and_outside_other_middleware(outside: bool) -> None:
    """BaseHTTPMiddleware and GZip around or inside: same counts, contextvars intact."""
    hooks = Hooks()
    app = make_app(hooks)
    if outside:  # added after install, so these wrap the concmon middleware
        app.add_middleware(TagMiddleware)
        app.add_middleware(GZipMiddleware, minimum_size=10)
    else:
        app.user_middleware.append(app.user_middleware.pop(0))  # concmon outermost
        app.add_middleware(TagMiddleware)
        app.add_middleware(GZipMiddleware, minimum_size=10)
        app.user_middleware.insert(0, app.user_middleware.pop())
    with uvicorn_thread(app) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            assert client.get("/context").json() == {"tag": "tagged"}
            hooks.stream_release.set()
            assert client.get("/stream").text.count("chunk") == 3
            assert client.get("/status/500").status_code == 500
            assert client.get("/nothing/here").status_code == 404
        after = drained()
    counts = {n: (e.total, e.completed, e.failed, e.cancelled) for n, e in after.endpoints.items()}
    assert counts == {
        "/context": (1, 1, 0, 0),
        "/stream": (1, 1, 0, 0),
        "/status/{code}": (1, 1, 1, 0),
        "<unmatched>": (1, 1, 0, 0),
    }
    assert hooks.contextvar_values == ["tagged"]


def test_websocket_counts_on_its_own_and_never_touches_http() -> None:
    """A WebSocket is active while open, in its own section; HTTP totals stay at zero."""
    hooks = Hooks()

    async def talk(url: str) -> None:
        async with websockets.connect(url.replace("http", "ws") + "/ws/lobby") as ws:
            await ws.send("hi")
            assert await ws.recv() == "lobby:hi"
            during = await asyncio.to_thread(
                wait_until, lambda s: s.websockets.get("/ws/{room}") is not None
            )
            assert during.websockets["/ws/{room}"].active == 1
            assert during.total == 0 and during.active == 0
            await ws.send("bye")
        async with websockets.connect(url.replace("http", "ws") + "/ws/other") as ws:
            await ws.send("x")
            assert await ws.recv() == "other:x"
        # the second socket is closed by the client without saying bye

    with uvicorn_thread(make_app(hooks)) as url:
        asyncio.run(talk(url))
        after = drained()
    stats = after.websockets["/ws/{room}"]
    assert (stats.total, stats.completed, stats.active) == (2, 2, 0)
    assert stats.failed == 0
    assert after.total == 0 and after.endpoints == {}


def test_two_apps_in_one_process_stop_independently() -> None:
    """Two instrumented apps, each with its own lifespan, share the process monitor: the one
    that shuts down first leaves the other's reports running; the last one stops them."""
    first, second = make_app(Hooks()), make_app(Hooks())
    with uvicorn_thread(second, lifespan="on") as second_url:
        with uvicorn_thread(first, lifespan="on") as first_url:
            assert httpx.get(f"{first_url}/fast", timeout=10).status_code == 200
        runtime = get_runtime()
        assert runtime is not None and runtime.reporter.running, "the first app's shutdown"
        sink = CapturingSink()
        assert runtime.plugins.register(sink, "capture")
        assert httpx.get(f"{second_url}/fast", timeout=10).status_code == 200
        report = runtime.reporter.report_now()
        assert report.endpoints["/fast"].total == 2
        assert sink.reports[-1] is report
    assert get_runtime() is None and not runtime.reporter.running


@pytest.mark.parametrize("lifespan", ["on", "off"])
def test_start_up_blocking_work_runs_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch, lifespan: str
) -> None:
    """Loading plugins, opening files and starting the reporter happen in a worker thread, at
    lifespan startup and on a first request without lifespan: the loop is never stalled."""
    from concmon.plugins import PluginHost

    on_loop: list[bool] = []
    real = PluginHost.load_configured

    def recording(self: PluginHost) -> list[str]:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return real(self)

    monkeypatch.setattr(PluginHost, "load_configured", recording)
    with uvicorn_thread(make_app(Hooks()), lifespan=lifespan) as url:
        assert httpx.get(f"{url}/fast", timeout=10).status_code == 200
        # Without lifespan the start runs in a thread of its own, not awaited by the request.
        wait_until(lambda _: bool(on_loop), what="the monitor started")
    assert on_loop == [False]
