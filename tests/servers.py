"""Real servers on 127.0.0.1 for the tests: uvicorn in a thread, or any server as a subprocess.

Ports are ephemeral (bound to port 0 first); every wait is bounded, and every server is stopped
by the context manager that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(
    port: int, timeout: float = 20.0, proc: subprocess.Popen[Any] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            if sock.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on {HOST}:{port} within {timeout}s")


def url_host(host: str) -> str:
    """The host part of a URL reaching a server bound to ``host``: an IPv4 client reaches a
    socket bound to an IPv4-mapped address (``::ffff:127.0.0.1``) at the IPv4 address."""
    if host.startswith("::ffff:"):
        return host.removeprefix("::ffff:")
    return f"[{host}]" if ":" in host else host


@contextlib.contextmanager
def uvicorn_thread(app: Any, host: str = HOST, **config: Any) -> Iterator[str]:
    """Serve ``app`` with a real uvicorn server in a thread on ``host`` (a loopback address,
    IPv6 ones included); yields the base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **config))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve([sock])), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        yield f"http://{url_host(host)}:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


@contextlib.contextmanager
def server_process(
    argv: Sequence[str],
    port: int,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 30.0,
) -> Iterator[subprocess.Popen[str]]:
    """Run a server command (``argv[0]`` may be ``python``), wait for its port, stop it after.

    The server gets SIGTERM (graceful shutdown, final reports written) and is killed if it has
    not stopped within 15 s. Its output is returned in ``proc.output`` for assertions.
    """
    full_env = dict(os.environ)
    full_env.update(env or {})
    if argv and argv[0] == "python":
        argv = [sys.executable, *argv[1:]]
    proc = subprocess.Popen(
        list(argv),
        env=full_env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for_port(port, timeout, proc)
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                out, _ = proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                out, _ = proc.communicate(timeout=5)
        else:
            out, _ = proc.communicate(timeout=5)
        proc.output = out  # type: ignore[attr-defined]
