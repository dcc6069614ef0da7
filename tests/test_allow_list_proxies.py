"""The ``metrics_allow`` list meets proxy headers: a forged header never widens who gets in.

uvicorn rewrites the client address from ``X-Forwarded-For`` for a peer in
``forwarded_allow_ips`` (127.0.0.1 by default), and werkzeug's ``ProxyFix`` does the same for
a WSGI app, so the address an adapter sees may be a header's claim. With
``metrics_allow_forwarded`` off, a request with a forwarding header is refused; on, the
rewritten address is judged, trusting the proxy. Both adapters run on real servers on
127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from concmon_fastapi import install
from concmon_flask import ConcMon
from tests.flask.serving import werkzeug_thread
from tests.servers import uvicorn_thread

pytestmark = pytest.mark.slow

FORGED = {"X-Forwarded-For": "10.1.2.3"}

Serve = Callable[..., AbstractContextManager[str]]


@pytest.fixture(autouse=True)
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """No sink writes anything; the tests read only the endpoints."""
    monkeypatch.setenv("CONCMON_SINKS", "")


def _uvicorn(**options: Any) -> AbstractContextManager[str]:
    app = FastAPI()
    install(app, prometheus=True, json_path=True, **options)
    # uvicorn's defaults, spelled out: X-Forwarded-For from 127.0.0.1 replaces the client.
    return uvicorn_thread(app, proxy_headers=True, forwarded_allow_ips="127.0.0.1")


def _werkzeug(**options: Any) -> AbstractContextManager[str]:
    app = Flask(__name__)
    ConcMon(app, prometheus=True, json_path=True, start_reporter=False, **options)
    # Outside concmon, as a deployment behind one proxy has it: REMOTE_ADDR is the header's.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    return werkzeug_thread(app)


SERVERS = pytest.mark.parametrize("serve", [_uvicorn, _werkzeug], ids=["uvicorn", "werkzeug"])


@pytest.fixture
def get() -> Iterator[Callable[[str, str, dict[str, str]], httpx.Response]]:
    """GET a path of a base URL with headers, from 127.0.0.1."""
    with httpx.Client(timeout=20) as client:
        yield lambda base, path, headers: client.get(base + path, headers=headers)


@SERVERS
def test_a_forged_forwarded_for_does_not_pass_the_allow_list(serve: Serve, get: Any) -> None:
    """A local client claiming 10.1.2.3 in X-Forwarded-For is refused by a 10.0.0.0/8 list,
    with a body naming the option; without the header it is refused as 127.0.0.1."""
    with serve(metrics_allow="10.0.0.0/8") as base:
        forged = get(base, "/metrics", FORGED)
        forged_json = get(base, "/concurrency", FORGED)
        direct = get(base, "/metrics", {})
    assert forged.status_code == 403
    assert "X-Forwarded-For" in forged.text
    assert "metrics_allow_forwarded=True" in forged.text
    assert forged_json.status_code == 403
    assert direct.status_code == 403
    assert direct.text == "Forbidden: client address not allowed\n"


@SERVERS
@pytest.mark.parametrize(
    "headers",
    [{"Forwarded": "for=127.0.0.1"}, {"X-Real-IP": "127.0.0.1"}, {"X-Forwarded-For": "127.0.0.1"}],
    ids=["forwarded", "x-real-ip", "x-forwarded-for"],
)
def test_any_forwarding_header_is_refused_by_default(
    serve: Serve, get: Any, headers: dict[str, str]
) -> None:
    """Each forwarding header gets a 403 even when the address it claims is allowed, while
    the same client without it gets in."""
    with serve(metrics_allow="127.0.0.0/8") as base:
        with_header = get(base, "/metrics", headers)
        plain = get(base, "/metrics", {})
    assert with_header.status_code == 403
    assert next(iter(headers)) in with_header.text
    assert plain.status_code == 200
    assert "concmon_" in plain.text


@SERVERS
def test_trusting_the_proxy_judges_the_forwarded_address(serve: Serve, get: Any) -> None:
    """With metrics_allow_forwarded, the address the server took from the proxy's header is
    judged: 10.1.2.3 passes 10.0.0.0/8 and a direct 127.0.0.1 does not."""
    with serve(metrics_allow="10.0.0.0/8", metrics_allow_forwarded=True) as base:
        forwarded = get(base, "/metrics", FORGED)
        direct = get(base, "/metrics", {})
    assert forwarded.status_code == 200
    assert "concmon_" in forwarded.text
    assert direct.status_code == 403


@SERVERS
def test_without_an_allow_list_forwarding_headers_change_nothing(serve: Serve, get: Any) -> None:
    """No metrics_allow: a forwarding header is irrelevant and the token alone decides."""
    with serve(metrics_token="t") as base:
        no_token = get(base, "/metrics", FORGED)
        token = get(base, "/metrics", {**FORGED, "Authorization": "Bearer t"})
    assert no_token.status_code == 401
    assert token.status_code == 200
