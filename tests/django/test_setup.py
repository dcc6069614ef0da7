"""Options from settings.CONCMON, the machine endpoints, the gate, the system check and the
test helper, on the test project served by real servers."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.core.management import call_command
from django.test import override_settings

from concmon import get_monitor
from concmon_django.apps import reloader_parent
from concmon_django.checks import MIDDLEWARE_PATH
from concmon_django.testing import capture_reports
from tests.django.conftest import served, settled, snap
from tests.django.project import views
from tests.flask.serving import wait_until

KINDS = ["wsgi", "asgi"]


@pytest.mark.parametrize("kind", KINDS)
def test_view_naming_and_renames(kind: str) -> None:
    """naming="view" counts requests under the namespaced view name; names renames one."""
    options = {"naming": "view", "names": {"items:detail": "item"}}
    with override_settings(CONCMON=options), served(kind) as base:
        with httpx.Client(base_url=base, timeout=30) as client:
            client.get("/api/items/4/")
            client.get("/api/missing/")
    final = settled()
    assert final.endpoints["item"].completed == 1
    assert final.endpoints["items:missing"].completed == 1


@pytest.mark.parametrize("kind", KINDS)
def test_machine_endpoints_answer_with_token_and_allow_list(kind: str) -> None:
    """/concurrency serves the live snapshot only with the bearer token and from an allowed
    address; the monitor's own paths are never counted."""
    options = {"json_path": "/concurrency", "metrics_token": "s3cret"}
    options["metrics_allow"] = "10.0.0.0/8"
    with override_settings(CONCMON=options), served(kind) as base:
        with httpx.Client(base_url=base, timeout=30) as client:
            assert client.get("/concurrency").status_code == 403
    options["metrics_allow"] = "127.0.0.1"
    with override_settings(CONCMON=options), served(kind) as base:
        with httpx.Client(base_url=base, timeout=30) as client:
            client.get("/")
            assert client.get("/concurrency").status_code == 401
            answer = client.get("/concurrency", headers={"Authorization": "Bearer s3cret"})
            assert answer.status_code == 200
            body = json.loads(answer.content)
            assert body["endpoints"]["/"]["completed"] == 1
            assert client.post("/concurrency").status_code == 405
    assert "/concurrency" not in settled().endpoints


