"""The views the tests call: one per behaviour under test.

Views that must wait for the test wait on :data:`release` in-process, or for the file named by
``DJANGO_TEST_RELEASE_FILE`` when the project runs in server processes of its own; every wait
is bounded.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator

from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)

WAIT_S = 30.0

release = threading.Event()
"""Set by an in-process test to let the held views answer."""
streaming = threading.Event()
"""Set once a stream has sent its first chunk."""
rest = threading.Event()
"""Set by an in-process test to let a held stream send its last chunk (file: ``.rest``)."""


def _released(event: threading.Event = release, suffix: str = "") -> bool:
    path = os.environ.get("DJANGO_TEST_RELEASE_FILE")
    return event.is_set() or (path is not None and os.path.exists(path + suffix))


def _hold(event: threading.Event = release, suffix: str = "") -> None:
    deadline = time.monotonic() + WAIT_S
    while not _released(event, suffix) and time.monotonic() < deadline:
        time.sleep(0.01)


async def _ahold(event: threading.Event = release, suffix: str = "") -> None:
    deadline = time.monotonic() + WAIT_S
    while not _released(event, suffix) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


def legacy(request: HttpRequest, year: str) -> HttpResponse:
    return HttpResponse(year)


def item(request: HttpRequest, pk: int) -> JsonResponse:
    return JsonResponse({"id": pk})


def slow(request: HttpRequest) -> HttpResponse:
    _hold()
    return HttpResponse("done")


async def aslow(request: HttpRequest) -> HttpResponse:
    await _ahold()
    return HttpResponse("done")


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom")


def missing(request: HttpRequest) -> HttpResponse:
    raise Http404("no such thing")


def status(request: HttpRequest, code: int) -> HttpResponse:
    return HttpResponse(f"status {code}", status=code)


def stream(request: HttpRequest) -> StreamingHttpResponse:
    def chunks() -> Iterator[bytes]:
        yield b"first\n"
        streaming.set()
        _hold()
        yield b"last\n"

    return StreamingHttpResponse(chunks(), content_type="text/plain")


def astream(request: HttpRequest) -> StreamingHttpResponse:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"first\n"
        streaming.set()
        await _ahold()
        yield b"last\n"

    return StreamingHttpResponse(chunks(), content_type="text/plain")


def held(request: HttpRequest) -> StreamingHttpResponse:
    """A stream whose first chunk (``size`` bytes) waits for :data:`release`, its last for
    :data:`rest`."""
    size = int(request.GET.get("size", "1"))

    def chunks() -> Iterator[bytes]:
        yield b""
        _hold()
        yield b"x" * size
        _hold(rest, ".rest")
        yield b"end"

    return StreamingHttpResponse(chunks(), content_type="text/plain")


def aheld(request: HttpRequest) -> StreamingHttpResponse:
    """The same, asynchronous (served under ASGI)."""
    size = int(request.GET.get("size", "1"))

    async def chunks() -> AsyncIterator[bytes]:
        yield b""
        await _ahold()
        yield b"x" * size
        await _ahold(rest, ".rest")
        yield b"end"

    return StreamingHttpResponse(chunks(), content_type="text/plain")


def endless(request: HttpRequest) -> StreamingHttpResponse:
    """A stream that goes on until its client leaves (bounded: 60 s of chunks)."""

    def chunks() -> Iterator[bytes]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            yield b"tick\n" * 1000
            streaming.set()
            time.sleep(0.005)

    return StreamingHttpResponse(chunks(), content_type="text/plain")


def aendless(request: HttpRequest) -> StreamingHttpResponse:
    """The same, asynchronous (served under ASGI)."""

    async def chunks() -> AsyncIterator[bytes]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            yield b"tick\n" * 1000
            streaming.set()
            await asyncio.sleep(0.005)

    return StreamingHttpResponse(chunks(), content_type="text/plain")


def download(request: HttpRequest) -> FileResponse:
    handle = tempfile.TemporaryFile()  # noqa: SIM115 - FileResponse closes it when sent
    handle.write(b"x" * 100_000)
    handle.seek(0)
    return FileResponse(handle, filename="data.bin")
