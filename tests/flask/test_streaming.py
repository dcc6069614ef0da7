"""Streamed responses stay active for the whole stream; clients that vanish count cancelled."""

from __future__ import annotations

import gc
import socket

import httpx
from flask import Flask

from concmon import ConcurrencyMonitor
from concmon.testing import check_balanced, check_invariants
from tests.flask.apps import Gates
from tests.flask.serving import raw_request, settled, wait_until
from tests.flask.wsgi_driver import Call

Served = tuple[httpx.Client, Gates, ConcurrencyMonitor]
STREAM = "/stream/<int:chunks>"


def test_stream_is_active_until_the_last_chunk(served: Served) -> None:
    """A stream_with_context generator keeps its request active until the body is done."""
    client, gates, monitor = served
    with client.stream("GET", "/stream/4", params={"hold": "1"}) as response:
        chunks = response.iter_bytes()
        assert next(chunks)
        gates.streaming.wait(10)
        snap = check_invariants(monitor.snapshot())
        assert snap.endpoints[STREAM].active == 1
        assert snap.active == 1
        gates.release.set()
        assert len(b"".join(chunks)) >= 3 * 16
    stats = settled(monitor).endpoints[STREAM]
    assert (stats.total, stats.completed, stats.failed, stats.cancelled) == (1, 1, 0, 0)


def test_client_gone_mid_stream_counts_cancelled(served: Served) -> None:
    """A client that disconnects mid-stream is cancelled when the server closes the body."""
    client, gates, monitor = served
    port = int(str(client.base_url).rsplit(":", 1)[1].rstrip("/"))
    sock = raw_request(port, "/stream/100000?size=65536")
    assert sock.recv(1024).startswith(b"HTTP/1.1 200")
    gates.streaming.wait(10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()
    assert gates.stream_ended.wait(20), "the server never closed the response"
    stats = settled(monitor).endpoints[STREAM]
    assert (stats.total, stats.failed, stats.cancelled) == (1, 0, 1)


def test_exception_mid_stream_counts_failed(
    instrumented: tuple[Flask, Gates, ConcurrencyMonitor],
) -> None:
    """A body generator that raises after the first chunk counts failed, not cancelled."""
    app, _, monitor = instrumented
    call = Call(app, "/stream-fail")
    try:
        call.read()
    except RuntimeError:
        pass
    call.close()
    stats = check_balanced(monitor.snapshot()).endpoints["/stream-fail"]
    assert (stats.total, stats.failed, stats.cancelled) == (1, 1, 0)


def test_never_closed_body_is_balanced_when_collected(
    instrumented: tuple[Flask, Gates, ConcurrencyMonitor],
) -> None:
    """A server that never calls close(): the request ends when the body is collected."""
    app, _, monitor = instrumented
    full = Call(app, "/").read()
    partial = Call(app, "/stream/5").read(limit=2)
    assert monitor.snapshot().active == 2
    del full, partial
    gc.collect()
    snap = check_balanced(monitor.snapshot())
    assert (snap.endpoints["/"].completed, snap.endpoints["/"].cancelled) == (1, 0)
    assert snap.endpoints[STREAM].cancelled == 1


def test_body_is_passed_through_unbuffered(
    instrumented: tuple[Flask, Gates, ConcurrencyMonitor],
) -> None:
    """Each chunk reaches the server as the app yields it, not gathered into one."""
    app, _, monitor = instrumented
    call = Call(app, "/stream/3?size=5").read().close()
    assert call.chunks == [b"xxxxx"] * 3
    wait_until(lambda: monitor.snapshot().active == 0)
