"""The Prometheus exposition of one process: live values, names, formats, the textfile export."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import threading

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import concmon
from concmon import ConcurrencyMonitor, Outcome, Snapshot
from concmon.exporters import prometheus
from concmon.exporters.prometheus import METRIC_NAMES, exposition, exposition_from_snapshots
from concmon.sinks.jsonl import snapshot_line
from tests.exporters.helpers import parse, total, value


def _busy_monitor() -> ConcurrencyMonitor:
    """The process monitor with something in every section of the exposition."""
    monitor = concmon.get_monitor()
    monitor.http.begin("/held")
    monitor.http.begin("/ok").finish()
    monitor.http.begin("/ok").finish(Outcome.FAILED)
    monitor.http.begin("/ok").finish(Outcome.CANCELLED)
    monitor.reject("/ok")
    proxied = monitor.http.begin("/proxied", "GET")
    proxied.waited_before(0.01)  # a proxy's X-Request-Start: the queued-before-app histogram
    proxied.finish()
    monitor.websocket.begin("/ws")
    monitor.background.begin("send_mail").finish()
    with monitor.queued("/ok", source="gate"):
        pass
    monitor.set_queue_depth(2, "pool")
    monitor.max_concurrency = 8
    monitor.record_loop_lag(0.02)
    monitor.count_sink_error("broken")
    return monitor


def test_scrape_reads_the_monitor_live_not_the_last_report() -> None:
    """Counts changed after the last report show in the very next scrape."""
    monitor = concmon.init_monitor(update_interval=3600, sinks=())
    runtime = concmon.get_runtime()
    assert runtime is not None and runtime.reporter.reported_at_start.wait(10)
    tickets = [monitor.http.begin("/slow") for _ in range(3)]
    samples = parse(exposition(None)[0])
    assert value(samples, "concmon_requests_active", endpoint="/slow") == 3
    assert total(samples, "concmon_requests_total") == 0
    for ticket in tickets[:2]:
        ticket.finish()
    tickets[2].finish(Outcome.FAILED)
    samples = parse(exposition(None)[0])
    assert value(samples, "concmon_requests_active", endpoint="/slow") == 0
    assert total(samples, "concmon_requests_total", endpoint="/slow", outcome="ok") == 2
    assert total(samples, "concmon_requests_total", endpoint="/slow", outcome="failed") == 1
    assert value(samples, "concmon_requests_peak", endpoint="/slow") == 3


def test_peak_is_the_interval_peak_and_restarts_from_active_at_a_report() -> None:
    """concmon_requests_peak covers the time since the previous report, as documented."""
    monitor = concmon.init_monitor(update_interval=3600, sinks=(), start_reporter=False)
    held = monitor.http.begin("/p")
    burst = [monitor.http.begin("/p") for _ in range(4)]
    for ticket in burst:
        ticket.finish()
    assert value(parse(exposition()[0]), "concmon_requests_peak", endpoint="/p") == 5
    runtime = concmon.get_runtime()
    assert runtime is not None
    runtime.reporter.report_now()
    assert value(parse(exposition()[0]), "concmon_requests_peak", endpoint="/p") == 1
    held.finish()


def test_every_documented_family_appears_with_units_and_counters_named_total() -> None:
    """The exposition carries each name in METRIC_NAMES once the monitor has seen everything."""
    _busy_monitor()
    samples = parse(exposition()[0])
    names = {name for name, _ in samples}
    for metric in METRIC_NAMES:
        assert any(n == metric or n.startswith(metric + "_") for n in names), metric
    assert value(samples, "concmon_queue_wait_seconds_count", queue="gate") == 1
    assert value(samples, "concmon_queue_depth", queue="pool") == 2
    assert value(samples, "concmon_requests_rejected_total", endpoint="/ok") == 1
    assert value(samples, "concmon_requests_limit") == 8
    assert value(samples, "concmon_event_loop_lag_seconds") == pytest.approx(0.02)
    assert value(samples, "concmon_websocket_connections_active", endpoint="/ws") == 1
    assert total(samples, "concmon_requests_active") == 1  # WebSockets never count as requests
    assert value(samples, "concmon_sink_errors_total", sink="broken") == 1
    assert value(samples, "concmon_process_threads") >= 1  # type: ignore[operator]
    assert value(samples, "concmon_processes") == 1


def test_openmetrics_is_served_when_the_scraper_asks_for_it() -> None:
    """Accept negotiation: OpenMetrics on request, the 0.0.4 text format otherwise."""
    _busy_monitor()
    body, content_type = exposition("application/openmetrics-text; version=1.0.0; q=0.9, */*")
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    assert b"concmon_requests_total{" in body
    assert b"# UNIT concmon_queue_wait_seconds seconds" in body
    body, content_type = exposition(None)
    assert content_type.startswith("text/plain") and "0.0.4" in content_type
    assert b"# EOF" not in body
    _, content_type = exposition("text/html")
    assert content_type.startswith("text/plain")


def test_promtool_check_metrics_passes_on_the_live_exposition(promtool: str) -> None:
    """promtool lints names, types, units and help texts without a complaint."""
    _busy_monitor()
    body, _ = exposition(None)
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=30
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == b"" and proc.stderr.strip() == b""


def test_promtool_check_metrics_passes_on_the_textfile_export(promtool: str) -> None:
    """The node_exporter textfile output passes the same lint."""
    snap = _busy_monitor().snapshot()
    text = exposition_from_snapshots([snap])
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == b"" and proc.stderr.strip() == b""


def test_label_values_with_quotes_and_newlines_are_escaped() -> None:
    """An odd endpoint name cannot break the exposition format."""
    monitor = concmon.get_monitor()
    name = '/we"ird\\path\nnext'
    monitor.http.begin(name)
    samples = parse(exposition()[0])
    assert value(samples, "concmon_requests_active", endpoint=name) == 1


_ops = st.lists(
    st.tuples(
        st.sampled_from(["begin", "finish", "reject"]),
        st.sampled_from(["/a", "/b", "/c"]),
        st.sampled_from(list(Outcome)),
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_ops)
def test_exposition_agrees_with_the_snapshot_after_any_mix(
    ops: list[tuple[str, str, Outcome]],
) -> None:
    """After any mix of begin/finish/reject the scrape equals the snapshot, number for number."""
    monitor = concmon.get_monitor()
    monitor.reset()
    open_tickets: list[concmon.Ticket] = []
    for op, name, outcome in ops:
        if op == "begin":
            open_tickets.append(monitor.http.begin(name))
        elif op == "finish" and open_tickets:
            open_tickets.pop(0).finish(outcome)
        elif op == "reject":
            monitor.reject(name)
    samples = parse(exposition()[0])
    snap = monitor.snapshot()
    for name, stats in snap.endpoints.items():
        assert value(samples, "concmon_requests_active", endpoint=name) == stats.active
        assert total(samples, "concmon_requests_total", endpoint=name) == stats.completed
        assert total(samples, "concmon_requests_total", endpoint=name, outcome="failed") == (
            stats.failed
        )
        assert value(samples, "concmon_requests_rejected_total", endpoint=name) == stats.rejected
    assert total(samples, "concmon_requests_active") == snap.active
    for ticket in open_tickets:
        ticket.finish()


def test_concurrent_scrapes_during_counting_are_consistent_and_monotonic() -> None:
    """Scrapes racing 8 counting threads never go backwards and end exact."""
    monitor = concmon.get_monitor()
    threads, per_thread = 8, 1500
    barrier = threading.Barrier(threads + 1)
    done = threading.Event()
    problems: list[str] = []

    def count() -> None:
        barrier.wait()
        for _ in range(per_thread):
            monitor.http.begin("/hot").finish()

    def scrape() -> None:
        barrier.wait()
        last = 0.0
        while not done.is_set():
            samples = parse(exposition()[0])
            finished = total(samples, "concmon_requests_total")
            active = value(samples, "concmon_requests_active", endpoint="/hot") or 0
            if finished < last or active < 0:
                problems.append(f"went back: {last} -> {finished}, active {active}")
            last = finished

    workers = [threading.Thread(target=count) for _ in range(threads)]
    scraper = threading.Thread(target=scrape)
    for t in [*workers, scraper]:
        t.start()
    for t in workers:
        t.join(60)
    done.set()
    scraper.join(60)
    assert problems == []
    samples = parse(exposition()[0])
    assert total(samples, "concmon_requests_total") == threads * per_thread
    assert value(samples, "concmon_requests_active", endpoint="/hot") == 0


def test_queue_wait_summary_keeps_counting_across_reports() -> None:
    """The summary's count and sum never restart when a report closes an interval."""
    monitor = concmon.init_monitor(update_interval=3600, sinks=(), start_reporter=False)
    for _ in range(3):
        with monitor.queued("/q", source="gate"):
            pass
    runtime = concmon.get_runtime()
    assert runtime is not None
    runtime.reporter.report_now()
    with monitor.queued("/q", source="gate"):
        pass
    samples = parse(exposition()[0])
    assert value(samples, "concmon_queue_wait_seconds_count", queue="gate") == 4
    assert value(samples, "concmon_queue_wait_seconds_sum", queue="gate") >= 0  # type: ignore[operator]


