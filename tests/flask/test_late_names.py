"""A plain WSGI app named by what its own router chose (Bottle): the ``endpoint`` function
answers None until the app has routed, under a real threaded server on 127.0.0.1."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import bottle
import httpx
import pytest

from concmon import get_monitor
from concmon_flask import ConcMonWSGIMiddleware
from tests.flask.serving import settled, wait_until, werkzeug_thread


def bottle_route(environ: dict[str, Any]) -> str | None:
    route = environ.get("bottle.route")
    return route.rule if route is not None else None


def bottle_app(release: threading.Event) -> bottle.Bottle:
    web = bottle.Bottle()

    @web.get("/items/<item_id:int>")
    def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @web.get("/slow")
    def slow() -> str:
        release.wait(30)
        return "done"

    @web.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    web.catchall = True
    return web


def test_requests_are_named_once_the_app_has_routed() -> None:
    """Held requests count as routing while the view runs and under their route once the
    response starts; items under their rule, a 404 unmatched, an error failed; balanced."""
    release = threading.Event()
    app = ConcMonWSGIMiddleware(bottle_app(release), endpoint=bottle_route)
    with werkzeug_thread(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        for item_id in (1, 2):
            assert client.get(f"/items/{item_id}").json() == {"id": item_id}
        assert client.get("/nowhere").status_code == 404
        assert client.get("/boom").status_code == 500
        with ThreadPoolExecutor(3) as pool:
            held = [pool.submit(client.get, "/slow") for _ in range(3)]
            wait_until(lambda: get_monitor().snapshot().active == 3, 15, "three held")
            assert get_monitor().snapshot().routing == 3
            release.set()
            assert all(f.result().text == "done" for f in held)
    final = settled(get_monitor())
    assert final.endpoints["/items/<item_id:int>"].completed == 2
    assert final.endpoints["/slow"].completed == 3
    assert final.endpoints["<unmatched>"].completed == 1
    assert final.endpoints["/boom"].failed == 1
    assert final.routing == 0


def test_an_endpoint_function_that_raises_late_leaves_nothing_active() -> None:
    """A naming function failing at the request's end raises there and still ends it."""
    calls = []

    def flaky(environ: dict[str, Any]) -> str | None:
        calls.append(1)
        if len(calls) > 1:
            raise LookupError("no name")
        return None

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        return [b"never started"]

    wrapped = ConcMonWSGIMiddleware(app, endpoint=flaky)
    body = wrapped({"PATH_INFO": "/x", "REQUEST_METHOD": "GET"}, lambda *a: None)
    with pytest.raises(LookupError):
        body.close()  # type: ignore[attr-defined]
    final = settled(get_monitor())
    assert (final.total, final.failed) == (1, 1)
