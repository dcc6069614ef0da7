"""On trio (anyio's other backend, served by hypercorn) the adapter works as on asyncio."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from concmon import UNMATCHED, get_runtime
from concmon.testing import check_balanced
from concmon_fastapi import install
from tests.fastapi.apps import HOLD_LIMIT, released
from tests.fastapi.conftest import wait_until

trio = pytest.importorskip("trio")
hypercorn_trio = pytest.importorskip("hypercorn.trio")
from hypercorn.config import Config  # noqa: E402

pytestmark = pytest.mark.slow


def trio_app(release: threading.Event, **options: Any) -> FastAPI:
    """Endpoints that use trio-friendly anyio calls only."""
    app = FastAPI()

    @app.get("/fast")
    async def fast() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    @app.get("/sync")
    def sync() -> dict[str, str]:
        return {"thread": threading.current_thread().name}

    @app.get("/hold")
    async def hold() -> dict[str, bool]:
        await released(release)
        return {"ok": True}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            for i in range(20):
                yield f"data: {i}\n\n".encode()
                await anyio.sleep(0)

        return StreamingResponse(body(), media_type="text/event-stream")

    install(app, **options)
    return app


@contextlib.contextmanager
def hypercorn_on_trio(app: Any) -> Iterator[str]:
    """Serve ``app`` with hypercorn's trio worker in a thread on 127.0.0.1; yields its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.loglevel = "WARNING"
    stop = threading.Event()
    failure: list[BaseException] = []

    async def shutdown_trigger() -> None:
        while not stop.is_set():
            await trio.sleep(0.02)

    def run() -> None:
        try:
            trio.run(lambda: hypercorn_trio.serve(app, config, shutdown_trigger=shutdown_trigger))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert not failure, failure
            try:
                httpx.get(f"{url}/fast", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or not thread.is_alive():
                    raise
                time.sleep(0.05)
        yield url
    finally:
        stop.set()
        thread.join(15)
    assert not failure, failure


def test_requests_streams_and_errors_count_exactly_on_trio() -> None:
    """Lifespan, plain, sync, streamed and failing requests on trio: the responses are what the
    app sends, and every count adds up."""
    release = threading.Event()
    with hypercorn_on_trio(trio_app(release)) as url:
        runtime = get_runtime()
        assert runtime is not None and runtime.reporter.running, "lifespan startup ran"
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.get("/items/7").json() == {"item": 7}
            assert client.get("/sync").status_code == 200
            stream = client.get("/stream")
            assert stream.text.count("data:") == 20
            assert client.get("/boom").status_code == 500
        snap = wait_until(lambda s: s.active == 0, what="drained")
    check_balanced(snap)
    assert snap.endpoints["/items/{item_id}"].completed == 1
    assert snap.endpoints["/stream"].completed == 1
    assert snap.endpoints["/boom"].failed == 1
    assert get_runtime() is None, "lifespan shutdown stopped the monitor"


def test_admission_gate_queues_and_rejects_on_trio() -> None:
    """max_concurrency=1, max_queue=1 on trio: one inside, one queued, the third turned away
    with 503; releasing lets the queued one in, and everything drains."""
    release = threading.Event()
    app = trio_app(release, max_concurrency=1, max_queue=1)
    with hypercorn_on_trio(app) as url:
        results: list[int] = []

        def get(path: str) -> None:
            results.append(httpx.get(f"{url}{path}", timeout=HOLD_LIMIT).status_code)

        first = threading.Thread(target=get, args=("/hold",))
        first.start()
        wait_until(lambda s: s.active == 1, what="one inside")
        second = threading.Thread(target=get, args=("/hold",))
        second.start()
        wait_until(lambda s: s.queue_depth == 1, what="one queued")
        get("/fast")
        assert results == [503]
        release.set()
        first.join(HOLD_LIMIT)
        second.join(HOLD_LIMIT)
        snap = wait_until(lambda s: s.active == 0 and s.queue_depth == 0, what="drained")
    assert sorted(results) == [200, 200, 503]
    check_balanced(snap)
    assert snap.endpoints["/hold"].completed == 2
    assert snap.endpoints[UNMATCHED].rejected == 1  # turned away before routing