# -- the textfile export ----------------------------------------------------------------------


def _worker_snapshot(monitor: ConcurrencyMonitor, pid: int, **changes: object) -> Snapshot:
    return dataclasses.replace(monitor.snapshot(), pid=pid, **changes)  # type: ignore[arg-type]


def test_textfile_export_adds_up_the_latest_report_of_each_worker() -> None:
    """Two workers in one log: totals and actives summed, each from its latest report."""
    a, b = ConcurrencyMonitor(), ConcurrencyMonitor()
    a.http.begin("/x").finish()
    first_a = _worker_snapshot(a, 101, uptime_s=1.0)
    a.http.begin("/x").finish()
    a.http.begin("/x")
    latest_a = _worker_snapshot(a, 101, uptime_s=2.0)
    for _ in range(5):
        b.http.begin("/x").finish(Outcome.FAILED)
    b.http.begin("/y")
    latest_b = _worker_snapshot(b, 202, uptime_s=2.0)
    samples = parse(exposition_from_snapshots([first_a, latest_b, latest_a]))
    assert total(samples, "concmon_requests_total", endpoint="/x", outcome="ok") == 2
    assert total(samples, "concmon_requests_total", endpoint="/x", outcome="failed") == 5
    assert total(samples, "concmon_requests_active") == 2
    assert value(samples, "concmon_processes") == 2


