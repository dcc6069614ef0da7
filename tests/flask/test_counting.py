"""Exact counts through a real threaded Flask server: success, errors, exits, odd finishes."""

from __future__ import annotations

import asyncio
import gc

import httpx
import pytest
from flask import Flask, Response, request

from concmon import ConcurrencyMonitor, get_monitor
from concmon.testing import check_balanced
from concmon_flask import UNMATCHED_NAME, ConcMon
from tests.flask.apps import Gates, build_app
from tests.flask.serving import settled
from tests.flask.wsgi_driver import Call, serve

Served = tuple[httpx.Client, Gates, ConcurrencyMonitor]


def test_success_counts_under_the_url_rule(served: Served) -> None:
    """A 200 counts once, completed and not failed, under the route template."""
    client, _, monitor = served
    for item_id in (1, 2, 3):
        assert client.get(f"/api/items/{item_id}").json() == {"id": item_id}
    snap = settled(monitor)
    stats = snap.endpoints["/api/items/<int:item_id>"]
    assert (stats.total, stats.completed, stats.failed, stats.cancelled) == (3, 3, 0, 0)
    assert set(snap.endpoints) == {"/api/items/<int:item_id>"}


def test_exception_is_failed_once_and_flask_error_handler_runs(served: Served) -> None:
    """An unhandled exception counts failed once; the app's own 500 handler still answers."""
    client, _, monitor = served
    response = client.get("/boom")
    assert response.status_code == 500
    assert response.text == "handled by the app"
    stats = settled(monitor).endpoints["/boom"]
    assert (stats.total, stats.failed, stats.cancelled) == (1, 1, 0)


def test_returned_5xx_is_failed_and_4xx_is_not(served: Served) -> None:
    """A returned 503 counts failed, a 404/429 does not (default rule: 500 and above)."""
    client, _, monitor = served
    for code in (200, 404, 429, 500, 503):
        assert client.get(f"/status/{code}").status_code == code
    stats = settled(monitor).endpoints["/status/<int:code>"]
    assert (stats.total, stats.failed) == (5, 2)


def test_failed_status_rule_is_configurable() -> None:
    """failed_status=400 counts 4xx as failed too; a callable rule decides per code."""
    app, _ = build_app(sinks=(), start_reporter=False, failed_status=400)
    for code in (200, 404, 500):
        serve(app, f"/status/{code}")
    assert get_monitor().snapshot().endpoints["/status/<int:code>"].failed == 2

    other, _ = build_app(monitor=None, failed_status=lambda code: code == 418)
    get_monitor().reset()
    for code in (418, 500):
        serve(other, f"/status/{code}")
    assert get_monitor().snapshot().endpoints["/status/<int:code>"].failed == 1


def test_propagated_exception_passes_through_unchanged(
    instrumented: tuple[Flask, Gates, ConcurrencyMonitor],
) -> None:
    """With PROPAGATE_EXCEPTIONS the very same exception object reaches the server."""
    app, _, monitor = instrumented
    app.config["PROPAGATE_EXCEPTIONS"] = True
    seen: list[BaseException] = []

    @app.errorhandler(RuntimeError)
    def keep(error: RuntimeError) -> str:
        seen.append(error)
        raise error

    with pytest.raises(RuntimeError, match="boom") as caught:
        Call(app, "/boom")
    assert caught.value is seen[0]
    stats = check_balanced(monitor.snapshot()).endpoints["/boom"]
    assert (stats.total, stats.failed) == (1, 1)


def test_system_exit_in_a_view_is_reraised_and_balanced(
    instrumented: tuple[Flask, Gates, ConcurrencyMonitor],
) -> None:
    """SystemExit (a worker timeout) passes through untouched; the request is not left active."""
    app, _, monitor = instrumented
    with pytest.raises(SystemExit) as caught:
        Call(app, "/exit")
    assert caught.value.code == 3
    stats = check_balanced(monitor.snapshot()).endpoints["/exit"]
    assert (stats.total, stats.failed, stats.cancelled) == (1, 1, 0)


