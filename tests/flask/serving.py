"""Flask's threaded development server in a thread, and small HTTP helpers for the tests."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from werkzeug.serving import make_server

from concmon import ConcurrencyMonitor, Snapshot
from concmon.testing import check_balanced
from tests.servers import HOST, url_host


@contextlib.contextmanager
def werkzeug_thread(app: Any, host: str = HOST) -> Iterator[str]:
    """Serve ``app`` with werkzeug's threaded server on ``host`` (a loopback address, IPv6
    ones included); yields the base URL a client reaches it at."""
    server = make_server(host, 0, app, threaded=True)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://{url_host(host)}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(15)


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    """Poll ``predicate`` every 10 ms until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached within {timeout}s: {what}")
        time.sleep(0.01)


def raw_request(port: int, path: str, method: str = "GET") -> socket.socket:
    """Send a request over a plain socket and return the socket (for clients that vanish)."""
    sock = socket.create_connection((HOST, port), timeout=10)
    sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
    return sock


def settled(monitor: ConcurrencyMonitor, timeout: float = 15.0) -> Snapshot:
    """The snapshot once nothing is active any more (a server closes a response after the
    client has read it, so the last decrement may trail the client by a moment)."""
    wait_until(lambda: monitor.snapshot().active == 0, timeout, "all requests finished")
    return check_balanced(monitor.snapshot())