def test_textfile_export_drops_the_active_requests_of_a_worker_gone_silent() -> None:
    """A worker whose last report is many intervals old keeps its totals; its actives finish
    as lost."""
    a, b = ConcurrencyMonitor(), ConcurrencyMonitor()
    a.http.begin("/x")
    a.http.begin("/x").finish()
    b.http.begin("/x").finish()
    old = _worker_snapshot(a, 1, timestamp="2026-01-01T00:00:00+00:00", interval_s=5.0)
    new = _worker_snapshot(b, 2, timestamp="2026-01-01T00:10:00+00:00", interval_s=5.0)
    samples = parse(exposition_from_snapshots([old, new]))
    assert total(samples, "concmon_requests_active") == 0
    assert total(samples, "concmon_requests_total", outcome="ok") == 2
    assert total(samples, "concmon_requests_total", outcome="lost") == 1
    assert value(samples, "concmon_processes") == 1
    kept = parse(exposition_from_snapshots([old, new], stale_intervals=None))
    assert total(kept, "concmon_requests_active") == 1


def test_textfile_export_treats_a_reused_pid_as_a_new_process() -> None:
    """Uptime going backwards under one pid means a restart: both lives' totals count."""
    a, b = ConcurrencyMonitor(), ConcurrencyMonitor()
    for _ in range(3):
        a.http.begin("/x").finish()
    b.http.begin("/x").finish()
    before = _worker_snapshot(a, 7, uptime_s=100.0)
    after = _worker_snapshot(b, 7, uptime_s=1.0)
    samples = parse(exposition_from_snapshots([before, after], stale_intervals=None))
    assert total(samples, "concmon_requests_total") == 4


def test_textfile_export_reads_json_lines_and_sums_queue_waits_over_reports() -> None:
    """Snapshots read back from JSON lines export the same; waits add up report by report."""
    monitor = concmon.init_monitor(update_interval=3600, sinks=(), start_reporter=False)
    runtime = concmon.get_runtime()
    assert runtime is not None
    lines = []
    for _ in range(3):
        with monitor.queued("/q", source="gate"):
            monitor.http.begin("/q").finish()
        lines.append(snapshot_line(runtime.reporter.report_now()))
    snaps = [Snapshot.from_dict(json.loads(line)) for line in lines]
    samples = parse(exposition_from_snapshots(snaps))
    assert value(samples, "concmon_queue_wait_seconds_count", queue="gate") == 3
    assert total(samples, "concmon_requests_total", endpoint="/q") == 3


