"""The demo's closing line adds up: every request the clients started is named once."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from concmon import get_monitor
from concmon.testing import check_invariants
from concmon_cli.demo import LoadStats, run_demo, summary


def test_a_real_run_accounts_for_every_request_it_started(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run cut off mid-burst: started = answered + errors + cancelled + unsent, and the
    server counted exactly the requests that left the clients."""
    monkeypatch.setenv("MONITOR_UPDATE_INTERVAL", "1")
    monkeypatch.setenv("CONCMON_SINKS", "")
    out = io.StringIO()
    console = Console(file=out, width=160)
    stats = run_demo(console, duration=4.0, refresh=0.2, max_requests=400, parallel=2)
    final = check_invariants(get_monitor().snapshot())
    assert stats.started > 0 and stats.cancelled + stats.unsent > 0  # the burst was cut off
    parts = stats.answered + stats.errors + stats.cancelled + stats.unsent
    assert stats.started == parts
    left_the_clients = stats.answered + stats.cancelled
    assert left_the_clients <= final.total <= left_the_clients + stats.errors
    assert final.active == 0
    line = summary(stats, final)
    numbers = [int(n) for n in re.findall(r"\d+", line)]
    assert numbers[0] == stats.started
    assert numbers[1] + numbers[3] + numbers[4] + numbers[5] == numbers[0]
    for column in ("req/s", "p50 ms", "p99 ms", "ttfb p99 ms"):  # the table's new columns
        assert column in out.getvalue()
    assert "Requests took p50 " in line


def test_summary_names_each_way_a_request_ended() -> None:
    """The line from known counts: the clients' parts add up to what they started."""
    from concmon import ConcurrencyMonitor

    stats = LoadStats(started=169, answered=109, answered_failed=4, cancelled=50, unsent=10)
    line = summary(stats, ConcurrencyMonitor().snapshot())
    assert line.startswith(
        "demo over: the clients started 169 requests: 109 answered (4 with an error), "
        "50 cancelled in flight, 10 cancelled before they were sent, 0 connection errors."
    )


def test_summary_gives_the_run_s_latency_from_the_server_s_buckets() -> None:
    """Finished requests on two endpoints: the closing line ends with their p50 and p99 over
    the whole run, and the time to first byte where responses were timed."""
    from concmon import ConcurrencyMonitor
    from concmon.testing import FakeClock

    clock = FakeClock()
    monitor = ConcurrencyMonitor(clock=clock)
    for i in range(100):
        ticket = monitor.http.begin("/v1/chat/completions" if i % 2 else "/v1/completions")
        ticket.respond(200)
        clock.advance(0.2)
        ticket.first_byte()
        clock.advance(0.8 if i < 98 else 20.0)
        ticket.finish()
    final = monitor.snapshot()
    line = summary(LoadStats(started=100, answered=100), final)
    durations = [s.duration_all for s in final.endpoints.values()]
    assert durations[0] is not None and durations[1] is not None
    both = durations[0].plus(durations[1])
    assert line.endswith(
        f"Requests took p50 {both.p50_ms:.0f} ms, p99 {both.p99_ms:.0f} ms; first byte p99 200 ms."
    ), line
