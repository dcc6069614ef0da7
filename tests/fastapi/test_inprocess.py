"""The middleware driven directly (no socket): disconnects, cancellation, odd inputs, options."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from fastapi import FastAPI
from uvicorn.protocols.utils import ClientDisconnected

from concmon import ConfigError
from concmon.testing import check_balanced
from concmon_fastapi import SCOPE_MARK, ConcMonMiddleware, install
from tests.fastapi.conftest import snap


def scope(path: str, method: str = "GET") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def discard(message: Any) -> None:
    return None


def app_with(**options: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    @app.get("/wait")
    async def wait() -> None:
        await asyncio.sleep(30)

    install(app, loop_lag_interval=None, **options)
    return app


def test_send_raising_oserror_counts_cancelled_and_propagates() -> None:
    """A client gone at send() (uvicorn raises ClientDisconnected, an OSError): cancelled."""
    app = app_with()

    async def gone(message: Any) -> None:
        if message["type"] == "http.response.body":
            raise ClientDisconnected()

    with pytest.raises(ClientDisconnected):
        asyncio.run(app(scope("/items/1"), receive, gone))
    stats = check_balanced(snap()).endpoints["/items/{item_id}"]
    assert (stats.completed, stats.cancelled, stats.failed) == (1, 1, 0)


class _GoneAtHead:
    """A server ``send`` that is a callable object and fails on the response head."""

    async def __call__(self, message: Any) -> None:
        if message["type"] == "http.response.start":
            raise ClientDisconnected()


async def _gone_at_head(message: Any) -> None:
    if message["type"] == "http.response.start":
        raise ClientDisconnected()


@pytest.mark.parametrize("server_send", [_gone_at_head, _GoneAtHead()], ids=["function", "object"])
def test_send_raising_oserror_at_the_head_counts_cancelled(server_send: Any) -> None:
    """The head is passed to the server's send without a frame of ours: still cancelled."""
    app = app_with()
    with pytest.raises(ClientDisconnected):
        asyncio.run(app(scope("/items/1"), receive, server_send))
    stats = check_balanced(snap()).endpoints["/items/{item_id}"]
    assert (stats.completed, stats.cancelled, stats.failed) == (1, 1, 0)


def test_oserror_of_the_app_after_the_head_counts_failed() -> None:
    """An upstream refusing a connection mid-response is the app's failure, not a client gone."""
    from starlette.responses import StreamingResponse

    app = FastAPI()

    @app.get("/proxy")
    async def proxy() -> StreamingResponse:
        async def upstream() -> Any:
            raise ConnectionRefusedError("upstream refused")
            yield b""  # pragma: no cover - makes this an async generator

        return StreamingResponse(upstream())

    install(app, loop_lag_interval=None)

    async def client_stays() -> dict[str, Any]:
        await asyncio.sleep(30)  # the client neither sends more nor leaves
        return {"type": "http.disconnect"}

    with pytest.raises(ConnectionRefusedError):
        asyncio.run(asyncio.wait_for(app(scope("/proxy"), client_stays, discard), 10))
    stats = check_balanced(snap()).endpoints["/proxy"]
    assert (stats.completed, stats.cancelled, stats.failed) == (1, 0, 1)


def test_cancelled_request_task_counts_cancelled_and_reraises() -> None:
    """Cancelling the request's task (server shutdown) re-raises and counts cancelled."""
    app = app_with()

    async def run() -> None:
        task = asyncio.create_task(app(scope("/wait"), receive, discard))
        for _ in range(1000):
            await asyncio.sleep(0.001)
            if snap().active == 1:
                break
        assert snap().active == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    stats = check_balanced(snap()).endpoints["/wait"]
    assert (stats.completed, stats.cancelled, stats.failed) == (1, 1, 0)


def test_failing_status_rule_still_closes_the_request() -> None:
    """A status rule that raises cannot leave the request active: it ends failed."""

    def rule(status: int) -> bool:
        raise ValueError("bad rule")

    app = app_with(failed_status=rule)
    with pytest.raises(ValueError, match="bad rule"):
        asyncio.run(app(scope("/items/1"), receive, discard))
    assert check_balanced(snap()).endpoints["/items/{item_id}"].failed == 1


