"""Clients that hang up while queued at the admission gate, on real servers (asyncio and trio).

A departed waiter must leave the queue at once (never holding a place in ``max_queue``), count
as a cancelled request under the name no route handled, and never reach the application; a
request body read while a request waited must reach the application whole.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI, Request

from concmon import UNMATCHED, Snapshot
from concmon.testing import check_balanced
from concmon_fastapi import GATE_QUEUE, install
from tests.fastapi.apps import HOLD_LIMIT, released
from tests.fastapi.conftest import wait_until
from tests.servers import uvicorn_thread

pytestmark = pytest.mark.slow


def gate_app(release: threading.Event, reached: list[str], **options: Any) -> FastAPI:
    """A held endpoint, a fast one and an echo of the request body; trio-friendly waits only."""
    app = FastAPI()

    @app.get("/hold")
    async def hold() -> dict[str, bool]:
        await released(release)
        return {"ok": True}

    @app.get("/fast")
    async def fast() -> dict[str, bool]:
        reached.append("/fast")
        return {"ok": True}

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, str]:
        return {"body": (await request.body()).decode()}

    install(app, **options)
    return app


def _hypercorn_trio(app: Any) -> contextlib.AbstractContextManager[str]:
    pytest.importorskip("trio")
    pytest.importorskip("hypercorn.trio")
    from tests.fastapi.test_trio import hypercorn_on_trio

    return hypercorn_on_trio(app)


SERVERS: dict[str, Callable[[Any], contextlib.AbstractContextManager[str]]] = {
    "uvicorn-asyncio": uvicorn_thread,
    "hypercorn-trio": _hypercorn_trio,
}


@contextlib.contextmanager
def held(url: str, release: threading.Event) -> Iterator[list[int]]:
    """One request inside /hold for the whole block; yields where its status will be."""
    statuses: list[int] = []
    thread = threading.Thread(
        target=lambda: statuses.append(httpx.get(f"{url}/hold", timeout=HOLD_LIMIT).status_code)
    )
    thread.start()
    try:
        wait_until(lambda s: s.endpoints.get("/hold") is not None and s.active == 1, what="held")
        yield statuses
    finally:
        release.set()
        thread.join(HOLD_LIMIT)


def raw_get(url: str, path: str) -> socket.socket:
    """A client that sent a complete GET and waits for its answer on a raw socket."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), 10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


def _completed(snapshot: Snapshot, name: str) -> int:
    stats = snapshot.endpoints.get(name)
    return stats.completed if stats is not None else 0


@pytest.mark.parametrize("server", SERVERS)
def test_a_client_gone_while_queued_leaves_the_queue_and_frees_its_place(server: str) -> None:
    """Two queued clients hang up: the queue empties at once, they count cancelled (not
    rejected) under <unmatched> with their method and their wait as duration, and never reach
    the app; a live client is queued, not turned away, with every total adding up."""
    release = threading.Event()
    reached: list[str] = []
    app = gate_app(release, reached, max_concurrency=1, max_queue=2)
    with SERVERS[server](app) as url:
        reached.clear()  # a server's start-up probe may have asked for /fast
        before = wait_until(lambda s: s.active == 0, what="started")
        with held(url, release) as first:
            dead = [raw_get(url, "/fast") for _ in range(2)]
            wait_until(lambda s: s.queue_depth == 2, what="two queued")
            for sock in dead:
                sock.close()
            gone = wait_until(
                lambda s: s.queue_depth == 0 and s.cancelled == 2, what="departed waiters left"
            )
            assert gone.endpoints[UNMATCHED].cancelled == 2
            assert gone.rejected == 0
            live: list[int] = []
            thread = threading.Thread(
                target=lambda: live.append(httpx.get(f"{url}/fast", timeout=HOLD_LIMIT).status_code)
            )
            thread.start()
            wait_until(lambda s: s.queue_depth == 1, what="the live client queued")
            assert live == [], "queued, not turned away"
        thread.join(HOLD_LIMIT)
        after = check_balanced(
            wait_until(lambda s: s.active == 0 and s.queue_depth == 0, what="drained")
        )
    assert first == [200] and live == [200]
    assert reached == ["/fast"], "the departed clients never reached the application"
    unmatched = after.endpoints[UNMATCHED]
    assert (unmatched.cancelled, unmatched.completed, unmatched.rejected) == (2, 2, 0)
    # Their wait is their duration; they never got a response head or a first byte.
    assert unmatched.responses == {"GET none cancelled": 2}
    assert unmatched.duration_all is not None and unmatched.duration_all.count == 2
    assert unmatched.ttfb_all is not None and unmatched.ttfb_all.count == 0
    assert after.endpoints["/fast"].completed - _completed(before, "/fast") == 1
    assert after.rejected == 0
    assert after.total == after.completed == before.completed + 4
    assert after.cancelled == 2
    assert after.queues[GATE_QUEUE].waited == 3


@pytest.mark.parametrize("server", SERVERS)
def test_a_body_sent_while_queued_reaches_the_application_whole(server: str) -> None:
    """A POST that waits at the gate has its body read while queued (to notice a hang-up);
    once admitted the application still gets every byte of it."""
    release = threading.Event()
    app = gate_app(release, [], max_concurrency=1)
    payload = "queued-body-" * 50
    with SERVERS[server](app) as url:
        answers: list[httpx.Response] = []
        with held(url, release):
            thread = threading.Thread(
                target=lambda: answers.append(
                    httpx.post(f"{url}/echo", content=payload, timeout=HOLD_LIMIT)
                )
            )
            thread.start()
            wait_until(lambda s: s.queue_depth == 1, what="the POST queued")
        thread.join(HOLD_LIMIT)
        after = check_balanced(
            wait_until(lambda s: s.active == 0 and s.queue_depth == 0, what="drained")
        )
    assert [a.status_code for a in answers] == [200]
    assert answers[0].json() == {"body": payload}
    assert after.endpoints["/echo"].completed == 1
    assert after.cancelled == 0