@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_option_switches_concmon_off_with_one_line(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A bad CONCMON option: one error line naming it, the project serves on, uncounted."""
    with caplog.at_level(logging.ERROR, "concmon"):
        with override_settings(CONCMON={"failed_status": f"lots-{kind}"}), served(kind) as base:
            with httpx.Client(base_url=base, timeout=30) as client:
                assert client.get("/").text == "ok"
                assert client.get("/").text == "ok"
    lines = [r.getMessage() for r in caplog.records if r.name == "concmon"]
    assert len(lines) == 1
    assert f"failed_status='lots-{kind}' is not valid" in lines[0]
    assert get_monitor().snapshot().total == 0


def test_the_gate_holds_requests_back_under_asgi() -> None:
    """max_concurrency=2, max_queue=1 under uvicorn: 2 held inside, 1 queued, the next one
    turned away with a 503; all of them drain once released."""
    options = {"max_concurrency": 2, "max_queue": 1}
    with override_settings(CONCMON=options), served("asgi") as base:
        with httpx.Client(base_url=base, timeout=30) as client, ThreadPoolExecutor(3) as pool:
            held = [pool.submit(client.get, "/aslow/") for _ in range(2)]
            wait_until(lambda: snap().active == 2, 15, "two inside")
            queued = pool.submit(client.get, "/aslow/")
            wait_until(lambda: snap().queue_depth == 1, 15, "one queued")
            rejected = client.get("/aslow/")
            assert rejected.status_code == 503
            assert rejected.headers["Retry-After"] == "1"
            assert snap().active == 2
            views.release.set()
            assert all(f.result().status_code == 200 for f in [*held, queued])
    final = settled()
    assert final.endpoints["aslow/"].completed == 3
    assert final.rejected == 1
    assert final.peak == 2


@pytest.mark.parametrize(
    ("middleware", "expected"),
    [
        (["django.middleware.common.CommonMiddleware"], "concmon_django.W001"),
        (["django.middleware.common.CommonMiddleware", MIDDLEWARE_PATH], "concmon_django.W002"),
        ([MIDDLEWARE_PATH, "django.middleware.common.CommonMiddleware"], None),
    ],
)
def test_manage_py_check_warns_when_the_middleware_is_missing_or_not_first(
    middleware: list[str], expected: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    """manage.py check names a middleware missing or not first, and is quiet otherwise."""
    with override_settings(MIDDLEWARE=middleware):
        call_command("check", "--tag", "concmon")
    out = capsys.readouterr()
    text = out.out + out.err
    if expected is None:
        assert "concmon_django.W" not in text
    else:
        assert expected in text


def test_manage_py_check_names_a_bad_option(capsys: pytest.CaptureFixture[str]) -> None:
    """manage.py check shows the one-line problem of a bad CONCMON option as a warning."""
    with override_settings(CONCMON={"naming": "path"}):
        call_command("check", "--tag", "concmon")
    text = "".join(capsys.readouterr())
    assert "concmon_django.W003" in text
    assert "naming='path' is not valid" in text


def test_capture_reports_sees_django_test_client_requests() -> None:
    """With django.test's Client, capture_reports() hands a checked report on demand."""
    from django.test import Client

    with override_settings(CONCMON={"start_reporter": False}), capture_reports() as reports:
        client = Client(raise_request_exception=False)
        assert client.get("/api/items/7/").status_code == 200
        assert client.get("/boom/").status_code == 500
        snapshot = reports.report()
    assert snapshot.endpoints["api/items/<int:pk>/"].completed == 1
    assert snapshot.endpoints["boom/"].failed == 1
    assert reports.sink.reports[-1] is snapshot


def test_an_exception_propagated_by_django_is_failed_once_and_reraised() -> None:
    """With the test client raising request exceptions, the error reaches the test unchanged
    and the request is counted failed once."""
    from django.test import Client

    client = Client(raise_request_exception=True)
    with pytest.raises(RuntimeError, match="boom"):
        client.get("/boom/")
    final = settled()
    assert (final.endpoints["boom/"].completed, final.endpoints["boom/"].failed) == (1, 1)


def test_only_runservers_reloader_parent_is_left_alone() -> None:
    """The reloader parent is runserver without --noreload and without RUN_MAIN=true."""
    assert reloader_parent(["manage.py", "runserver"], {})
    assert not reloader_parent(["manage.py", "runserver"], {"RUN_MAIN": "true"})
    assert not reloader_parent(["manage.py", "runserver", "--noreload"], {})
    assert not reloader_parent(["gunicorn", "project.wsgi"], {})


def test_a_client_leaving_the_gate_queue_leaves_it_at_once() -> None:
    """Under uvicorn with max_concurrency=1, a queued client that hangs up leaves the queue
    at once (Django cancels its task), is never active, and everything drains."""
    import socket

    with override_settings(CONCMON={"max_concurrency": 1}), served("asgi") as base:
        with httpx.Client(base_url=base, timeout=30) as client, ThreadPoolExecutor(1) as pool:
            held = pool.submit(client.get, "/aslow/")
            wait_until(lambda: snap().active == 1, 15, "one inside")
            host, port = base.removeprefix("http://").rsplit(":", 1)
            sock = socket.create_connection((host, int(port)), timeout=10)
            sock.sendall(b"GET /aslow/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            wait_until(lambda: snap().queue_depth == 1, 15, "one queued")
            sock.close()
            wait_until(lambda: snap().queue_depth == 0, 15, "the queue empty again")
            assert snap().active == 1
            views.release.set()
            assert held.result().status_code == 200
    final = settled()
    assert final.endpoints["aslow/"].completed == 1
    assert final.endpoints["<unmatched>"].cancelled == 1
    assert final.peak == 1