def test_failed_status_threshold_is_configurable() -> None:
    """failed_status=400 counts a 404 or 422 as failed; the default would not."""
    app = app_with(failed_status=400)

    async def run() -> None:
        await app(scope("/items/not-a-number"), receive, discard)  # 422
        await app(scope("/items/3"), receive, discard)

    asyncio.run(run())
    stats = check_balanced(snap()).endpoints["/items/{item_id}"]
    assert (stats.total, stats.failed) == (2, 1)


def test_ten_thousand_scanner_paths_keep_series_bounded() -> None:
    """10,000 random paths and odd methods: routes + one <unmatched>, counts preserved."""
    app = app_with()
    rng = random.Random(7)
    methods = ["GET", "POST", "PROPFIND", "BREW", "DELETE", "OPTIONS"]

    async def scan() -> None:
        for i in range(10_000):
            parts = "/".join(str(rng.randrange(10**6)) for _ in range(rng.randrange(1, 4)))
            await app(scope(f"/{parts}.php", rng.choice(methods)), receive, discard)
            if i % 10 == 0:
                await app(scope(f"/items/{i}"), receive, discard)

    asyncio.run(scan())
    after = check_balanced(snap())
    assert set(after.endpoints) == {"<unmatched>", "/items/{item_id}"}
    assert after.endpoints["<unmatched>"].total == 10_000
    assert after.endpoints["/items/{item_id}"].total == 1_000


def test_names_override_and_excluded_paths() -> None:
    """names= renames a template; exclude_paths (exact or prefix*) are not counted at all."""
    app = app_with(names={"/items/{item_id}": "item"}, exclude_paths=["/health", "/static/*"])

    async def run() -> None:
        await app(scope("/items/1"), receive, discard)
        await app(scope("/health"), receive, discard)
        await app(scope("/static/app.js"), receive, discard)

    asyncio.run(run())
    after = check_balanced(snap())
    assert set(after.endpoints) == {"item"}
    assert after.total == 1


def test_scope_marked_by_an_outer_instance_passes_through() -> None:
    """A request already counted by an outer instance is not counted again."""
    inner = ConcMonMiddleware(app_with(), loop_lag_interval=None)
    outer = ConcMonMiddleware(inner, loop_lag_interval=None)
    asyncio.run(outer(scope("/items/1"), receive, discard))
    assert check_balanced(snap()).total == 1
    marked = scope("/items/2")
    marked[SCOPE_MARK] = True
    asyncio.run(inner(marked, receive, discard))
    assert snap().total == 1


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"max_concurrency": 0}, "max_concurrency=0 is not valid: expected a whole number of at"),
        ({"max_concurrency": "10"}, "max_concurrency='10' is not valid: expected a whole number"),
        ({"max_queue": 5}, "need max_concurrency"),
        ({"max_concurrency": 2, "queue_timeout": -1}, "queue_timeout=-1 is not valid: expected a"),
        ({"failed_status": 99}, "failed_status=99 is not valid: expected a status code"),
        ({"json_path": "concurrency"}, "json_path='concurrency' is not valid: expected a path"),
        ({"exclude_paths": ["health"]}, "exclude_paths=['health'] is not valid: expected paths"),
        ({"metrics_allow": ["not-an-ip"]}, "metrics_allow=['not-an-ip'] is not valid"),
        ({"names": {"/x": ""}}, "names={'/x': ''} is not valid: expected a mapping of route"),
        ({"loop_lag_interval": True}, "loop_lag_interval=True is not valid"),
        ({"prometheus": True, "json_path": "/metrics"}, "json_path and metrics_path are both"),
        ({"max_concurency": 3}, "unknown option 'max_concurency'; expected one of"),
    ],
)
def test_bad_options_fail_at_install_with_one_line(options: dict[str, Any], fragment: str) -> None:
    """Every bad option value is a one-line ConfigError naming the option, at install time."""
    with pytest.raises(ConfigError) as info:
        install(FastAPI(), **options)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_install_refuses_something_that_is_not_a_starlette_app() -> None:
    """install() on a plain ASGI callable points to ConcMonMiddleware instead."""

    async def bare(scope: Any, receive: Any, send: Any) -> None:
        return None

    with pytest.raises(ConfigError, match="ConcMonMiddleware"):
        install(bare)


