"""``concmon-cli demo``: the proxy, a bounded burst of clients, and the live table.

Everything runs in this process on 127.0.0.1: uvicorn serves the demo proxy (counted by the
ASGI middleware) on an ephemeral port in a thread, an asyncio httpx client drives waves of
requests at it from another thread, and the main thread draws the same table ``watch`` draws,
read from the app's own ``/concurrency`` endpoint (its rate and percentile columns included).
It stops by itself after ``duration`` seconds, or on Ctrl-C, and always shuts the server and
the clients down before returning.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.text import Text

from concmon.host import HostView
from concmon.snapshot import Distribution, Snapshot
from concmon_cli.errors import CliError
from concmon_cli.extras import require
from concmon_cli.render import Footer, Thresholds, view
from concmon_cli.sources import UrlSource


@dataclass
class LoadStats:
    """What the clients saw, one count per way a request ended; they always add up.

    ``started`` = ``answered`` + ``errors`` + ``cancelled`` + ``unsent``: a request the demo
    cancels (each wave ends so, and so does the demo) is ``cancelled`` once its headers left
    the client and ``unsent`` before that, so the server can only have counted the first kind.
    """

    started: int = 0
    answered: int = 0
    answered_failed: int = 0
    """Of ``answered``: the ones answered with an error status."""
    errors: int = 0
    cancelled: int = 0
    unsent: int = 0
    queue_peak: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        with self.lock:
            self.started += 1

    def add(self, status: int | None) -> None:
        with self.lock:
            if status is None:
                self.errors += 1
            else:
                self.answered += 1
                self.answered_failed += status >= 400

    def cancel(self, sent: bool) -> None:
        with self.lock:
            if sent:
                self.cancelled += 1
            else:
                self.unsent += 1


def _lifetime(final: Snapshot, name: str) -> Distribution | None:
    """One distribution over every endpoint of the run (they share the monitor's buckets)."""
    total: Distribution | None = None
    for stats in final.endpoints.values():
        part = stats.distribution(name, lifetime=True)
        if part is not None:
            total = part if total is None else total.plus(part)
    return total


def _latency(final: Snapshot) -> str:
    """The run's latency as the server's buckets estimate it, or nothing before any finished."""
    duration, ttfb = _lifetime(final, "duration"), _lifetime(final, "ttfb")
    if duration is None or not duration.count:
        return ""
    text = f" Requests took p50 {duration.p50_ms:.0f} ms, p99 {duration.p99_ms:.0f} ms"
    if ttfb is not None and ttfb.count:
        text += f"; first byte p99 {ttfb.p99_ms:.0f} ms"
    return text + "."


def summary(stats: LoadStats, final: Snapshot) -> str:
    """The closing line: the clients' requests, each way they ended named, then the server's,
    then its latency percentiles over the whole run."""
    return (
        f"demo over: the clients started {stats.started} requests: {stats.answered} answered "
        f"({stats.answered_failed} with an error), {stats.cancelled} cancelled in flight, "
        f"{stats.unsent} cancelled before they were sent, {stats.errors} connection errors. "
        f"The server counted {final.total}: {final.completed} completed "
        f"({final.failed} failed, {final.cancelled} cancelled), {final.active} still active, "
        f"peak {final.peak} at once; the upstream queue peaked at {stats.queue_peak} waiting."
        f"{_latency(final)}"
    )


async def _client(
    base: str, stop: threading.Event, stats: LoadStats, rng: random.Random, budget: list[int]
) -> None:
    import httpx

    sent = False

    async def trace(event: str, info: Mapping[str, Any]) -> None:
        nonlocal sent
        if event.endswith("send_request_headers.complete"):
            sent = True  # the server has the request from here on: it counts it

    async with httpx.AsyncClient(base_url=base, timeout=30.0) as client:
        while not stop.is_set() and budget[0] > 0:
            budget[0] -= 1
            path = rng.choice(["/v1/chat/completions", "/v1/completions"])
            stream = rng.random() < 0.5
            body: dict[str, Any] = {"max_tokens": rng.randint(4, 24), "stream": stream}
            if path == "/v1/chat/completions":
                body["messages"] = [{"role": "user", "content": "hello"}]
            else:
                body["prompt"] = "hello"
            status: int | None
            sent = False
            extensions = {"trace": trace}
            stats.start()
            try:
                if stream:
                    async with client.stream(
                        "POST", path, json=body, extensions=extensions
                    ) as response:
                        async for _ in response.aiter_bytes():
                            pass
                        status = response.status_code
                else:
                    response = await client.post(path, json=body, extensions=extensions)
                    status = response.status_code
            except httpx.HTTPError:
                status = None
            except asyncio.CancelledError:
                stats.cancel(sent)
                raise
            stats.add(status)
            await asyncio.sleep(rng.uniform(0.0, 0.2))


async def _drive(base: str, stop: threading.Event, stats: LoadStats, max_requests: int) -> None:
    """Waves of clients: a few, then a burst well past the upstream's parallelism, then calm."""
    budget = [max_requests]
    rng = random.Random(42)
    waves = (4, 24, 8, 32, 6)
    while not stop.is_set() and budget[0] > 0:
        for clients in waves:
            if stop.is_set() or budget[0] <= 0:
                return
            tasks = [
                asyncio.create_task(_client(base, stop, stats, random.Random(rng.random()), budget))
                for _ in range(clients)
            ]
            done = asyncio.gather(*tasks)
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline and not stop.is_set():
                await asyncio.sleep(0.1)
            for task in tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await done


def _listen() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def run_demo(
    console: Console,
    *,
    duration: float,
    refresh: float = 0.5,
    max_requests: int = 3000,
    parallel: int = 4,
    error_rate: float = 0.05,
) -> LoadStats:
    """Serve, load, draw; returns what the clients saw. Ctrl-C ends it early, cleanly."""
    require("concmon-cli demo", "cli", "uvicorn", "fastapi", "httpx")
    import uvicorn

    from concmon_cli._launch import wrap
    from concmon_cli.demo_app import SimulatedUpstream, create_app

    os.environ.setdefault("MONITOR_UPDATE_INTERVAL", "1")
    os.environ.setdefault("CONCMON_SINKS", "")  # the demo writes no files
    app = wrap(create_app(SimulatedUpstream(parallel=parallel, error_rate=error_rate)))
    sock = _listen()
    port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
    )
    server_thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(sockets=[sock])), name="demo-server", daemon=True
    )
    stop = threading.Event()
    stats = LoadStats()
    load_thread = threading.Thread(
        target=lambda: asyncio.run(_drive(base, stop, stats, max_requests)),
        name="demo-load",
        daemon=True,
    )
    server_thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not server_thread.is_alive() or time.monotonic() > deadline:
            raise CliError("the demo server did not start")
        time.sleep(0.02)
    load_thread.start()
    source = UrlSource(f"{base}/concurrency")
    stream = source.stream(initial=True)
    workers = HostView()
    ends = time.monotonic() + duration
    thresholds = Thresholds(warn_active=parallel, crit_active=parallel * 4, warn_queue=1)

    def poll() -> None:
        for snapshot in stream.poll():
            workers.add(snapshot)
            stats.queue_peak = max(stats.queue_peak, snapshot.queue_peak)

    def frame() -> Any:
        live = workers.live()
        left = max(0.0, ends - time.monotonic())
        title = Text(
            f"concmon demo: OpenAI-style proxy on {base}, upstream parallelism {parallel}, "
            f"{error_rate:.0%} injected errors; {stats.started} requests started; "
            f"ends in {left:.0f}s (Ctrl-C stops)",
            style="bold",
        )
        table = view(
            live,
            live[0] if live else None,
            Footer(source.label, 0, 0, stream.status),
            thresholds,
            terminal=console.is_terminal,
        )
        return Group(title, Text(""), table)

    try:
        if console.is_terminal:
            from rich.live import Live

            with Live(console=console, auto_refresh=False) as screen:
                while time.monotonic() < ends and load_thread.is_alive():
                    poll()
                    screen.update(frame(), refresh=True)
                    time.sleep(refresh)
        else:
            next_print = 0.0
            while time.monotonic() < ends and load_thread.is_alive():
                poll()
                if time.monotonic() >= next_print:
                    console.print(frame())
                    console.print()
                    next_print = time.monotonic() + max(refresh, 2.0)
                time.sleep(refresh)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        load_thread.join(35)
        poll()
        server.should_exit = True
        server_thread.join(15)
        sock.close()
    return stats
