"""Exact HTTP accounting against a real uvicorn server on 127.0.0.1 and a real async client."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import httpx
import pytest

from concmon.testing import check_balanced
from tests.fastapi.apps import Hooks, make_app
from tests.fastapi.conftest import drained, snap, wait_until
from tests.servers import uvicorn_thread

pytestmark = pytest.mark.slow


@pytest.fixture
def hooks() -> Hooks:
    return Hooks()


@pytest.fixture
def server(hooks: Hooks) -> Iterator[str]:
    with uvicorn_thread(make_app(hooks), limit_concurrency=1000) as url:
        yield url
    hooks.release.set()


def endpoint(name: str) -> dict[str, int]:
    stats = snap().endpoints[name]
    return {k: getattr(stats, k) for k in ("active", "total", "completed", "failed", "cancelled")}


async def _burst(url: str, hooks: Hooks, n: int) -> None:
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        tasks = [asyncio.create_task(client.get("/slow")) for _ in range(n)]
        held = await asyncio.to_thread(
            wait_until, lambda s: s.active == n, 30.0, f"{n} requests active"
        )
        # Taken while all n are held: exact, whichever side of a report boundary it falls.
        assert held.interval_peak == n and held.peak == n
        hooks.release.set()
        responses = await asyncio.gather(*tasks)
    assert all(r.status_code == 200 for r in responses)


def test_two_hundred_concurrent_requests_peak_and_exact_totals(server: str, hooks: Hooks) -> None:
    """200 requests held open together show as 200 active (peak 200) and all finish ok."""
    asyncio.run(_burst(server, hooks, 200))
    after = wait_until(lambda s: s.active == 0, what="drained")
    check_balanced(after)
    assert endpoint("/slow") == {
        "active": 0,
        "total": 200,
        "completed": 200,
        "failed": 0,
        "cancelled": 0,
    }
    # The lifetime peak: a report may have restarted the interval peak since the burst.
    assert after.peak == 200


def test_outcomes_of_raise_5xx_ok_and_sync(server: str) -> None:
    """An exception and a 503 count failed once each; 2xx and sync endpoints count ok."""
    with httpx.Client(base_url=server) as client:
        assert client.get("/status/503").status_code == 503
        assert client.get("/status/404").status_code == 404
        assert client.get("/sync-fast").status_code == 200
        assert client.get("/items/7").status_code == 200
    with httpx.Client(base_url=server) as client:  # uvicorn drops the connection after a crash
        assert client.get("/boom").status_code == 500
    drained()
    assert endpoint("/boom") == {
        "active": 0,
        "total": 1,
        "completed": 1,
        "failed": 1,
        "cancelled": 0,
    }
    assert snap().endpoints["/status/{code}"].failed == 1
    assert snap().endpoints["/status/{code}"].total == 2
    assert endpoint("/sync-fast")["completed"] == 1
    assert snap().failed == 2


def test_sync_endpoint_is_active_while_its_thread_runs(server: str, hooks: Hooks) -> None:
    """A sync endpoint (thread pool) counts as active until it returns, like an async one."""

    async def run() -> None:
        async with httpx.AsyncClient(base_url=server, timeout=30) as client:
            tasks = [asyncio.create_task(client.get("/sync")) for _ in range(5)]
            await asyncio.to_thread(wait_until, lambda s: s.active == 5, 15.0, "5 sync active")
            hooks.release.set()
            assert all(r.status_code == 200 for r in await asyncio.gather(*tasks))

    asyncio.run(run())
    drained()
    assert endpoint("/sync")["completed"] == 5


def test_streaming_response_is_active_until_its_last_chunk(server: str, hooks: Hooks) -> None:
    """A stream consumed fully stays active between chunks and completes ok at the end."""
    with httpx.Client(base_url=server, timeout=30) as client:
        with client.stream("GET", "/stream") as response:
            lines = response.iter_lines()
            assert next(lines) == "first"
            assert wait_until(lambda s: s.endpoints["/stream"].active == 1).active == 1
            hooks.stream_release.set()
            rest = list(lines)
        assert rest == ["chunk 0", "chunk 1", "chunk 2"]
        assert client.get("/sse").text.count("data:") == 3
    drained()
    assert endpoint("/stream") == {
        "active": 0,
        "total": 1,
        "completed": 1,
        "failed": 0,
        "cancelled": 0,
    }
    assert endpoint("/sse")["completed"] == 1


def test_client_leaving_mid_stream_counts_cancelled(server: str, hooks: Hooks) -> None:
    """A client that disconnects mid-stream: active back to 0, cancelled, never failed."""
    with httpx.Client(base_url=server, timeout=30) as client:
        with client.stream("GET", "/stream") as response:
            lines = response.iter_lines()
            assert next(lines) == "first"
            wait_until(lambda s: s.endpoints["/stream"].active == 1)
        # leaving the block closes the connection with the body unread
    hooks.stream_closed.wait_sync()
    drained()
    assert endpoint("/stream") == {
        "active": 0,
        "total": 1,
        "completed": 1,
        "failed": 0,
        "cancelled": 1,
    }


def test_disconnect_seen_through_http_disconnect_is_cancelled(server: str, hooks: Hooks) -> None:
    """An endpoint polling is_disconnected() sees the client leave: cancelled, not a 5xx."""
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"GET /disconnect HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(
            lambda s: (
                s.endpoints.get("/disconnect") is not None
                and s.endpoints["/disconnect"].active == 1
            )
        )
    hooks.disconnect_seen.wait_sync()
    drained()
    assert endpoint("/disconnect") == {
        "active": 0,
        "total": 1,
        "completed": 1,
        "failed": 0,
        "cancelled": 1,
    }


def test_background_task_runs_after_the_request_and_counts_apart(server: str, hooks: Hooks) -> None:
    """The response completes before its background job; the job is active on its own."""
    with httpx.Client(base_url=server, timeout=30) as client:
        assert client.get("/background").json() == {"queued": True}
    hooks.background_started.wait_sync()
    during = wait_until(lambda s: s.endpoints["/background"].completed == 1)
    assert during.endpoints["/background"].active == 0
    assert during.background["slow_job"].active == 1
    assert during.active == 0
    hooks.background_release.set()
    hooks.background_done.wait_sync()
    after = wait_until(lambda s: s.background["slow_job"].completed == 1)
    check_balanced(after)
    assert after.total == 1  # the job never touched the HTTP totals


def test_unmatched_scanner_paths_make_one_series(server: str) -> None:
    """A scanner loop over random paths and odd methods adds one <unmatched> series only."""

    async def scan() -> None:
        async with httpx.AsyncClient(base_url=server, timeout=30) as client:
            for i in range(300):
                method = ("GET", "POST", "PROPFIND", "DELETE")[i % 4]
                response = await client.request(method, f"/wp-admin/{i}/x{i * 7}.php")
                assert response.status_code in (404, 405)

    before = len(snap().endpoints)
    asyncio.run(scan())
    after = drained()
    assert len(after.endpoints) == before + 1
    assert after.endpoints["<unmatched>"].total == 300


def test_mounted_and_included_templates(server: str) -> None:
    """Mounted apps and prefixed routers count under full templates; a 404 below a mount is
    unmatched."""
    with httpx.Client(base_url=server) as client:
        assert client.get("/sub/pages/a").status_code == 200
        assert client.get("/sub/pages/b").status_code == 200
        assert client.get("/sub/").status_code == 200
        assert client.get("/sub/missing/x").status_code == 404
        assert client.get("/api/users/u1").status_code == 200
        assert client.put("/items/3").status_code == 200
        assert client.post("/items/3").status_code == 405
    s = drained()
    assert s.endpoints["/sub/pages/{name}"].total == 2
    assert s.endpoints["/sub/"].total == 1
    assert s.endpoints["<unmatched>"].total == 1
    assert s.endpoints["/api/users/{user_id}"].total == 1
    assert s.endpoints["/items/{item_id}"].total == 2
    assert not any("u1" in name or name[-2:] == "/a" for name in s.endpoints)


def test_interleaved_requests_never_mix_their_outcomes(server: str) -> None:
    """Concurrent 200s and 500s through one middleware instance keep their own status."""

    async def mixed() -> None:
        async with httpx.AsyncClient(base_url=server, timeout=30) as client:
            codes = [200, 500, 201, 502] * 25
            responses = await asyncio.gather(*(client.get(f"/status/{c}") for c in codes))
            assert [r.status_code for r in responses] == codes

    asyncio.run(mixed())
    s = drained()
    assert s.endpoints["/status/{code}"].total == 100
    assert s.endpoints["/status/{code}"].failed == 50
