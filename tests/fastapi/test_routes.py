"""The compiled route table agrees with the router it was compiled from, path for path."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute

from concmon_fastapi.routes import PATH_CACHE_SIZE, UNMATCHED, RouteTable, find_router
from tests.fastapi.test_inprocess import discard, receive, scope


async def _page(request: Any) -> PlainTextResponse:
    return PlainTextResponse("x")


async def _opaque(scope: Any, receive: Any, send: Any) -> None:
    await PlainTextResponse("opaque")(scope, receive, send)


async def _ws(websocket: Any) -> None:
    await websocket.close()


def build() -> tuple[FastAPI, dict[int, str]]:
    """An app with every routing rule that matters, and the template of every route object."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    templates: dict[int, str] = {}

    def record(path: str, template: str) -> None:
        for route in app.router.routes:
            if getattr(route, "path", None) == path and id(route) not in templates:
                templates[id(route)] = template

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> None: ...

    record("/items/{item_id}", "/items/{item_id}")

    @app.get("/items/special")  # shadowed by the parameter route declared first
    async def special() -> None: ...

    @app.put("/items/{item_id}")
    async def put_item(item_id: str) -> None: ...

    @app.post("/orders")
    async def orders() -> None: ...

    @app.get("/num/{n:int}")
    async def num(n: int) -> None: ...

    @app.get("/files/{rest:path}")
    async def files(rest: str) -> None: ...

    for route in app.router.routes:
        path = getattr(route, "path", None)
        if path is not None:
            templates.setdefault(id(route), path)

    router = APIRouter()

    @router.get("/users/{uid}")
    async def user(uid: str) -> None: ...

    @router.delete("/users/{uid}")
    async def delete_user(uid: str) -> None: ...

    nested = APIRouter()

    @nested.get("/deep")
    async def deep() -> None: ...

    router.include_router(nested, prefix="/n")
    app.include_router(router, prefix="/api")
    templates[id(router.routes[0])] = "/api/users/{uid}"
    templates[id(router.routes[1])] = "/api/users/{uid}"
    templates[id(nested.routes[0])] = "/api/n/deep"

    inner = Starlette(routes=[Route("/", _page), Route("/pages/{name}", _page, methods=["GET"])])
    mount = Mount("/sub", app=inner)
    tenant_inner = Starlette(routes=[Route("/docs/{doc:int}", _page)])
    tenant = Mount("/t/{tenant}", app=tenant_inner)
    opaque = Mount("/static", app=_opaque)
    app.router.routes.extend([mount, tenant, opaque, WebSocketRoute("/ws/{room}", _ws)])
    templates[id(inner.router.routes[0])] = "/sub/"
    templates[id(inner.router.routes[1])] = "/sub/pages/{name}"
    templates[id(tenant_inner.router.routes[0])] = "/t/{tenant}/docs/{doc:int}"
    # FastAPI's router records a mount as the scope's endpoint (the mounted app), not as its
    # route; a mounted router that matched nothing leaves it there.
    templates[id(inner)] = UNMATCHED
    templates[id(tenant_inner)] = UNMATCHED
    templates[id(_opaque)] = "/static/{path}"
    return app, templates


APP, TEMPLATES = build()
TABLE = RouteTable(find_router(APP))


def routed_name(path: str, method: str) -> str:
    """The template of the route the real router picked (what it left in the scope)."""
    request = scope(path, method)
    asyncio.run(APP(request, receive, discard))
    picked = request.get("route", request.get("endpoint"))
    return UNMATCHED if picked is None else TEMPLATES[id(picked)]


SEGMENTS = st.sampled_from(
    [
        "items",
        "special",
        "1",
        "x",
        "api",
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
        "",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(SEGMENTS, min_size=0, max_size=5),
    slash=st.booleans(),
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "BREW"]),
)
def test_table_picks_the_route_the_router_picks(parts: list[str], slash: bool, method: str) -> None:
    """For any path and method, the precompiled table names the route Starlette routes to."""
    path = "/" + "/".join(parts) + ("/" if slash and parts else "")
    expected = routed_name(path, method)
    assert TABLE.name(scope(path, method)) == expected, (method, path)


def test_known_templates() -> None:
    """Spot checks of the rules: order, 405, converters, mounts, prefixes, WebSockets."""
    cases = {
        ("GET", "/items/special"): "/items/{item_id}",
        ("PUT", "/items/9"): "/items/{item_id}",
        ("PATCH", "/items/9"): "/items/{item_id}",
        ("GET", "/num/12"): "/num/{n:int}",
        ("GET", "/num/twelve"): UNMATCHED,
        ("GET", "/files/a/b/c.txt"): "/files/{rest:path}",
        ("DELETE", "/api/users/u"): "/api/users/{uid}",
        ("GET", "/api/n/deep"): "/api/n/deep",
        ("GET", "/sub/pages/p"): "/sub/pages/{name}",
        ("GET", "/sub/nothing"): UNMATCHED,
        ("GET", "/t/acme/docs/3"): "/t/{tenant}/docs/{doc:int}",
        ("GET", "/static/css/site.css"): "/static/{path}",
    }
    for (method, path), name in cases.items():
        assert TABLE.name(scope(path, method)) == name, (method, path)
        assert routed_name(path, method) == name, (method, path)
    ws = scope("/ws/lobby")
    ws["type"] = "websocket"
    assert TABLE.name(ws) == "/ws/{room}"


def test_routes_added_after_compiling_are_picked_up() -> None:
    """A route registered after the table was built is found, not counted as unmatched."""
    app = FastAPI()
    table = RouteTable(find_router(app))

    @app.get("/late/{x}")
    async def late(x: str) -> None: ...

    assert table.name(scope("/late/1")) == "/late/{x}"


def test_parameterised_paths_are_remembered_within_a_bound() -> None:
    """Repeated parameterised paths skip the match; the memory stays bounded; 404s stay out."""
    app = FastAPI()

    @app.get("/models/{model}")
    async def model(model: str) -> None: ...

    @app.get("/health")
    async def health() -> None: ...

    table = RouteTable(find_router(app))
    known = table._known["GET"]
    limit = table._known_limit["GET"]
    assert "/health" in known and limit == len(known) + PATH_CACHE_SIZE
    assert table.name(scope("/models/m1")) == "/models/{model}"
    assert known["/models/m1"] == "/models/{model}"
    for i in range(3 * PATH_CACHE_SIZE):
        assert table.name(scope(f"/models/m{i}")) == "/models/{model}"
        assert table.name(scope(f"/scan/{i}")) == UNMATCHED
        assert len(known) <= limit
    assert not any(path.startswith("/scan/") for path in known)
    assert "/health" in known  # the paths without parameters survive every reset
    assert table.name(scope("/models/" + "m" * 400)) == "/models/{model}"  # long: not kept
    assert all(len(path) <= 256 for path in known)
