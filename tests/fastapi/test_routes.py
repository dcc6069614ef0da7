"""Names come from the route that handled each request: a differential test on a large app.

Every handler of the app below answers with the template it was declared under (header
``x-route``), so the route that really handled a request is known from the response. concmon's
name for the same request (the endpoint whose total grew) must be exactly that template; a
request that no handler answered (404, slash redirect, 405) is checked against the router's
own outcome. The app has nested and twice-included routers, mounts of a Starlette app, of a
FastAPI app, under a path parameter and of an opaque ASGI app, a Host route, converters, a
route class with its own matching, redirect_slashes, a root_path and routes added after
``install``.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Host, Match, Mount, Route, Router, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from concmon import UNMATCHED, get_monitor
from concmon.testing import check_balanced
from concmon_fastapi import install
from tests.servers import uvicorn_thread


def _answer(template: str) -> Any:
    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("x", headers={"x-route": template})

    return endpoint


class CountingRoute(Route):
    """A route class with its own matching (a path prefix), counting how often it is asked."""

    asked = 0

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and scope["path"].startswith("/custom/"):
            CountingRoute.asked += 1
            return Match.FULL, {"endpoint": self.endpoint, "path_params": {}}
        return Match.NONE, {}


async def _opaque(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("opaque", headers={"x-route": "/static/{path}"})(scope, receive, send)


async def _ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.close()


def build() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    def api(method: str, path: str, router: Any = app, full: str | None = None) -> None:
        template = full or path

        async def endpoint() -> Response:
            return PlainTextResponse("x", headers={"x-route": template})

        router.add_api_route(path, endpoint, methods=[method])

    api("GET", "/items/{item_id}")
    api("GET", "/items/special")  # shadowed by the parameter route declared first
    api("PUT", "/items/{item_id}")
    api("POST", "/orders")
    api("GET", "/num/{n:int}")
    api("GET", "/files/{rest:path}")
    api("GET", "/slash/")
    app.add_route("/plain/{x}", _answer("/plain/{x}"))

    users = APIRouter()
    deep = APIRouter()
    api("GET", "/users/{uid}", users, "{prefix}/users/{uid}")
    api("DELETE", "/users/{uid}", users, "{prefix}/users/{uid}")
    api("GET", "/deep", deep, "{prefix}/n/deep")
    users.include_router(deep, prefix="/n")
    # One router included under two prefixes: one route object, two templates.
    for prefix in ("/v1", "/v2"):
        app.include_router(users, prefix=prefix)

    inner = Starlette(
        routes=[
            Route("/", _answer("/sub/")),
            Route("/pages/{name}", _answer("/sub/pages/{name}"), methods=["GET"]),
        ]
    )
    app.mount("/sub", inner)
    sub_api = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    api("GET", "/things/{t}", sub_api, "/fa/things/{t}")
    app.mount("/fa", sub_api)
    app.mount(
        "/t/{tenant}", Router([Route("/docs/{doc:int}", _answer("/t/{tenant}/docs/{doc:int}"))])
    )
    app.mount("/static", _opaque)
    app.router.routes.append(
        Host("api.example.test", Router([Route("/hosted", _answer("/hosted"))]))
    )
    app.router.routes.append(CountingRoute("/custom/", _answer("/custom/")))
    app.router.routes.append(WebSocketRoute("/ws/{room}", _ws))
    install(app)
    api("GET", "/late/{n}")  # added after install
    return app


def _expected(response: httpx.Response, path: str) -> str:
    template = response.headers.get("x-route")
    if template is not None:
        if "{prefix}" in template:
            return template.replace("{prefix}", path[:3])
        return template
    if response.status_code in (404, 307):
        return UNMATCHED
    raise AssertionError(f"{path}: {response.status_code} answered by no handler")


async def _named(client: httpx.AsyncClient, method: str, path: str, **kw: Any) -> tuple[str, str]:
    """(the name concmon counted the request under, the template that handled it)."""
    before = {n: e.total for n, e in get_monitor().snapshot().endpoints.items()}
    response = await client.request(method, path, **kw)
    after = {n: e.total for n, e in get_monitor().snapshot().endpoints.items()}
    grown = [n for n, total in after.items() if total != before.get(n, 0)]
    assert len(grown) == 1, (path, grown)
    if response.status_code == 405:  # answered by the route that matched the path only
        return grown[0], grown[0]
    return grown[0], _expected(response, path)


@pytest.fixture
def app() -> FastAPI:
    """A fresh app per test: each test starts from a fresh process monitor."""
    return build()


def _client(app: FastAPI, base_url: str = "http://127.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


SEGMENTS = st.sampled_from(
    [
        "items",
        "special",
        "1",
        "x",
        "v1",
        "v2",
        "users",
        "n",
        "deep",
        "sub",
        "pages",
        "t",
        "acme",
        "docs",
        "42",
        "static",
        "orders",
        "num",
        "files",
        "a.b",
        "plain",
        "fa",
        "things",
        "custom",
        "late",
        "slash",
        "hosted",
    ]
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(SEGMENTS, min_size=1, max_size=4),
    st.booleans(),
    st.sampled_from(["GET", "PUT", "DELETE"]),
)
def test_the_name_is_the_route_that_handled_the_request(
    app: FastAPI, segments: list[str], slash: bool, method: str
) -> None:
    path = "/" + "/".join(segments) + ("/" if slash else "")

    async def run() -> tuple[str, str]:
        async with _client(app) as c:
            return await _named(c, method, path)

    name, handled = run_pair(run)
    assert name == handled, path


CASES = [
    ("GET", "/items/7", "/items/{item_id}"),
    ("GET", "/items/special", "/items/{item_id}"),
    ("PUT", "/items/7", "/items/{item_id}"),
    ("POST", "/items/7", "/items/{item_id}"),  # 405 from the route that matched the path
    ("GET", "/orders", "/orders"),  # 405
    ("GET", "/num/12", "/num/{n:int}"),
    ("GET", "/num/twelve", UNMATCHED),
    ("GET", "/files/a/b/c.txt", "/files/{rest:path}"),
    ("GET", "/slash", UNMATCHED),  # the router's own redirect to /slash/
    ("GET", "/plain/3", "/plain/{x}"),
    ("GET", "/v1/users/5", "/v1/users/{uid}"),
    ("GET", "/v2/users/5", "/v2/users/{uid}"),
    ("DELETE", "/v2/users/5", "/v2/users/{uid}"),
    ("GET", "/v2/n/deep", "/v2/n/deep"),
    ("GET", "/sub/", "/sub/"),
    ("GET", "/sub/pages/about", "/sub/pages/{name}"),
    ("GET", "/sub/nothing", UNMATCHED),
    ("GET", "/fa/things/9", "/fa/things/{t}"),
    ("GET", "/t/acme/docs/4", "/t/{tenant}/docs/{doc:int}"),
    ("GET", "/static/app.js", "/static/{path}"),
    ("GET", "/custom/anything", "/custom/"),
    ("GET", "/late/3", "/late/{n}"),
    ("GET", "/nowhere", UNMATCHED),
]


@pytest.mark.parametrize(("method", "path", "template"), CASES)
def test_each_rule_of_the_router_gives_the_handling_route(
    app: FastAPI, method: str, path: str, template: str
) -> None:
    async def run() -> tuple[str, str]:
        async with _client(app) as c:
            return await _named(c, method, path)

    assert run_pair(run) == (template, template)


def test_a_host_route_names_the_route_under_it(app: FastAPI) -> None:
    async def run() -> tuple[str, str]:
        async with _client(app, "http://api.example.test") as c:
            return await _named(c, "GET", "/hosted")

    assert run_pair(run) == ("/hosted", "/hosted")


def run_pair(coro: Any) -> tuple[str, str]:
    result: tuple[str, str] = asyncio.run(coro())
    return result


def test_a_route_with_its_own_matching_is_asked_once_per_request(app: FastAPI) -> None:
    """Nothing in concmon asks a route whether it matches: the router asks once."""
    asked = CountingRoute.asked

    async def run() -> tuple[str, str]:
        async with _client(app) as c:
            return await _named(c, "GET", "/custom/x")

    assert run_pair(run) == ("/custom/", "/custom/")
    assert CountingRoute.asked == asked + 1


def test_fresh_ids_over_a_real_server_with_a_root_path(app: FastAPI) -> None:
    """Through uvicorn with --root-path: 200 ids never seen before, one name each, balanced."""
    before = get_monitor().snapshot().endpoints.get("/items/{item_id}")
    with uvicorn_thread(app, root_path="/prefix") as url:
        with httpx.Client(base_url=url, timeout=10) as client:
            for i in range(200):
                response = client.get(f"/items/{i * 7919}")
                assert response.headers["x-route"] == "/items/{item_id}"
            # The server puts the root path in front of every path; the router matches below it.
            assert client.get("/sub/pages/a").headers["x-route"] == "/sub/pages/{name}"
        snap = get_monitor().snapshot()
    total = snap.endpoints["/items/{item_id}"].total - (before.total if before else 0)
    assert total == 200
    assert not [n for n in snap.endpoints if "7919" in n or n.startswith("/items/1")]
    check_balanced(snap)


def test_a_request_before_routing_is_counted_as_routing() -> None:
    """While a middleware in front of the router holds a request, it is active and routing,
    in no endpoint; once routed it is in its route's endpoint, and nothing is lost."""
    gate = asyncio.Event()
    inside = asyncio.Event()

    class Slow:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope["path"] == "/held":
                inside.set()
                await gate.wait()
            await self.app(scope, receive, send)

    app = Starlette(routes=[Route("/held", _answer("/held"))])
    app.add_middleware(Slow)
    install(app)

    async def run() -> None:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as c:
            task = asyncio.create_task(c.get("/held"))
            await inside.wait()
            now = get_monitor().snapshot()
            assert now.routing == 1 and now.active >= 1
            assert now.endpoints.get("/held") is None or now.endpoints["/held"].active == 0
            gate.set()
            assert (await task).headers["x-route"] == "/held"

    asyncio.run(run())
    snap = get_monitor().snapshot()
    assert snap.routing == 0
    assert snap.endpoints["/held"].completed >= 1


