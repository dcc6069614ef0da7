"""The machine endpoints' rules on their own: who gets in, in which order, and what they get."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from ipaddress import ip_network

import pytest

from concmon import ConcurrencyMonitor, ConfigError
from concmon.adapter_options import AdapterOptions
from concmon.endpoints import MachineEndpoints, answer, client_allowed, refusal, token_matches

FRAMEWORKS = {"fastapi", "starlette", "flask", "werkzeug", "uvicorn", "gunicorn"}


def test_the_module_imports_no_web_framework() -> None:
    """concmon.endpoints and concmon.adapter_options load without any framework module."""
    code = (
        "import sys, concmon.endpoints, concmon.adapter_options; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FRAMEWORKS)!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("address", "allow", "allowed"),
    [
        ("127.0.0.1", ["127.0.0.1"], True),
        ("::ffff:127.0.0.1", ["127.0.0.1"], True),
        ("::ffff:10.1.2.3", ["10.0.0.0/8"], True),
        ("::ffff:127.0.0.1", ["::ffff:127.0.0.0/104"], True),
        ("127.0.0.1", ["::ffff:127.0.0.1"], False),
        ("::1", ["127.0.0.1"], False),
        ("::1", ["::1"], True),
        ("fe80::1%eth0", ["fe80::/10"], True),
        ("10.0.0.1", ["127.0.0.0/8", "10.0.0.0/8"], True),
        ("192.168.0.1", ["127.0.0.0/8", "10.0.0.0/8"], False),
        ("not-an-address", ["0.0.0.0/0"], False),
        ("", ["0.0.0.0/0"], False),
        (None, ["0.0.0.0/0", "::/0"], False),
    ],
)
def test_client_address_against_the_allow_list(
    address: str | None, allow: list[str], allowed: bool
) -> None:
    """IPv4-mapped clients match their IPv4 networks, zones are ignored, junk is refused."""
    assert client_allowed(address, [ip_network(n) for n in allow]) is allowed


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        ("Bearer s3cret", True),
        ("bearer s3cret", True),
        ("  BEARER   s3cret  ", True),
        ("Bearer s3cret2", False),
        ("Bearer s3cre", False),
        ("Basic s3cret", False),
        ("s3cret", False),
        ("Bearer", False),
        ("", False),
        (None, False),
        ("Bearer \u2603", False),
    ],
)
def test_bearer_token_header(header: str | None, matches: bool) -> None:
    """Only ``Bearer <token>`` (scheme in any case, spaces around) carries the token."""
    assert token_matches(header, "s3cret") is matches


def test_non_ascii_token_is_compared_as_the_bytes_a_client_sends() -> None:
    """A UTF-8 token arrives as Latin-1 text in both ASGI and WSGI, and still matches."""
    sent = "Bearer p\u00e4ss".encode().decode("latin-1")
    assert token_matches(sent, "p\u00e4ss")
    assert not token_matches("Bearer p\u00e4ss", "p\u00e4ss")


def test_checks_run_method_then_address_then_token() -> None:
    """A wrong method is 405 whoever asks; a refused address is 403 whatever the token."""
    allow = (ip_network("10.0.0.0/8"),)
    assert refusal("POST", "127.0.0.1", None, allow, "t") == refusal("POST", None, None, None, None)
    denied = refusal("GET", "127.0.0.1", "Bearer t", allow, "t")
    assert denied is not None and denied.status == 403
    unauthorized = refusal("GET", "10.0.0.1", "Bearer u", allow, "t")
    assert unauthorized is not None and unauthorized.status == 401
    assert ("WWW-Authenticate", 'Bearer realm="concmon"') in unauthorized.headers
    assert refusal("HEAD", "10.0.0.1", "Bearer t", allow, "t") is None


def test_head_answer_announces_the_length_without_a_body() -> None:
    """HEAD gets the GET's Content-Length and no body; every answer says no-store."""
    head = answer(200, b"12345", "text/plain", head=True)
    assert head.body == b""
    assert ("Content-Length", "5") in head.headers
    assert ("Cache-Control", "no-store") in head.headers
    assert head.status_line == "200 OK"
    method = refusal("PUT", None, None, None, None)
    assert method is not None and method.status_line == "405 Method Not Allowed"


def test_json_path_serves_the_given_monitor() -> None:
    """The JSON answer is the snapshot of the monitor the endpoints were given."""
    monitor = ConcurrencyMonitor()
    monitor.begin("/held")
    endpoints = MachineEndpoints(AdapterOptions(json_path="/stats"), lambda: monitor)
    assert endpoints.paths == {"/stats", "/stats/workers"}
    reply = endpoints.answer("/stats", "GET", "127.0.0.1", None, None)
    assert reply.status == 200
    assert ("Content-Type", "application/json") in reply.headers
    assert json.loads(reply.body)["endpoints"]["/held"]["active"] == 1


def test_metrics_path_calls_the_exporter_with_accept(monkeypatch: pytest.MonkeyPatch) -> None:
    """The metrics answer is the exporter's body and content type for the scrape's Accept."""
    module = types.ModuleType("concmon.exporters.prometheus")
    seen: list[str | None] = []

    def exposition(accept: str | None) -> tuple[bytes, str]:
        seen.append(accept)
        return b"m 1\n", "text/plain; version=0.0.4"

    module.exposition = exposition  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "concmon.exporters.prometheus", module)
    endpoints = MachineEndpoints(AdapterOptions(prometheus=True))
    endpoints.activate()  # an exporter without activate() is fine
    assert endpoints.paths == {"/metrics"}
    reply = endpoints.answer("/metrics", "GET", None, None, "text/plain")
    assert (reply.status, reply.body, seen) == (200, b"m 1\n", ["text/plain"])


@pytest.mark.parametrize("module", [None, types.ModuleType("concmon.exporters.prometheus")])
def test_missing_exporter_is_one_line_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, module: types.ModuleType | None
) -> None:
    """No exporter module, or one without exposition(), fails at set-up with the pip hint."""
    monkeypatch.setitem(sys.modules, "concmon.exporters.prometheus", module)
    with pytest.raises(ConfigError) as caught:
        MachineEndpoints(AdapterOptions(prometheus=True))
    message = str(caught.value)
    assert message.startswith("concmon: prometheus=True needs")
    assert "pip install 'concmon[prometheus]'" in message
    assert "\n" not in message
