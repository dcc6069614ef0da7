"""Many requests at once on the threaded development server: exact active, peak and totals."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from concmon import get_runtime
from concmon.testing import CapturingSink, check_invariants
from tests.flask.apps import build_app
from tests.flask.serving import settled, wait_until, werkzeug_thread

N = 100


def test_hundred_concurrent_requests_are_all_active_at_once() -> None:
    """100 requests held in a slow route: active == 100 exactly, a report shows the peak."""
    app, gates = build_app(sinks=(), update_interval=0.2)
    runtime = get_runtime()
    assert runtime is not None
    sink = CapturingSink()
    runtime.plugins.register(sink, "capture")
    monitor = runtime.monitor
    limits = httpx.Limits(max_connections=N + 10, max_keepalive_connections=0)
    with (
        werkzeug_thread(app) as base,
        httpx.Client(base_url=base, timeout=30, limits=limits) as client,
        ThreadPoolExecutor(N) as pool,
    ):
        futures = [pool.submit(client.get, "/slow") for _ in range(N)]
        try:
            wait_until(lambda: monitor.snapshot().active == N, 30, "100 requests active")
            snap = check_invariants(monitor.snapshot())
            assert snap.endpoints["/slow"].active == N
            assert snap.peak == N
            seen = len(sink.reports)
            reports = sink.wait_for(seen + 1)
            assert reports[-1].interval_peak >= 90
        finally:
            gates.release.set()
        assert all(f.result().status_code == 200 for f in futures)
    snap = settled(monitor)
    stats = snap.endpoints["/slow"]
    assert (stats.total, stats.completed, stats.peak) == (N, N, N)


def test_interleaved_requests_never_mix_their_data() -> None:
    """Threads hitting different routes at once: every route gets exactly its own counts."""
    app, _ = build_app(sinks=(), start_reporter=False)
    plan = {"/": 40, "/boom": 20, "/status/503": 20, "/api/items/7": 40, "/nowhere": 20}
    barrier = threading.Barrier(8)

    def run(paths: list[str]) -> None:
        with httpx.Client(base_url=base, timeout=20) as client:
            barrier.wait(10)
            for path in paths:
                client.get(path)

    work = [path for path, count in plan.items() for _ in range(count)]
    with werkzeug_thread(app) as base, ThreadPoolExecutor(8) as pool:
        list(pool.map(run, [work[i::8] for i in range(8)]))
        runtime = get_runtime()
        assert runtime is not None
        snap = settled(runtime.monitor)
    expected = {
        "/": (40, 0),
        "/boom": (20, 20),
        "/status/<int:code>": (20, 20),
        "/api/items/<int:item_id>": (40, 0),
        "<unmatched>": (20, 0),
    }
    assert {n: (s.total, s.failed) for n, s in snap.endpoints.items()} == expected