def test_an_app_whose_routes_tell_their_names_is_freed_at_zero_references(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The routes concmon makes tell their names keep nothing alive: with the collector off the
    app goes as soon as its last reference does, and its routes (which Starlette itself keeps
    in cycles) go with the next collection, as without concmon; nothing global holds them, not
    even the thread still starting the reporting (held here until the end)."""
    import gc
    import weakref

    from concmon import hold_monitor
    from concmon_fastapi import middleware

    starting = threading.Event()

    def slow_start() -> Any:
        starting.wait(30)
        return hold_monitor()

    monkeypatch.setattr(middleware, "hold_monitor", slow_start)

    web = Starlette(
        routes=[Route("/x", _answer("/x")), Mount("/m", routes=[Route("/y", _answer("/m/y"))])]
    )
    install(web)

    async def run(target: Starlette) -> None:
        async with _client(target) as c:
            assert (await c.get("/m/y")).headers["x-route"] == "/m/y"

    asyncio.run(run(web))
    routes = [weakref.ref(r) for r in web.routes]
    gone = weakref.ref(web)
    gc.collect()
    gc.disable()
    try:
        del web
        assert gone() is None
    finally:
        gc.enable()
    gc.collect()
    try:
        assert all(r() is None for r in routes)
    finally:
        starting.set()
