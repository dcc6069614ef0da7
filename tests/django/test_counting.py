"""Names and outcomes of Django requests, under a real WSGI and a real ASGI server."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.django.conftest import served, settled, snap
from tests.django.project import views
from tests.flask.serving import wait_until

KINDS = ["wsgi", "asgi"]


@pytest.mark.parametrize("kind", KINDS)
def test_names_are_the_resolved_patterns_with_include_prefixes(kind: str) -> None:
    """Each request is counted under the URL pattern Django resolved, include() prefix joined,
    a regex pattern as written, the root as "/", and a path no pattern matched as unmatched."""
    with served(kind) as base, httpx.Client(base_url=base, timeout=30) as client:
        for pk in (1, 2, 3):
            assert client.get(f"/api/items/{pk}/").status_code == 200
        assert client.get("/").text == "ok"
        assert client.get("/legacy/2024/").status_code == 200
        assert client.get("/no/such/path/").status_code == 404
        assert client.get("/no/such/other/").status_code == 404
    final = settled()
    assert final.endpoints["api/items/<int:pk>/"].completed == 3
    assert final.endpoints["/"].completed == 1
    assert final.endpoints["^legacy/(?P<year>[0-9]{4})/$"].completed == 1
    assert final.endpoints["<unmatched>"].completed == 2
    assert final.failed == 0
    assert not any("/no/such" in name for name in final.endpoints)


@pytest.mark.parametrize("kind", KINDS)
def test_an_exception_is_failed_once_and_http404_is_not_failed(kind: str) -> None:
    """A view raising RuntimeError is a 500 counted failed exactly once; Http404 from a view is
    a 404 under the view's pattern, not failed; a 503 returned is failed."""
    with served(kind) as base, httpx.Client(base_url=base, timeout=30) as client:
        assert client.get("/boom/").status_code == 500
        assert client.get("/api/missing/").status_code == 404
        assert client.get("/status/503/").status_code == 503
        assert client.get("/status/418/").status_code == 418
    final = settled()
    assert (final.endpoints["boom/"].completed, final.endpoints["boom/"].failed) == (1, 1)
    assert final.endpoints["api/missing/"].failed == 0
    assert final.endpoints["status/<int:code>/"].failed == 1
    assert final.failed == 2


@pytest.mark.parametrize(("kind", "path"), [("wsgi", "/stream/"), ("asgi", "/astream/")])
def test_a_stream_is_active_until_its_last_chunk(kind: str, path: str) -> None:
    """A StreamingHttpResponse stays active after the view returned, until its last chunk."""
    with served(kind) as base, httpx.Client(base_url=base, timeout=30) as client:
        with client.stream("GET", path) as response:
            chunks = response.iter_bytes()
            assert next(chunks).startswith(b"first")
            assert views.streaming.wait(15)
            name = path.strip("/") + "/"
            assert snap().endpoints[name].active == 1
            views.release.set()
            rest = b"".join(chunks)
        assert rest.endswith(b"last\n")
    final = settled()
    assert (final.endpoints[name].completed, final.endpoints[name].failed) == (1, 0)
    assert final.endpoints[name].cancelled == 0


@pytest.mark.parametrize(("kind", "path"), [("wsgi", "endless/"), ("asgi", "aendless/")])
def test_a_client_leaving_mid_stream_is_cancelled(kind: str, path: str) -> None:
    """A client that hangs up on an endless stream ends it as cancelled, balanced."""
    with served(kind) as base:
        host, port = base.removeprefix("http://").rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.sendall(f"GET /{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        assert sock.recv(100)
        assert views.streaming.wait(15)
        assert snap().endpoints[path].active == 1
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
        final = settled(30)
    assert final.endpoints[path].cancelled == 1
    assert final.endpoints[path].failed == 0


@pytest.mark.parametrize("kind", KINDS)
# Django's own warning: under ASGI it reads a FileResponse's file in a thread.
@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume synchronous")
def test_a_file_response_is_counted_until_sent(kind: str) -> None:
    """A FileResponse is served whole and counted completed once under its pattern."""
    with served(kind) as base, httpx.Client(base_url=base, timeout=30) as client:
        assert len(client.get("/download/").content) == 100_000
    final = settled()
    assert final.endpoints["download/"].completed == 1


def test_sixty_held_async_requests_under_uvicorn_are_all_active() -> None:
    """60 requests held in an async view under uvicorn: active == peak == 60 while held,
    all of them under the view's pattern; balanced after."""
    n = 60
    with served("asgi") as base:
        limits = httpx.Limits(max_connections=n + 5, max_keepalive_connections=0)
        with httpx.Client(base_url=base, timeout=60, limits=limits) as client:
            with ThreadPoolExecutor(n) as pool:
                futures = [pool.submit(client.get, "/aslow/") for _ in range(n)]
                try:
                    wait_until(
                        lambda: (
                            snap().endpoints.get("aslow/") is not None
                            and snap().endpoints["aslow/"].active == n
                        ),
                        30,
                        "60 requests active in the view",
                    )
                    held = snap()
                    assert (held.active, held.peak) == (n, n)
                    assert held.endpoints["aslow/"].active == n
                finally:
                    views.release.set()
                assert all(f.result().status_code == 200 for f in futures)
    final = settled()
    assert (final.endpoints["aslow/"].completed, final.peak) == (n, n)
