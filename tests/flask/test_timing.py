"""Response head, first byte, status, method and time queued before the app, under werkzeug and
gunicorn.

Every figure is read from the JSON endpoint of the running server, from the lifetime
distributions (a report between two reads restarts the interval ones). Holds are imposed by the
test and only lower bounds are asserted: a loaded machine makes everything slower, never faster.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from concmon import ConcurrencyMonitor, get_monitor
from concmon.testing import FakeClock, check_balanced
from concmon_flask import ConcMonWSGIMiddleware
from tests.flask.apps import build_app
from tests.flask.serving import werkzeug_thread
from tests.flask.wsgi_driver import Call
from tests.servers import HOST, free_port, server_process
from tests.timing import STAMP_FORMS, count, reached, settled, total

pytestmark = pytest.mark.slow

HOLD = 0.2
"""Seconds the test keeps a first chunk back once the request is active."""

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Served:
    url: str
    release: Callable[[], None]
    rest: Callable[[], None]


@contextlib.contextmanager
def werkzeug_served(**options: Any) -> Iterator[Served]:
    app, gates = build_app(json_path=True, sinks=(), start_reporter=False, **options)
    try:
        with werkzeug_thread(app) as url:
            yield Served(url, gates.release.set, gates.rest.set)
    finally:
        gates.release.set()
        gates.rest.set()


@contextlib.contextmanager
def gunicorn_served(tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    release = tmp_path / "release"
    argv = [
        "python", "-m", "gunicorn", "-k", "gthread", "-w", "1", "--threads", "4",
        "-b", f"{HOST}:{port}", "--graceful-timeout", "10",
        "tests.flask.apps:create_served_app()",
    ]  # fmt: skip
    env = {
        "PYTHONPATH": str(ROOT),
        "CONCMON_SINKS": "jsonl",
        "CONCMON_JSONL_FILE": str(tmp_path / "reports.jsonl"),
        "CONCMON_SYSTEM_METRICS": "false",
        "FLASK_TEST_RELEASE_FILE": str(release),
    }
    try:
        with server_process(argv, port, env=env, cwd=ROOT):
            yield Served(f"http://{HOST}:{port}", release.touch, (tmp_path / "release.rest").touch)
    finally:
        release.touch()
        (tmp_path / "release.rest").touch()


@pytest.fixture(params=["werkzeug", "gunicorn"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    if request.param == "werkzeug":
        with werkzeug_served() as server:
            yield server
    else:
        with gunicorn_served(tmp_path) as server:
            yield server


def test_held_first_chunk_is_the_time_to_first_byte(served: Served) -> None:
    """A stream whose first chunk is held: its time to first byte is at least the hold, after
    its response head, and its duration exceeds it."""
    first = threading.Event()
    got: list[bytes] = []

    def read() -> None:  # a WSGI server sends the head with the first chunk: wait elsewhere
        with httpx.Client(base_url=served.url, timeout=30) as client:
            with client.stream("GET", "/held") as response:
                chunks = response.iter_bytes()
                got.append(next(chunks))
                first.set()
                got.append(b"".join(chunks))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        reached(served.url, "/held", lambda f: f["active"] == 1)
        time.sleep(HOLD)
        served.release()
        assert first.wait(20)
        served.rest()
    finally:
        served.release()
        served.rest()
        reader.join(30)
    assert got[0].startswith(b"x") and got[-1].endswith(b"end")
    figures = settled(served.url, "/held", 1)
    assert [count(figures, d) for d in ("duration", "head", "ttfb")] == [1, 1, 1]
    head, ttfb, duration = (total(figures, d) for d in ("head", "ttfb", "duration"))
    assert ttfb >= HOLD
    assert head < ttfb < duration
    assert figures["responses"] == {"GET 2xx ok": 1}


def test_client_gone_before_the_first_byte_has_no_ttfb(served: Served) -> None:
    """A client that hangs up while the first chunk is held counts cancelled, with a duration
    but no time to first byte."""
    port = int(served.url.rsplit(":", 1)[1])
    sock = socket.create_connection((HOST, port), timeout=10)
    # A first chunk larger than any socket buffer: its write fails once the client is gone.
    sock.sendall(f"GET /held?size={16 << 20} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
    reached(served.url, "/held", lambda f: f["active"] == 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()
    served.release()
    figures = settled(served.url, "/held", 1)
    assert figures["cancelled"] == 1
    assert (count(figures, "duration"), count(figures, "ttfb")) == (1, 0)
    assert figures["responses"] == {"GET 2xx cancelled": 1}


def test_status_classes_methods_and_errors_label_the_responses(served: Served) -> None:
    """2xx/3xx/4xx/5xx and the method label each response; a 4xx is not failed; an error the
    app turned into a 500 is 5xx failed; an unknown method counts as other."""
    with httpx.Client(base_url=served.url, timeout=30) as client:
        for code in (204, 302, 404, 503):
            assert client.get(f"/status/{code}").status_code == code
        assert client.put("/any").status_code == 200
        assert client.request("PURGE", "/any").status_code == 405
        assert client.get("/boom").status_code == 500
    status = settled(served.url, "/status/<int:code>", 4)
    assert status["responses"] == {
        "GET 2xx ok": 1,
        "GET 3xx ok": 1,
        "GET 4xx ok": 1,
        "GET 5xx failed": 1,
    }
    assert [count(status, d) for d in ("duration", "head", "ttfb")] == [4, 4, 4]
    assert settled(served.url, "/any", 1)["responses"] == {"PUT 2xx ok": 1}
    assert settled(served.url, "<unmatched>", 1)["responses"] == {"other 4xx ok": 1}
    boom = settled(served.url, "/boom", 1)
    assert boom["responses"] == {"GET 5xx failed": 1}
    assert [count(boom, d) for d in ("duration", "head", "ttfb")] == [1, 1, 1]


WAITS = STAMP_FORMS


def test_request_start_in_every_unit_is_a_queued_sample(served: Served) -> None:
    """X-Request-Start in seconds, nginx's t=msec, milliseconds or microseconds gives one
    queued sample per request, at least as long as the stamp is old."""
    expected = 0.0
    with httpx.Client(base_url=served.url, timeout=30) as client:
        for i, (form, (ago, written)) in enumerate(WAITS.items(), 1):
            stamp = written(time.time() - ago)
            assert client.get("/", headers={"X-Request-Start": stamp}).status_code == 200
            figures = settled(served.url, "/", i)
            expected += ago
            assert count(figures, "queued") == i, form
            assert total(figures, "queued") >= expected - 0.001 * i, form


def test_absent_or_implausible_request_start_gives_no_sample(served: Served) -> None:
    """No header, a stamp in the future, one older than the bound, one in nanoseconds and one
    that is no number: durations recorded, no queued sample."""
    now = time.time()
    stamps = [None, f"t={now + 3600:.3f}", "t=1000", str(int(now * 1e9)), "t=soon"]
    with httpx.Client(base_url=served.url, timeout=30) as client:
        for stamp in stamps:
            headers = {} if stamp is None else {"X-Request-Start": stamp}
            assert client.get("/", headers=headers).status_code == 200
    figures = settled(served.url, "/", len(stamps))
    assert count(figures, "duration") == len(stamps)
    assert count(figures, "queued") == 0


@pytest.mark.parametrize("header", ["X-Queue-Start", None])
def test_request_start_header_can_be_renamed_or_switched_off(header: str | None) -> None:
    """``request_start_header`` names the header read (the default one is then ignored), and
    None reads none."""
    stamp = f"t={time.time() - 2.0:.3f}"
    with werkzeug_served(request_start_header=header) as served:
        with httpx.Client(base_url=served.url, timeout=30) as client:
            client.get("/", headers={"X-Request-Start": stamp})
            if header is not None:
                client.get("/", headers={header: stamp})
        figures = settled(served.url, "/", 2 if header is not None else 1)
    assert count(figures, "queued") == (1 if header is not None else 0)


def test_an_exception_out_of_the_app_has_no_status() -> None:
    """A BaseException out of the view (no response head sent): failed, status none."""
    app, _ = build_app(sinks=(), start_reporter=False)
    with pytest.raises(SystemExit):
        Call(app, "/exit")
    stats = check_balanced(get_monitor().snapshot()).endpoints["/exit"]
    assert stats.responses == {"GET none failed": 1}
    assert stats.head_all is not None and stats.head_all.count == 0


@pytest.mark.parametrize(
    ("chunks", "ttfb_s"),
    [([b"", b"", b"abc", b"def"], 7.0), ([b"", b""], 7.0), ([], 1.0), ([b"whole"], 1.0)],
)
def test_first_byte_is_the_first_non_empty_chunk_or_the_end(
    chunks: list[bytes], ttfb_s: float
) -> None:
    """Empty chunks before the first byte are not it; an empty body's end is (exact times on a
    fake clock moved 1, 2, 4, 8 s as the server takes each chunk)."""
    clock = FakeClock()
    monitor = ConcurrencyMonitor(clock=clock)

    def app(environ: Any, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        step = 1.0
        for chunk in chunks:
            clock.advance(step)
            step *= 2
            yield chunk
        clock.advance(step)

    call = Call(ConcMonWSGIMiddleware(app, monitor=monitor), "/x", "PATCH").read()
    call.close()
    stats = check_balanced(monitor.snapshot()).endpoints["/x"]
    assert stats.ttfb_all is not None and stats.head_all is not None
    assert (stats.ttfb_all.count, stats.ttfb_all.sum_s) == (1, ttfb_s)
    assert (stats.head_all.count, stats.head_all.sum_s) == (1, 0.0)
    assert stats.responses == {"PATCH 2xx ok": 1}