def test_middle_chunks_reach_the_server_send_untouched() -> None:
    """Each chunk between the first (timed once the server took it) and the last gets the
    server's own awaitable back (no coroutine of ours); active until the last one."""
    from concmon_fastapi import ConcMonMiddleware

    class Sent:
        def __await__(self) -> Any:
            return iter(())

    handed: list[Sent] = []
    returned: list[object] = []
    active_before_last: list[int] = []

    def server_send(message: Any) -> Sent:
        handed.append(Sent())
        return handed[-1]

    async def streaming(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(3):
            returned.append(send({"type": "http.response.body", "body": b"x", "more_body": True}))
            await returned[-1]  # type: ignore[misc]
        active_before_last.append(snap().active)
        await send({"type": "http.response.body", "body": b""})

    asyncio.run(
        ConcMonMiddleware(streaming, loop_lag_interval=None)(scope("/s"), receive, server_send)
    )
    assert returned[1:] == handed[2:4]
    assert all(got is sent for got, sent in zip(returned[1:], handed[2:4], strict=True))
    assert active_before_last == [1]
    stats = check_balanced(snap()).endpoints["/{path:path}"]
    assert (stats.completed, stats.failed, stats.cancelled) == (1, 0, 0)


def _gone_at_body(n: int) -> Callable[[Any], Awaitable[None]]:
    """A server ``send`` whose client hangs up at the ``n``-th body message (uvicorn's error)."""
    bodies = 0

    async def send(message: Any) -> None:
        nonlocal bodies
        if message["type"] == "http.response.body":
            bodies += 1
            if bodies == n:
                raise ClientDisconnected()

    return send


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
def test_client_gone_at_a_middle_chunk_counts_cancelled(spec_version: str) -> None:
    """The server's send raising OSError mid-stream (Starlette turns it into ClientDisconnect
    on ASGI 2.4) ends the request cancelled, not failed, and the error still propagates."""
    from starlette.responses import StreamingResponse

    app = FastAPI()

    @app.get("/feed")
    async def feed() -> StreamingResponse:
        async def chunks() -> Any:
            for i in range(10):
                yield f"data: {i}\n\n".encode()

        return StreamingResponse(chunks(), media_type="text/event-stream")

    install(app, loop_lag_interval=None)
    gone_after_two = _gone_at_body(3)

    async def client_stays() -> dict[str, Any]:
        await asyncio.sleep(30)  # neither more body nor a disconnect message: only send fails
        return {"type": "http.disconnect"}

    request = scope("/feed")
    request["asgi"]["spec_version"] = spec_version
    with pytest.raises(Exception) as raised:
        asyncio.run(asyncio.wait_for(app(request, client_stays, gone_after_two), 10))
    assert type(raised.value).__name__ in ("ClientDisconnected", "ClientDisconnect")
    stats = check_balanced(snap()).endpoints["/feed"]
    assert (stats.completed, stats.cancelled, stats.failed) == (1, 1, 0)


def test_client_gone_inside_a_task_group_counts_cancelled() -> None:
    """A body streamed from a task group's task: the server's OSError arrives wrapped in an
    ExceptionGroup, and the request still counts cancelled."""
    from concmon_fastapi import ConcMonMiddleware

    async def streaming(scope: Any, receive: Any, send: Any) -> None:
        async def body() -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for _ in range(5):
                await send({"type": "http.response.body", "body": b"x", "more_body": True})
            await send({"type": "http.response.body", "body": b""})

        async with asyncio.TaskGroup() as group:
            group.create_task(body())

    gone_at_the_third = _gone_at_body(3)
    middleware = ConcMonMiddleware(streaming, loop_lag_interval=None)
    with pytest.raises(ExceptionGroup):
        asyncio.run(middleware(scope("/s"), receive, gone_at_the_third))
    stats = check_balanced(snap()).endpoints["/{path:path}"]
    assert (stats.completed, stats.cancelled, stats.failed) == (1, 1, 0)
