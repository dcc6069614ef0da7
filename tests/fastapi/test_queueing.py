"""Admission gate, thread-pool queue and loop lag, seen through a real uvicorn server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from anyio import to_thread

from concmon_fastapi import GATE_QUEUE, THREADPOOL_QUEUE, UNMATCHED
from tests.fastapi.apps import Hooks, make_app
from tests.fastapi.conftest import drained, snap, wait_until
from tests.servers import uvicorn_thread

pytestmark = pytest.mark.slow


def test_gate_queues_fifo_rejects_past_the_queue_and_loses_nothing() -> None:
    """Past max_concurrency requests wait (visible queue depth), past max_queue they get a 503
    with Retry-After, and every request is accounted for once the burst drains."""
    hooks = Hooks()
    app = make_app(hooks, max_concurrency=2, max_queue=3)

    async def run(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            tasks = [asyncio.create_task(client.get("/slow")) for _ in range(5)]
            held = await asyncio.to_thread(
                wait_until, lambda s: s.active == 2 and s.queue_depth == 3, 15.0, "2 in, 3 queued"
            )
            assert held.queues[GATE_QUEUE].depth == 3
            assert held.saturation == 1.0
            turned_away = await client.get("/slow")
            assert turned_away.status_code == 503
            assert turned_away.headers["retry-after"] == "1"
            # Turned away before the router chose a route: under the name no route handled.
            assert snap().endpoints[UNMATCHED].rejected == 1
            hooks.release.set()
            return list(await asyncio.gather(*tasks))

    with uvicorn_thread(app) as url:
        responses = asyncio.run(run(url))
        assert [r.status_code for r in responses] == [200] * 5
        after = drained()
    hooks.release.set()
    stats = after.endpoints["/slow"]
    assert (stats.total, stats.completed, stats.rejected, stats.active) == (5, 5, 0, 0)
    assert after.endpoints[UNMATCHED].rejected == 1
    assert after.rejected == 1
    assert after.queues[GATE_QUEUE].waited == 3
    assert after.queues[GATE_QUEUE].wait_max_ms is not None


def test_gate_timeout_turns_a_waiter_away_with_503() -> None:
    """A request that waits longer than queue_timeout gets a 503 and counts rejected."""
    hooks = Hooks()
    app = make_app(hooks, max_concurrency=1, queue_timeout=0.2)

    async def run(url: str) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            first = asyncio.create_task(client.get("/slow"))
            await asyncio.to_thread(wait_until, lambda s: s.active == 1)
            started = time.monotonic()
            late = await client.get("/fast")
            waited = time.monotonic() - started
            assert late.status_code == 503
            assert waited >= 0.15
            hooks.release.set()
            assert (await first).status_code == 200

    with uvicorn_thread(app) as url:
        asyncio.run(run(url))
        after = drained()
    hooks.release.set()
    assert after.endpoints[UNMATCHED].rejected == 1
    assert after.endpoints[UNMATCHED].total == 0  # never admitted, never active
    assert "/fast" not in after.endpoints


def test_without_gate_options_nothing_is_queued_or_rejected() -> None:
    """The gate is opt-in: without its options a burst is never queued or rejected."""
    hooks = Hooks()
    hooks.release.set()

    async def run(url: str) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            responses = await asyncio.gather(*(client.get("/slow") for _ in range(50)))
            assert {r.status_code for r in responses} == {200}

    with uvicorn_thread(make_app(hooks)) as url:
        asyncio.run(run(url))
        after = drained()
    assert after.rejected == 0 and GATE_QUEUE not in after.queues
    assert after.saturation is None


def test_requests_waiting_for_a_worker_thread_show_as_their_own_queue() -> None:
    """Sync endpoints beyond the thread pool's size wait; the wait shows as the threadpool
    queue, apart from the gate."""
    hooks = Hooks()
    app = make_app(hooks)
    app_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def small_pool(a: Any) -> AsyncIterator[Any]:
        to_thread.current_default_thread_limiter().total_tokens = 2
        async with app_lifespan(a) as state:
            yield state

    app.router.lifespan_context = small_pool

    async def run(url: str) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            tasks = [asyncio.create_task(client.get("/sync")) for _ in range(5)]
            seen = await asyncio.to_thread(
                wait_until,
                lambda s: THREADPOOL_QUEUE in s.queues and s.queues[THREADPOOL_QUEUE].depth == 3,
                15.0,
                "3 waiting for a thread",
            )
            assert seen.active == 5
            assert GATE_QUEUE not in seen.queues
            hooks.release.set()
            assert {r.status_code for r in await asyncio.gather(*tasks)} == {200}

    with uvicorn_thread(app) as url:
        asyncio.run(run(url))
        after = drained()
    hooks.release.set()
    assert after.queues[THREADPOOL_QUEUE].depth == 0
    assert after.endpoints["/sync"].completed == 5


def test_blocking_call_in_async_endpoint_shows_as_loop_lag() -> None:
    """time.sleep(0.3) inside an async endpoint stalls the loop; loop_lag_ms shows it."""
    hooks = Hooks()
    with uvicorn_thread(make_app(hooks)) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            wait_until(lambda s: s.system.loop_lag_ms is not None, what="probe running")
            assert client.get("/block", params={"seconds": 0.3}).status_code == 200
        lagged = wait_until(
            lambda s: (s.system.loop_lag_ms or 0) >= 200, what="loop lag of the blocking call"
        )
    assert lagged.system.loop_lag_ms is not None and lagged.system.loop_lag_ms < 5000
