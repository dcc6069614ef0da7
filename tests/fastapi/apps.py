"""Applications the adapter tests serve: one endpoint per behaviour a counter must survive."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

import anyio
from fastapi import APIRouter, BackgroundTasks, FastAPI, Request, Response, WebSocket
from fastapi.responses import StreamingResponse
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from concmon_fastapi import install

HOLD_LIMIT = 30.0  # no endpoint waits longer than this, whatever a test does


async def released(event: threading.Event) -> None:
    """Wait until a test sets ``event`` (at most HOLD_LIMIT), on any anyio backend."""
    deadline = time.monotonic() + HOLD_LIMIT
    while not event.is_set() and time.monotonic() < deadline:
        await anyio.sleep(0.01)


class Latch:
    """A thread-safe event both the test thread and the server's loop can wait on."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        deadline = time.monotonic() + HOLD_LIMIT
        while not self._event.is_set():
            if time.monotonic() > deadline:
                raise TimeoutError("latch never released")
            await asyncio.sleep(0.005)

    def wait_sync(self) -> None:
        if not self._event.wait(HOLD_LIMIT):
            raise TimeoutError("latch never released")


class Hooks:
    """Latches and records one application's endpoints share with the test."""

    def __init__(self) -> None:
        self.release = Latch()
        self.background_started = Latch()
        self.background_release = Latch()
        self.background_done = Latch()
        self.stream_release = Latch()
        self.stream_closed = Latch()
        self.disconnect_seen = Latch()
        self.contextvar_values: list[str] = []


request_tag: ContextVar[str] = ContextVar("request_tag", default="unset")


def make_app(hooks: Hooks, **options: Any) -> FastAPI:
    """A FastAPI app with every kind of endpoint, instrumented with ``options``."""
    app = FastAPI()

    @app.get("/fast")
    async def fast() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/slow")
    async def slow() -> dict[str, bool]:
        await hooks.release.wait()
        return {"ok": True}

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    @app.put("/items/{item_id}")
    async def put_item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    @app.get("/status/{code}")
    async def status(code: int) -> Response:
        return Response(status_code=code)

    @app.get("/sync")
    def sync_endpoint() -> dict[str, str]:
        hooks.release.wait_sync()
        return {"thread": threading.current_thread().name}

    @app.get("/sync-fast")
    def sync_fast() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/block")
    async def block(seconds: float = 0.3) -> dict[str, bool]:
        time.sleep(seconds)  # the mistake the loop-lag probe exists to show
        return {"ok": True}

    @app.get("/stream")
    async def stream(chunks: int = 3) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            try:
                yield b"first\n"
                await hooks.stream_release.wait()
                for i in range(chunks):
                    yield f"chunk {i}\n".encode()
                    await asyncio.sleep(0)
            finally:
                hooks.stream_closed.set()

        return StreamingResponse(body(), media_type="text/plain")

    @app.get("/sse")
    async def sse() -> StreamingResponse:
        async def events() -> AsyncIterator[bytes]:
            for i in range(3):
                yield f"data: {i}\n\n".encode()
                await asyncio.sleep(0.01)

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.get("/background")
    async def background(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(slow_job, hooks)
        return {"queued": True}

    @app.get("/disconnect")
    async def disconnect(request: Request) -> dict[str, bool]:
        deadline = time.monotonic() + HOLD_LIMIT
        while not await request.is_disconnected():
            if time.monotonic() > deadline:
                raise TimeoutError("client never left")
            await asyncio.sleep(0.01)
        hooks.disconnect_seen.set()
        return {"gone": True}

    @app.get("/context")
    async def context() -> dict[str, str]:
        value = request_tag.get()
        hooks.contextvar_values.append(value)
        return {"tag": value}

    @app.websocket("/ws/{room}")
    async def ws(websocket: WebSocket, room: str) -> None:
        await websocket.accept()
        while True:
            text = await websocket.receive_text()
            if text == "bye":
                await websocket.close()
                return
            await websocket.send_text(f"{room}:{text}")

    router = APIRouter()

    @router.get("/users/{user_id}")
    async def user(user_id: str) -> dict[str, str]:
        return {"user": user_id}

    app.include_router(router, prefix="/api")

    async def sub_page(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.path_params.get("name", "index"))

    sub = Starlette(
        routes=[Route("/", sub_page), Route("/pages/{name}", sub_page)],
    )
    app.mount("/sub", sub)
    install(app, loop_lag_interval=0.05, **options)
    return app


async def slow_job(hooks: Hooks) -> None:
    hooks.background_started.set()
    await hooks.background_release.wait()
    hooks.background_done.set()


def plain_asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> Any:
    """A bare ASGI application with no router and no lifespan support."""

    async def run() -> None:
        if scope["type"] == "lifespan":
            raise RuntimeError("this application does not speak lifespan")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"plain"})

    return run()
