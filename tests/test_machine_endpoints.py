"""One access table for the machine endpoints, run against both adapters on real servers.

Each row is a client address, the ``metrics_allow`` list, the ``metrics_token``, the
``Authorization`` header sent and the method, with the status both adapters must answer, on
the JSON path and on the metrics path alike. uvicorn serves the ASGI middleware and werkzeug's
threaded server the WSGI one, each bound to the row's loopback address (an IPv6 socket bound
to ``::ffff:127.0.0.1`` sees an IPv4 client as that mapped address), and the two answers are
compared with each other as well as with the table.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from concmon_fastapi import ConcMonMiddleware
from concmon_flask import ConcMonWSGIMiddleware
from tests.flask.serving import werkzeug_thread
from tests.servers import uvicorn_thread

pytestmark = pytest.mark.slow

MAPPED = "::ffff:127.0.0.1"
TOKEN = "s3cret"

# client address, metrics_allow, metrics_token, Authorization header, method -> status
Row = tuple[str, list[str] | None, str | None, str | None, str, int]
TABLE: list[Row] = [
    ("127.0.0.1", None, None, None, "GET", 200),
    ("127.0.0.1", ["127.0.0.1"], None, None, "GET", 200),
    ("127.0.0.1", ["127.0.0.0/8"], None, None, "GET", 200),
    ("127.0.0.1", ["10.0.0.0/8"], None, None, "GET", 403),
    ("127.0.0.1", ["::1"], None, None, "GET", 403),
    (MAPPED, ["127.0.0.1"], None, None, "GET", 200),
    (MAPPED, ["127.0.0.0/8"], None, None, "GET", 200),
    (MAPPED, ["10.0.0.0/8"], None, None, "GET", 403),
    ("::1", ["::1"], None, None, "GET", 200),
    ("::1", ["127.0.0.1"], None, None, "GET", 403),
    ("::1", ["::/0"], None, None, "GET", 200),
    ("127.0.0.1", None, TOKEN, None, "GET", 401),
    ("127.0.0.1", None, TOKEN, f"Bearer {TOKEN}", "GET", 200),
    ("127.0.0.1", None, TOKEN, f"bearer   {TOKEN}", "GET", 200),
    ("127.0.0.1", None, TOKEN, "Bearer nope", "GET", 401),
    ("127.0.0.1", None, TOKEN, f"Basic {TOKEN}", "GET", 401),
    ("127.0.0.1", None, TOKEN, "Bearer", "GET", 401),
    ("127.0.0.1", None, TOKEN, TOKEN, "GET", 401),
    ("127.0.0.1", None, TOKEN, f"Bearer {TOKEN}x", "GET", 401),
    ("127.0.0.1", None, TOKEN, None, "HEAD", 401),
    ("::1", ["10.0.0.0/8"], TOKEN, f"Bearer {TOKEN}", "GET", 403),
    ("::1", ["::1", "127.0.0.0/8"], TOKEN, f"Bearer {TOKEN}", "HEAD", 200),
    (MAPPED, ["127.0.0.1"], TOKEN, "Bearer wrong", "GET", 401),
    ("127.0.0.1", None, None, None, "POST", 405),
    ("127.0.0.1", ["10.0.0.0/8"], TOKEN, None, "DELETE", 405),
]
HOSTS = ["127.0.0.1", MAPPED, "::1"]
# The headers a client may act on; the Date and Server headers are the servers' own.
COMPARED = ("content-type", "content-length", "cache-control", "www-authenticate", "allow")


def _bindable(host: str) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
    except OSError:
        return False
    return True


async def _empty(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _empty_wsgi(environ: Any, start_response: Any) -> list[bytes]:
    start_response("404 Not Found", [])
    return [b""]


Config = tuple[tuple[str, ...] | None, str | None]


def _config(row: Row) -> Config:
    allow, token = row[1], row[2]
    return (tuple(allow) if allow is not None else None, token)


def _options(index: int, allow: tuple[str, ...] | None, token: str | None) -> dict[str, Any]:
    return {
        "json_path": f"/c{index}/concurrency",
        "prometheus": True,
        "metrics_path": f"/c{index}/metrics",
        "metrics_allow": allow,
        "metrics_token": token,
    }


def _dispatch_asgi(apps: list[Any]) -> Callable[..., Any]:
    async def dispatch(scope: Any, receive: Any, send: Any) -> None:
        index = int(scope["path"].split("/")[1].removeprefix("c"))
        await apps[index](scope, receive, send)

    return dispatch


def _dispatch_wsgi(apps: list[Any]) -> Callable[..., Any]:
    def dispatch(environ: Any, start_response: Any) -> Any:
        index = int(environ["PATH_INFO"].split("/")[1].removeprefix("c"))
        return apps[index](environ, start_response)

    return dispatch


def _ask(client: httpx.Client, path: str, header: str | None, method: str) -> httpx.Response:
    headers = {"authorization": header} if header is not None else {}
    return client.request(method, path, headers=headers)


@pytest.mark.parametrize("host", HOSTS)
def test_both_adapters_answer_the_access_table_alike(host: str) -> None:
    """Every row gets its status from the ASGI and the WSGI adapter, on both machine paths,
    with the same body and headers from both (IPv4-mapped, IPv6, CIDR, bad or missing
    tokens, methods)."""
    if not _bindable(host):
        pytest.skip(f"{host} cannot be bound on this machine")
    rows = [row for row in TABLE if row[0] == host]
    configs = list(dict.fromkeys(_config(row) for row in rows))
    asgi = [
        ConcMonMiddleware(_empty, loop_lag_interval=None, **_options(i, *config))
        for i, config in enumerate(configs)
    ]
    wsgi = [
        ConcMonWSGIMiddleware(_empty_wsgi, **_options(i, *config))
        for i, config in enumerate(configs)
    ]
    with (
        uvicorn_thread(_dispatch_asgi(asgi), host, lifespan="off") as asgi_url,
        werkzeug_thread(_dispatch_wsgi(wsgi), host) as wsgi_url,
        httpx.Client(base_url=asgi_url, timeout=20) as to_asgi,
        httpx.Client(base_url=wsgi_url, timeout=20) as to_wsgi,
    ):
        for row in rows:
            _, allow, token, header, method, status = row
            index = configs.index(_config(row))
            for path in (f"/c{index}/concurrency", f"/c{index}/metrics"):
                case = f"{method} {path} from {host}, allow={allow}, token={token}, {header=}"
                from_asgi = _ask(to_asgi, path, header, method)
                from_wsgi = _ask(to_wsgi, path, header, method)
                assert (from_asgi.status_code, from_wsgi.status_code) == (status, status), case
                shown = [{k: r.headers.get(k) for k in COMPARED} for r in (from_asgi, from_wsgi)]
                if status != 200:  # a 200's body is the live figures, read at two moments
                    assert shown[0] == shown[1], case
                    assert from_asgi.content == from_wsgi.content, case
                assert shown[0]["cache-control"] == "no-store", case
                if status == 401:
                    assert shown[0]["www-authenticate"] == 'Bearer realm="concmon"', case
                if status == 405:
                    assert shown[0]["allow"] == "GET, HEAD", case
                if method == "HEAD":
                    assert from_asgi.content == from_wsgi.content == b"", case
                    assert int(shown[0]["content-length"] or 0) > 0, case
                elif status == 200 and path.endswith("concurrency"):
                    assert from_asgi.json()["schema"] == from_wsgi.json()["schema"], case