def test_cancellation_is_counted_cancelled_not_failed(
    instrumented: tuple[Flask, Gates, ConcurrencyMonitor],
) -> None:
    """CancelledError (a BaseException) is re-raised and counted cancelled, never failed."""
    app, _, monitor = instrumented
    with pytest.raises(asyncio.CancelledError):
        Call(app, "/cancel")
    stats = check_balanced(monitor.snapshot()).endpoints["/cancel"]
    assert (stats.total, stats.failed, stats.cancelled) == (1, 0, 1)


def test_raising_close_callback_still_decrements(
    instrumented: tuple[Flask, Gates, ConcurrencyMonitor],
) -> None:
    """A response close callback that raises inside close() cannot leave the request active."""
    app, _, monitor = instrumented

    @app.get("/closing")
    def closing() -> Response:
        response = Response("body")

        @response.call_on_close
        def broken() -> None:
            raise OSError("close callback broke")

        return response

    call = Call(app, "/closing").read()
    with pytest.raises(OSError, match="close callback broke"):
        call.close()
    stats = check_balanced(monitor.snapshot()).endpoints["/closing"]
    assert (stats.total, stats.failed) == (1, 1)


def test_raising_status_rule_still_decrements() -> None:
    """A failed_status function that raises is counted failed and cannot leave it active."""

    def rule(code: int) -> bool:
        raise ValueError("bad rule")

    app, _ = build_app(sinks=(), start_reporter=False, failed_status=rule)
    call = Call(app, "/").read()
    with pytest.raises(ValueError, match="bad rule"):
        call.close()
    stats = check_balanced(get_monitor().snapshot()).endpoints["/"]
    assert (stats.total, stats.failed) == (1, 1)


def test_close_twice_and_collection_finish_once(
    instrumented: tuple[Flask, Gates, ConcurrencyMonitor],
) -> None:
    """close() twice, then garbage collection: one completion, nothing negative."""
    app, _, monitor = instrumented
    call = Call(app, "/").read()
    call.close()
    call.close()
    del call
    gc.collect()
    stats = check_balanced(monitor.snapshot()).endpoints["/"]
    assert (stats.total, stats.completed, stats.failed, stats.cancelled) == (1, 1, 0, 0)


def test_endpoint_key_is_fixed_when_the_request_starts(
    instrumented: tuple[Flask, Gates, ConcurrencyMonitor],
) -> None:
    """A view that swaps request.url_rule cannot move its own decrement to another key."""
    app, _, monitor = instrumented

    @app.get("/renamed")
    def renamed() -> str:
        request.url_rule = app.url_map._rules_by_endpoint["index"][0]
        return "ok"

    serve(app, "/renamed")
    snap = check_balanced(monitor.snapshot())
    assert snap.endpoints["/renamed"].completed == 1
    assert "/" not in snap.endpoints


def test_unmatched_paths_and_methods_collapse(served: Served) -> None:
    """404s and 405s count under one <unmatched> name; an abort(404) in a view keeps its rule."""
    client, _, monitor = served
    assert client.get("/no/such/path").status_code == 404
    assert client.delete("/api/items/1").status_code == 405
    assert client.get("/api/missing").status_code == 404
    snap = settled(monitor)
    assert snap.endpoints[UNMATCHED_NAME].total == 2
    assert snap.endpoints["/api/missing"].total == 1
    assert snap.failed == 0


def test_app_factory_with_init_app() -> None:
    """ConcMon().init_app(app) in a factory counts like ConcMon(app); a second install is inert."""
    concmon = ConcMon(sinks=(), start_reporter=False)

    def create() -> Flask:
        app, _ = build_app()
        concmon.init_app(app)
        concmon.init_app(app)
        ConcMon(app)
        return app

    first, second = create(), create()
    serve(first, "/")
    serve(second, "/")
    serve(second, "/")
    stats = check_balanced(get_monitor().snapshot()).endpoints["/"]
    assert (stats.total, stats.completed) == (3, 3)
