"""The ready-made name resolvers on real Litestar and Quart apps under uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import websockets.sync.client
from litestar.params import FromPath

from concmon_fastapi import ConcMonMiddleware
from concmon_fastapi.resolvers import litestar_name, quart_name_for
from tests.fastapi.conftest import drained, snap, wait_until
from tests.servers import uvicorn_thread


class Held:
    """An event a held handler waits on, settable from the test thread (bounded wait)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    async def wait(self) -> None:
        for _ in range(3000):
            if self.release.is_set():
                return
            await asyncio.sleep(0.01)


def litestar_app(held: Held) -> Any:
    from litestar import Litestar, Router, get, websocket_listener

    @get("/items/{item_id:int}")
    async def item(item_id: FromPath[int]) -> dict[str, int]:
        return {"id": item_id}

    @get("/slow")
    async def slow() -> str:
        await held.wait()
        return "done"

    @websocket_listener("/ws")
    async def echo(data: str) -> str:
        return data

    api = Router(path="/api", route_handlers=[item])
    return Litestar(route_handlers=[api, slow, echo])


def quart_app(held: Held) -> Any:
    from quart import Blueprint, Quart, websocket

    app = Quart(__name__)
    api = Blueprint("api", __name__, url_prefix="/api")

    @api.get("/items/<int:item_id>")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.get("/slow")
    async def slow() -> str:
        await held.wait()
        return "done"

    @app.websocket("/ws")
    async def echo() -> None:
        await websocket.send(await websocket.receive())

    app.register_blueprint(api)
    return app


FRAMEWORKS = {
    "litestar": (litestar_app, lambda app: litestar_name, "/api/items/{item_id}", "/ws"),
    "quart": (quart_app, quart_name_for, "/api/items/<int:item_id>", "/ws"),
}


@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_requests_are_named_by_the_route_their_router_chose(framework: str) -> None:
    """Item requests under their route template (prefix included), a held request under its
    template once its response starts and balanced after, a 404 unmatched, a WebSocket
    named and apart from the HTTP counts; lifespan passes through."""
    build, resolver, template, ws_path = FRAMEWORKS[framework]
    held = Held()
    app = build(held)
    wrapped = ConcMonMiddleware(app, name_for=resolver(app))
    with uvicorn_thread(wrapped) as base:
        with httpx.Client(base_url=base, timeout=30) as client:
            for item_id in (1, 2, 3):
                assert client.get(f"/api/items/{item_id}").json() == {"id": item_id}
            assert client.get("/no/such/path").status_code == 404
            with ThreadPoolExecutor(3) as pool:
                futures = [pool.submit(client.get, "/slow") for _ in range(3)]
                wait_until(lambda s: s.active == 3, 15, "three held")
                held.release.set()
                assert all(f.result().text.endswith("done") for f in futures)
        url = base.replace("http://", "ws://") + ws_path
        with websockets.sync.client.connect(url, open_timeout=10) as ws:
            ws.send("hi")
            assert ws.recv(10) == "hi"
    final = drained()
    assert final.endpoints[template].completed == 3
    assert final.endpoints["/slow"].completed == 3
    assert final.endpoints["<unmatched>"].completed == 1
    assert not any("/no/such" in name for name in final.endpoints)
    assert final.websockets[ws_path].completed == 1
    assert final.total == 7


def test_a_name_for_answering_none_counts_the_request_as_routing_until_it_can() -> None:
    """A name_for that knows nothing yet leaves the request in routing, not under a name."""
    held = Held()
    app = litestar_app(held)
    with uvicorn_thread(ConcMonMiddleware(app, name_for=litestar_name)) as base:
        with httpx.Client(base_url=base, timeout=30) as client, ThreadPoolExecutor(1) as pool:
            future = pool.submit(client.get, "/slow")
            current = wait_until(lambda s: s.active == 1, 15, "held")
            assert (current.routing, current.endpoints.get("/slow")) == (1, None)
            held.release.set()
            assert future.result().status_code == 200
    assert snap().routing == 0
    assert drained().endpoints["/slow"].completed == 1
