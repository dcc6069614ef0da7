"""Histogram families and the method/status labels in the Prometheus exposition."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics

import concmon
from concmon import ConcurrencyMonitor, Outcome
from concmon.exporters import prometheus
from concmon.exporters.figures import live_figures
from concmon.exporters.multiprocess import MultiProcessStore
from concmon.exporters.prometheus import exposition
from concmon.testing import FakeClock
from tests.exporters.helpers import Samples, parse, total, value

BOUNDS = (0.1, 1.0, 10.0)


def _timed(monitor: ConcurrencyMonitor, clock: FakeClock, seconds: float, **how: object) -> None:
    ticket = monitor.http.begin("/x", str(how.get("method", "GET")))
    if "status" in how:
        ticket.respond(int(str(how["status"])))
        ticket.first_byte()
    clock.advance(seconds)
    ticket.finish(how.get("outcome", Outcome.OK))  # type: ignore[arg-type]


def _buckets(samples: Samples, family: str, **labels: str) -> dict[str, float]:
    return {
        dict(lbl)["le"]: v
        for (name, lbl), v in samples.items()
        if name == f"{family}_bucket" and set(labels.items()) <= lbl
    }


def test_duration_histogram_is_cumulative_to_inf_and_counts_every_finished_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CONCMON_LATENCY_BUCKETS sets the le bounds; _bucket is cumulative, +Inf = _count = the
    requests counter, _sum the true total; ok, failed and cancelled requests all land."""
    monkeypatch.setenv("CONCMON_LATENCY_BUCKETS", "0.1,1,10")
    clock = FakeClock()
    monitor = concmon.get_monitor()
    assert monitor.buckets == BOUNDS
    monitor.clock = monitor.http.clock = clock
    for seconds, how in [
        (0.05, {"status": 200}),
        (0.5, {"status": 500, "outcome": Outcome.FAILED}),
        (0.5, {"outcome": Outcome.CANCELLED}),
        (3.0, {"status": 200, "method": "POST"}),
        (42.0, {"status": 200}),
    ]:
        _timed(monitor, clock, seconds, **how)
    samples = parse(exposition()[0])
    family = "concmon_request_duration_seconds"
    assert _buckets(samples, family, endpoint="/x") == {
        "0.1": 1.0, "1.0": 3.0, "10.0": 4.0, "+Inf": 5.0,
    }  # fmt: skip
    assert value(samples, f"{family}_count", endpoint="/x") == 5
    assert total(samples, "concmon_requests_total", endpoint="/x") == 5
    assert value(samples, f"{family}_sum", endpoint="/x") == pytest.approx(46.05)
    ttfb = "concmon_time_to_first_byte_seconds"
    assert value(samples, f"{ttfb}_count", endpoint="/x") == 4  # the cancelled one sent nothing
    assert not _buckets(samples, "concmon_request_queued_before_app_seconds")  # no header: none
    assert value(samples, "concmon_requests_total", endpoint="/x", method="GET", status="5xx",
                 outcome="failed") == 1  # fmt: skip
    assert value(samples, "concmon_requests_total", endpoint="/x", method="GET", status="none",
                 outcome="cancelled") == 1  # fmt: skip
    assert value(samples, "concmon_requests_total", endpoint="/x", method="POST", status="2xx",
                 outcome="ok") == 1  # fmt: skip


def test_openmetrics_scrape_carries_the_same_histograms() -> None:
    """With the OpenMetrics Accept header, the histograms parse as OpenMetrics histograms with
    the unit, the same buckets and the same count."""
    monitor = concmon.get_monitor()
    monitor.http.begin("/o", "GET").finish()
    monitor.websocket.begin("/ws").finish()
    monitor.background.begin("job").finish()
    body, content_type = exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    families = {f.name: f for f in openmetrics(body.decode())}
    for name, label in [
        ("concmon_request_duration_seconds", ("endpoint", "/o")),
        ("concmon_websocket_connection_duration_seconds", ("endpoint", "/ws")),
        ("concmon_background_task_duration_seconds", ("task", "job")),
    ]:
        family = families[name]
        assert family.type == "histogram" and family.unit == "seconds"
        counts = [
            s.value
            for s in family.samples
            if s.name == f"{name}_count" and s.labels[label[0]] == label[1]
        ]
        assert counts == [1]
        infs = [s for s in family.samples if s.labels.get("le") == "+Inf"]
        assert len(infs) == 1 and infs[0].value == 1


