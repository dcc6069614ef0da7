"""Response head, first byte, status, method and time queued before Django, under gunicorn (WSGI)
and uvicorn (ASGI).

Every figure is read from the project's JSON endpoint, from the lifetime distributions (a report
between two reads restarts the interval ones). Holds are imposed by the test and only lower
bounds are asserted: a loaded machine makes everything slower, never faster.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests import timing
from tests.django.conftest import served as served_in_process
from tests.django.project import views
from tests.servers import HOST, free_port, server_process
from tests.timing import STAMP_FORMS, count, total

pytestmark = pytest.mark.slow

HOLD = 0.2
"""Seconds the test keeps a first chunk back once the request is active."""

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Served:
    url: str
    held: str
    """The path of the held stream (sync under WSGI, async under ASGI)."""
    release: Callable[[], None]
    rest: Callable[[], None]


@contextlib.contextmanager
def gunicorn_served(tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    release = tmp_path / "release"
    argv = [
        "python", "-m", "gunicorn", "-k", "gthread", "-w", "1", "--threads", "4",
        "-b", f"{HOST}:{port}", "--graceful-timeout", "10",
        "tests.django.project.wsgi:application",
    ]  # fmt: skip
    env = {
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.django.project.settings",
        "CONCMON_SINKS": "",
        "CONCMON_LOG_FILE": str(tmp_path / "concmon.log"),
        "CONCMON_SYSTEM_METRICS": "false",
        "DJANGO_TEST_RELEASE_FILE": str(release),
    }
    rest = tmp_path / "release.rest"
    try:
        with server_process(argv, port, env=env, cwd=ROOT, timeout=60):
            yield Served(f"http://{HOST}:{port}", "held/", release.touch, rest.touch)
    finally:
        release.touch()
        rest.touch()


@pytest.fixture(params=["gunicorn", "uvicorn"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    if request.param == "gunicorn":
        with gunicorn_served(tmp_path) as server:
            yield server
    else:
        with served_in_process("asgi") as url:
            yield Served(url, "aheld/", views.release.set, views.rest.set)


# Django's servers answer more slowly than the others under load: a longer wait.
reached = functools.partial(timing.reached, within_s=30.0)
settled = functools.partial(timing.settled, within_s=30.0)


def test_held_first_chunk_is_the_time_to_first_byte(served: Served) -> None:
    """A stream whose first chunk is held: its time to first byte is at least the hold, after
    its response head, and its duration exceeds it (an empty chunk before is no first byte)."""
    first = threading.Event()
    got: list[bytes] = []

    def read() -> None:
        with httpx.Client(base_url=served.url, timeout=30) as client:
            with client.stream("GET", f"/{served.held}") as response:
                chunks = response.iter_bytes()
                got.append(next(chunks))
                first.set()
                got.append(b"".join(chunks))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        reached(served.url, served.held, lambda f: f["active"] == 1)
        time.sleep(HOLD)
        served.release()
        assert first.wait(20)
        served.rest()
    finally:
        served.release()
        served.rest()
        reader.join(30)
    assert got[0].startswith(b"x") and got[-1].endswith(b"end")
    figures = settled(served.url, served.held, 1)
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
    path = f"/{served.held}?size={16 << 20}"
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
    reached(served.url, served.held, lambda f: f["active"] == 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()
    if served.held == "aheld/":
        # Django's ASGI handler notices the departure and cancels the stream itself; a chunk
        # let go before it noticed would go to uvicorn, which drops it without an error.
        settled(served.url, served.held, 1)
    served.release()
    figures = settled(served.url, served.held, 1)
    assert figures["cancelled"] == 1
    assert (count(figures, "duration"), count(figures, "ttfb")) == (1, 0)
    assert figures["responses"] == {"GET 2xx cancelled": 1}


def test_status_classes_methods_and_errors_label_the_responses(served: Served) -> None:
    """2xx/3xx/4xx/5xx and the method label each response; Http404 is 4xx, not failed; an
    exception Django turned into a 500 is 5xx failed; an unknown method counts as other."""
    with httpx.Client(base_url=served.url, timeout=30) as client:
        for code in (201, 302, 404, 503):
            assert client.get(f"/status/{code}/").status_code == code
        assert client.get("/api/missing/").status_code == 404
        assert client.get("/boom/").status_code == 500
        assert client.put("/").status_code == 200
        assert client.request("PURGE", "/").status_code == 200
    status = settled(served.url, "status/<int:code>/", 4)
    assert status["responses"] == {
        "GET 2xx ok": 1,
        "GET 3xx ok": 1,
        "GET 4xx ok": 1,
        "GET 5xx failed": 1,
    }
    assert [count(status, d) for d in ("duration", "head", "ttfb")] == [4, 4, 4]
    missing = settled(served.url, "api/missing/", 1)
    assert (missing["responses"], missing["failed"]) == ({"GET 4xx ok": 1}, 0)
    boom = settled(served.url, "boom/", 1)
    assert (boom["responses"], boom["failed"]) == ({"GET 5xx failed": 1}, 1)
    assert [count(boom, d) for d in ("duration", "head", "ttfb")] == [1, 1, 1]
    assert settled(served.url, "/", 2)["responses"] == {"PUT 2xx ok": 1, "other 2xx ok": 1}


# Django's own warning: under ASGI it reads a FileResponse's file in a thread.
@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume synchronous")
def test_plain_async_and_file_responses_have_every_timing(served: Served) -> None:
    """A plain sync view, an async view and a FileResponse each get one duration, head and
    time-to-first-byte sample, in that order of size."""
    served.release()
    with httpx.Client(base_url=served.url, timeout=30) as client:
        assert client.get("/api/items/1/").status_code == 200
        assert client.get("/aslow/").text == "done"
        assert len(client.get("/download/").content) == 100_000
    for name in ("api/items/<int:pk>/", "aslow/", "download/"):
        figures = settled(served.url, name, 1)
        assert [count(figures, d) for d in ("duration", "head", "ttfb")] == [1, 1, 1], name
        head, ttfb, duration = (total(figures, d) for d in ("head", "ttfb", "duration"))
        assert head <= ttfb <= duration, name
        assert figures["responses"] == {"GET 2xx ok": 1}, name


WAITS = {
    form: STAMP_FORMS[form]
    for form in (
        "nginx, t= and seconds with 3 decimals",
        "seconds, no decimals",
        "t= and milliseconds",
    )
}


def test_request_start_in_seconds_or_ms_is_a_queued_sample(served: Served) -> None:
    """X-Request-Start in seconds, nginx's t=msec or milliseconds gives one queued sample per
    request, at least as long as the stamp is old; without the header there is none."""
    expected = 0.0
    with httpx.Client(base_url=served.url, timeout=30) as client:
        for i, (form, (ago, written)) in enumerate(WAITS.items(), 1):
            stamp = written(time.time() - ago)
            assert client.get("/", headers={"X-Request-Start": stamp}).status_code == 200
            figures = settled(served.url, "/", i)
            expected += ago
            assert count(figures, "queued") == i, form
            assert total(figures, "queued") >= expected - 0.001 * i, form
        assert client.get("/").status_code == 200
    figures = settled(served.url, "/", len(WAITS) + 1)
    assert count(figures, "duration") == len(WAITS) + 1
    assert count(figures, "queued") == len(WAITS)


@pytest.mark.parametrize("header", ["X-Queue-Start", None])
def test_request_start_header_can_be_renamed_or_switched_off(header: str | None) -> None:
    """The ``request_start_header`` option names the header read (the default one is then
    ignored), and None reads none."""
    from django.test import override_settings

    stamp = f"t={time.time() - 2.0:.3f}"
    options = {"json_path": "/concurrency", "request_start_header": header}
    with override_settings(CONCMON=options), served_in_process("asgi") as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            client.get("/", headers={"X-Request-Start": stamp})
            if header is not None:
                client.get("/", headers={header: stamp})
        figures = settled(url, "/", 2 if header is not None else 1)
    assert count(figures, "queued") == (1 if header is not None else 0)