def test_textfile_export_of_nothing_is_still_valid() -> None:
    """No snapshots: a valid exposition reporting zero processes, not an error."""
    samples = parse(exposition_from_snapshots([]))
    assert value(samples, "concmon_processes") == 0


# -- the sink -----------------------------------------------------------------------------------


def test_prometheus_sink_loads_by_entry_point_and_serves_metrics_on_its_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CONCMON_SINKS=prometheus with CONCMON_PROMETHEUS_PORT serves a live /metrics."""
    monkeypatch.setenv("CONCMON_PLUGIN_AUTOLOAD", "true")
    monkeypatch.setenv("CONCMON_SINKS", "prometheus")
    monkeypatch.setenv("CONCMON_PROMETHEUS_PORT", "0")
    monitor = concmon.init_monitor(update_interval=3600)
    runtime = concmon.get_runtime()
    assert runtime is not None and "prometheus" in runtime.plugins.names()
    sink = runtime.plugins.get("prometheus")
    assert isinstance(sink, prometheus.PrometheusSink) and sink.port
    monitor.http.begin("/served")
    resp = httpx.get(
        f"http://127.0.0.1:{sink.port}/metrics",
        headers={"Accept": "application/openmetrics-text; version=1.0.0"},
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/openmetrics-text")
    assert (
        value(
            parse(resp.text.replace("# EOF\n", "")), "concmon_requests_active", endpoint="/served"
        )
        == 1
    )
    concmon.shutdown_monitor()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{sink.port}/metrics", timeout=2)


def test_unknown_sink_name_is_named_and_counting_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A typo in CONCMON_SINKS gets one clear error listing the exporters; nothing else breaks."""
    monkeypatch.setenv("CONCMON_PLUGIN_AUTOLOAD", "true")
    monkeypatch.setenv("CONCMON_SINKS", "prometheus,promethues")
    with caplog.at_level(logging.ERROR, logger="concmon"):
        monitor = concmon.init_monitor(update_interval=3600)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert "'promethues'" in message
    assert "prometheus" in message and "dogstatsd" in message and "otel" in message
    assert errors[0].exc_info is None
    runtime = concmon.get_runtime()
    assert runtime is not None and runtime.plugins.names() == ["prometheus"]
    monitor.http.begin("/still").finish()
    assert monitor.snapshot().completed == 1


def test_bad_exporter_setting_is_one_clear_line_and_counting_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """CONCMON_PROMETHEUS_PORT=abc names the variable and what it accepts, without a traceback."""
    monkeypatch.setenv("CONCMON_PROMETHEUS_PORT", "abc")
    with caplog.at_level(logging.ERROR, logger="concmon"):
        monitor = concmon.init_monitor(update_interval=3600, sinks=())
        runtime = concmon.get_runtime()
        assert runtime is not None
        assert runtime.plugins.register(prometheus.PrometheusSink(), "prometheus")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None
    message = errors[0].getMessage()
    assert "CONCMON_PROMETHEUS_PORT='abc' is not valid" in message and "\n" not in message
    monitor.http.begin("/still").finish()
    assert (
        total(parse(exposition()[0]), "concmon_requests_total", endpoint="/still", outcome="ok")
        == 1
    )


def test_metrics_port_already_taken_is_reported_and_counting_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A port in use: one line naming it and the variable; the app keeps counting."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("CONCMON_PROMETHEUS_PORT", str(port))
        with caplog.at_level(logging.ERROR, logger="concmon"):
            monitor = concmon.init_monitor(update_interval=3600, sinks=())
            runtime = concmon.get_runtime()
            assert runtime is not None
            runtime.plugins.register(prometheus.PrometheusSink(), "prometheus")
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0]
    assert "CONCMON_PROMETHEUS_PORT" in errors[0]
    monitor.http.begin("/still").finish()
    assert monitor.snapshot().completed == 1