@pytest.mark.parametrize(
    ("variable", "gone", "kept"),
    [("CONCMON_METRICS_METHOD_LABEL", "method", "status"),
     ("CONCMON_METRICS_STATUS_LABEL", "status", "method")],
)  # fmt: skip
def test_method_or_status_label_switched_off_folds_its_series_into_sums(
    monkeypatch: pytest.MonkeyPatch, variable: str, gone: str, kept: str
) -> None:
    """With the label off no series carries it and the folded series are the sums."""
    monkeypatch.setenv(variable, "false")
    monitor = concmon.get_monitor()
    for method, status in [("GET", 200), ("POST", 200), ("GET", 404), ("BREW", 201)]:
        ticket = monitor.http.begin("/f", method)
        ticket.respond(status)
        ticket.finish()
    samples = parse(exposition()[0])
    series = {lbl: v for (n, lbl), v in samples.items() if n == "concmon_requests_total"}
    assert series and all(gone not in dict(lbl) for lbl in series)
    assert all(kept in dict(lbl) for lbl in series)
    assert total(samples, "concmon_requests_total", endpoint="/f", outcome="ok") == 4
    if gone == "method":
        assert total(samples, "concmon_requests_total", status="2xx") == 3
    else:
        assert total(samples, "concmon_requests_total", method="GET") == 2
        assert total(samples, "concmon_requests_total", method="other") == 1


def test_a_bad_bucket_setting_switches_concmon_off_with_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """CONCMON_LATENCY_BUCKETS that do not increase: one error line naming the variable and
    why; the monitor is off, nothing raises."""
    monkeypatch.setenv("CONCMON_LATENCY_BUCKETS", "1,0.5")
    monitor = concmon.init_monitor(start_reporter=False, sinks=())
    assert not monitor.enabled
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert "CONCMON_LATENCY_BUCKETS='1,0.5'" in errors[0] and "must increase" in errors[0]


def test_init_monitor_recreates_the_monitor_when_the_buckets_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A monitor made before init_monitor with other buckets is replaced by one on the
    configured ones, so every distribution uses the setting."""
    concmon.get_monitor()
    monkeypatch.setenv("CONCMON_LATENCY_BUCKETS", "0.5, 5")
    monitor = concmon.init_monitor(start_reporter=False, sinks=())
    assert monitor.buckets == (0.5, 5.0)
    assert monitor.snapshot().buckets_s == (0.5, 5.0)


def _worker(clock: FakeClock, durations: list[float]) -> ConcurrencyMonitor:
    monitor = ConcurrencyMonitor(clock=clock, buckets=BOUNDS)
    for seconds in durations:
        ticket = monitor.http.begin("/w", "GET")
        clock.advance(seconds)
        ticket.finish()
    return monitor


def test_multiprocess_buckets_are_summed_over_workers_and_retired_ones_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two other workers publish, one retires: every bucket, _count and _sum of the scrape
    are the sums over all three workers and this one, the retired one's included."""
    monkeypatch.setenv("CONCMON_PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "mp"))
    monkeypatch.setenv("CONCMON_LATENCY_BUCKETS", "0.1,1,10")
    clock = FakeClock()
    own = concmon.get_monitor()
    own.clock = own.http.clock = clock
    assert prometheus.activate() == "multi-process"
    ticket = own.http.begin("/w", "GET")
    clock.advance(0.05)
    ticket.finish()
    live = MultiProcessStore(tmp_path / "mp")
    live.write(live_figures(_worker(clock, [0.5, 0.5, 20.0]), process=False))
    retired = MultiProcessStore(tmp_path / "mp")
    retired_monitor = _worker(clock, [3.0, 0.01])
    retired.write(live_figures(retired_monitor, process=False))
    retired.close(live_figures(retired_monitor, process=False))
    samples = parse(exposition()[0])
    family = "concmon_request_duration_seconds"
    assert value(samples, "concmon_processes") == 2
    assert _buckets(samples, family, endpoint="/w") == {
        "0.1": 2.0, "1.0": 4.0, "10.0": 5.0, "+Inf": 6.0,
    }  # fmt: skip
    assert value(samples, f"{family}_count", endpoint="/w") == 6
    assert total(samples, "concmon_requests_total", endpoint="/w") == 6
    assert value(samples, f"{family}_sum", endpoint="/w") == pytest.approx(24.06)
    live.close()
