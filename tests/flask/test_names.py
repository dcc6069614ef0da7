"""Endpoint names stay bounded and meaningful: rules, blueprints, mounts, scanners, exclusions."""

from __future__ import annotations

import random
import string

import httpx
from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from concmon import OVERFLOW_NAME, ConcurrencyMonitor, get_monitor
from concmon.testing import check_balanced
from concmon_flask import UNMATCHED_NAME, ConcMon, ConcMonWSGIMiddleware
from tests.flask.apps import build_app
from tests.flask.serving import settled, werkzeug_thread
from tests.flask.wsgi_driver import serve

ROUTES = {"/", "/api/items/<int:item_id>", "/slow", "/boom", "/status/<int:code>"}


def _random_path(rng: random.Random) -> str:
    parts = ["".join(rng.choices(string.ascii_letters + "%-._~", k=rng.randint(1, 12)))]
    parts += [str(rng.randint(0, 10**6)) for _ in range(rng.randint(0, 3))]
    return "/" + "/".join(parts)


def test_scanner_paths_and_odd_methods_stay_bounded() -> None:
    """10,000 random paths and odd methods: routes + one <unmatched>, every request counted."""
    app, _ = build_app(sinks=(), start_reporter=False, max_endpoints=50)
    rng = random.Random(5)
    methods = ["GET", "POST", "PROPFIND", "TRACE", "BREW", "DELETE"]
    client = app.test_client()
    for _ in range(10_000):
        with client.open(_random_path(rng), method=rng.choice(methods)):
            pass
    for item_id in range(20):
        with client.get(f"/api/items/{item_id}"):
            pass
    snap = check_balanced(get_monitor().snapshot())
    assert set(snap.endpoints) == {UNMATCHED_NAME, "/api/items/<int:item_id>"}
    assert snap.endpoints[UNMATCHED_NAME].total == 10_000
    assert snap.total == 10_020
    assert snap.failed == 0


def test_scanner_over_the_real_server_is_counted_under_one_name() -> None:
    """Random 404 paths through the threaded server all land in <unmatched>."""
    app, _ = build_app(sinks=(), start_reporter=False)
    rng = random.Random(7)
    with werkzeug_thread(app) as base, httpx.Client(base_url=base, timeout=20) as client:
        for _ in range(200):
            client.request(rng.choice(["GET", "POST", "OPTIONS"]), _random_path(rng))
        snap = settled(get_monitor())
    assert set(snap.endpoints) == {UNMATCHED_NAME}
    assert snap.endpoints[UNMATCHED_NAME].total == 200


def test_plain_wsgi_paths_overflow_into_one_series() -> None:
    """The plain middleware names by path; past the cap, new paths share <overflow>."""
    monitor = ConcurrencyMonitor(max_endpoints=10)

    def plain(environ: dict[str, object], start_response: object) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])  # type: ignore[operator]
        return [b"ok"]

    app = ConcMonWSGIMiddleware(plain, monitor=monitor)
    for i in range(100):
        serve(app, f"/page/{i}")
    snap = check_balanced(monitor.snapshot())
    assert len(snap.endpoints) == 11
    assert snap.endpoints[OVERFLOW_NAME].total == 90
    assert snap.total == 100


def test_mounted_flask_apps_use_their_own_rules() -> None:
    """Apps mounted under a prefix name by their rules; a 404 under the mount is unmatched."""
    front, _ = build_app(sinks=(), start_reporter=False)
    back = Flask("back")

    @back.get("/users/<name>")
    def user(name: str) -> str:
        return name

    from concmon_flask import ConcMon

    ConcMon(back)
    front.wsgi_app = DispatcherMiddleware(front.wsgi_app, {"/admin": back.wsgi_app})  # type: ignore[method-assign]
    with werkzeug_thread(front) as base, httpx.Client(base_url=base, timeout=20) as client:
        assert client.get("/admin/users/ann").text == "ann"
        assert client.get("/admin/nothing").status_code == 404
        assert client.get("/api/items/3").status_code == 200
        snap = settled(get_monitor())
    assert {n: s.total for n, s in snap.endpoints.items()} == {
        "/users/<name>": 1,
        UNMATCHED_NAME: 1,
        "/api/items/<int:item_id>": 1,
    }


def test_outer_plain_middleware_and_flask_count_each_request_once() -> None:
    """A plain middleware around an instrumented Flask app: one count per request, not two."""
    app, _ = build_app(sinks=(), start_reporter=False)
    wrapped = ConcMonWSGIMiddleware(app, endpoint=lambda environ: "outer")
    for _ in range(3):
        serve(wrapped, "/api/items/1")
    snap = check_balanced(get_monitor().snapshot())
    assert {n: s.total for n, s in snap.endpoints.items()} == {"outer": 3}


def test_excluded_paths_are_not_counted() -> None:
    """exclude_paths skips exact paths and * prefixes; everything else is still counted."""
    app, _ = build_app(sinks=(), start_reporter=False, exclude_paths=["/", "/api/items/*"])
    for path in ("/", "/api/items/1", "/api/items/2", "/status/200"):
        serve(app, path)
    snap = check_balanced(get_monitor().snapshot())
    assert set(snap.endpoints) == {"/status/<int:code>"}
    assert snap.total == 1


def _add_held(app: Flask, path: str) -> list[int]:
    """A route that records, from inside the view, how many requests its rule has active."""
    seen: list[int] = []

    def held() -> str:
        seen.append(get_monitor().snapshot().endpoints[path].active)
        return "ok"

    app.add_url_rule(path, path, held)
    return seen


def test_a_custom_request_class_keeps_working_and_is_counted_from_the_start() -> None:
    """The app's own request class keeps its behaviour; the view sees its request counted."""
    from flask import Request, request

    class MyRequest(Request):
        def tenant(self) -> str:
            return self.headers.get("X-Tenant", "none")

    app = Flask(__name__)
    app.request_class = MyRequest
    ConcMon(app, sinks=(), start_reporter=False)
    seen = _add_held(app, "/held")

    @app.get("/tenant")
    def tenant() -> str:
        assert isinstance(request._get_current_object(), MyRequest)  # type: ignore[attr-defined]
        assert request.url_rule is not None and request.url_rule.rule == "/tenant"
        return request.tenant()  # type: ignore[attr-defined,no-any-return]

    with app.test_client() as client:
        assert client.get("/tenant", headers={"X-Tenant": "acme"}).text == "acme"
        assert client.get("/held").status_code == 200
    assert seen == [1], "the request is active while its view runs"
    assert check_balanced(get_monitor().snapshot()).endpoints["/tenant"].completed == 1


def test_request_class_replaced_after_install_is_named_again() -> None:
    """An app that swaps request_class after ConcMon(app) is counted from the start again."""
    from flask import Request

    class Later(Request):
        pass

    app = Flask(__name__)
    ConcMon(app, sinks=(), start_reporter=False)
    app.request_class = Later
    seen = _add_held(app, "/held")
    app.add_url_rule("/first", "first", lambda: "ok")

    with app.test_client() as client:
        client.get("/first")  # the new class is wrapped before this request is built
        client.get("/held")
    assert issubclass(app.request_class, Later) and app.request_class is not Later
    assert seen == [1]
    snap = check_balanced(get_monitor().snapshot())
    assert snap.endpoints["/first"].completed == 1
