"""The DogStatsD sink against a real UDP socket on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator

import pytest

import concmon
from concmon import Outcome
from concmon.exporters.config import ExporterSettings
from concmon.exporters.dogstatsd import DogStatsDSink


class Listener:
    """A UDP socket playing the agent: collects every metric line it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.port: int = self.sock.getsockname()[1]

    def lines(self) -> list[str]:
        """Every line that arrived so far (waits at most 0.5 s for the first datagram)."""
        out: list[str] = []
        while True:
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                return out
            out += [line for line in data.decode().split("\n") if line]
            self.sock.settimeout(0.1)

    def close(self) -> None:
        self.sock.close()


def _parse(line: str) -> tuple[str, float, str, set[str]]:
    """``name:value|type[|@rate][|#tags]`` -> (name, value, type, tags)."""
    head, kind, *fields = line.split("|")
    name, _, number = head.rpartition(":")
    tags = next((f.removeprefix("#") for f in fields if f.startswith("#")), "")
    return name, float(number), kind, set(tags.split(",")) if tags else set()


def _weighted(lines: list[str], name: str, *tags: str) -> tuple[float, float]:
    """The count and sum an agent reads from ``name``'s distribution samples (each weighs
    ``1/rate`` values)."""
    count = total = 0.0
    for line in lines:
        metric, number, kind, line_tags = _parse(line)
        if metric == name and set(tags) <= line_tags:
            assert kind == "d", line
            rate = next((float(f[1:]) for f in line.split("|") if f.startswith("@")), 1.0)
            count += 1 / rate
            total += number / rate
    return count, total


def _find(lines: list[str], name: str, *tags: str) -> list[tuple[float, str]]:
    found = []
    for line in lines:
        metric, number, kind, line_tags = _parse(line)
        if metric == name and set(tags) <= line_tags:
            found.append((number, kind))
    return found


@pytest.fixture
def listener() -> Iterator[Listener]:
    listener = Listener()
    yield listener
    listener.close()


@pytest.fixture
def sink(listener: Listener) -> Iterator[DogStatsDSink]:
    concmon.init_monitor(update_interval=3600, sinks=(), start_reporter=False)
    runtime = concmon.get_runtime()
    assert runtime is not None
    settings = ExporterSettings(statsd_port=listener.port, statsd_tags=("env:test",))
    sink = DogStatsDSink(settings)
    assert runtime.plugins.register(sink, "dogstatsd")
    yield sink
    concmon.shutdown_monitor()


def _report() -> None:
    runtime = concmon.get_runtime()
    assert runtime is not None
    runtime.reporter.report_now()


def test_report_sends_gauges_and_counts_with_endpoint_tags(
    sink: DogStatsDSink, listener: Listener
) -> None:
    """Active, peak, outcomes, rejections, queues and process figures arrive as datagrams."""
    monitor = concmon.get_monitor()
    held = monitor.http.begin("/slow")
    for _ in range(3):
        monitor.http.begin("/fast").finish()
    monitor.http.begin("/fast").finish(Outcome.FAILED)
    monitor.reject("/fast")
    with monitor.queued("/fast", source="gate"):
        pass
    _report()
    lines = listener.lines()
    pid = f"pid:{os.getpid()}"
    assert _find(lines, "concmon.requests.active", "endpoint:/slow", pid, "env:test") == [(1, "g")]
    assert _find(lines, "concmon.requests.peak", "endpoint:/fast") == [(1, "g")]
    assert _find(lines, "concmon.requests", "endpoint:/fast", "outcome:ok") == [(3, "c")]
    assert _find(lines, "concmon.requests", "endpoint:/fast", "outcome:failed") == [(1, "c")]
    assert _find(lines, "concmon.requests.rejected", "endpoint:/fast") == [(1, "c")]
    assert _find(lines, "concmon.queue.waits", "queue:gate") == [(1, "c")]
    assert _find(lines, "concmon.queue.depth", "queue:gate") == [(0, "g")]
    assert _find(lines, "concmon.process.threads", pid)
    assert all(pid not in _parse(line)[3] for line in lines if _parse(line)[2] == "c")
    held.finish()


def test_counts_are_the_increase_since_the_previous_report(
    sink: DogStatsDSink, listener: Listener
) -> None:
    """A StatsD count means 'this many more': the second report sends only the new requests."""
    monitor = concmon.get_monitor()
    for _ in range(4):
        monitor.http.begin("/a").finish()
    _report()
    assert _find(listener.lines(), "concmon.requests", "endpoint:/a", "outcome:ok") == [(4, "c")]
    monitor.http.begin("/a").finish()
    _report()
    lines = listener.lines()
    assert _find(lines, "concmon.requests", "endpoint:/a", "outcome:ok") == [(1, "c")]
    _report()
    lines = listener.lines()
    assert _find(lines, "concmon.requests", "endpoint:/a", "outcome:ok") == []
    assert _find(lines, "concmon.requests.active", "endpoint:/a") == [(0, "g")]


def test_tags_cannot_be_broken_by_an_endpoint_name(sink: DogStatsDSink, listener: Listener) -> None:
    """Commas and pipes in a name are replaced, so every datagram line still parses."""
    concmon.get_monitor().http.begin("/a,b|c").finish()
    _report()
    lines = listener.lines()
    assert _find(lines, "concmon.requests", "endpoint:/a_b_c", "outcome:ok") == [(1, "c")]


def test_final_snapshot_is_sent_at_shutdown(sink: DogStatsDSink, listener: Listener) -> None:
    """Requests finished after the last report still reach the agent when the app stops."""
    concmon.get_monitor().http.begin("/late").finish()
    concmon.shutdown_monitor()
    lines = listener.lines()
    assert _find(lines, "concmon.requests", "endpoint:/late", "outcome:ok") == [(1, "c")]
    assert sink.client is None


def test_dogstatsd_sink_loads_by_entry_point_with_its_address_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, listener: Listener
) -> None:
    """CONCMON_SINKS=dogstatsd and CONCMON_STATSD_PORT: metrics reach that port."""
    monkeypatch.setenv("CONCMON_PLUGIN_AUTOLOAD", "true")
    monkeypatch.setenv("CONCMON_SINKS", "dogstatsd")
    monkeypatch.setenv("CONCMON_STATSD_PORT", str(listener.port))
    monkeypatch.setenv("CONCMON_STATSD_NAMESPACE", "shop")
    concmon.init_monitor(update_interval=3600, start_reporter=False)
    concmon.get_monitor().http.begin("/e").finish()
    _report()
    assert _find(listener.lines(), "shop.requests", "endpoint:/e", "outcome:ok") == [(1, "c")]


@pytest.mark.parametrize(
    ("host", "port", "problem"),
    [
        ("concmon-no-such-agent.invalid", 8125, "resolve"),
        ("127.0.0.1", None, "refused"),
    ],
)
def test_unreachable_agent_gets_one_clear_line_and_counting_goes_on(
    host: str, port: int | None, problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An address that does not resolve or a closed port: one message, requests still counted."""
    if port is None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]  # closed again when the block ends
    monitor = concmon.init_monitor(update_interval=3600, sinks=(), start_reporter=False)
    runtime = concmon.get_runtime()
    assert runtime is not None
    sink = DogStatsDSink(ExporterSettings(statsd_host=host, statsd_port=port))
    with caplog.at_level(logging.WARNING):
        runtime.plugins.register(sink, "dogstatsd")
        for _ in range(4):
            monitor.http.begin("/x").finish()
            runtime.reporter.report_now()
    messages = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(messages) == 1, [r.getMessage() for r in messages]
    text = messages[0].getMessage()
    assert messages[0].name == "concmon" and messages[0].exc_info is None
    assert f"{host}:{port}" in text and "CONCMON_STATSD_HOST" in text
    assert problem in text.lower()
    assert monitor.snapshot().completed == 4
    assert monitor.sink_errors == {}


def test_bad_statsd_port_setting_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """CONCMON_STATSD_PORT=99999 names the variable and the accepted range; the sink stays off."""
    monkeypatch.setenv("CONCMON_STATSD_PORT", "99999")
    monitor = concmon.init_monitor(update_interval=3600, sinks=(), start_reporter=False)
    runtime = concmon.get_runtime()
    assert runtime is not None
    sink = DogStatsDSink()
    with caplog.at_level(logging.ERROR):
        runtime.plugins.register(sink, "dogstatsd")
        runtime.reporter.report_now()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None
    assert "CONCMON_STATSD_PORT=99999" in errors[0].getMessage().replace("'", "")
    assert "1 to 65535" in errors[0].getMessage()
    assert sink.client is None
    monitor.http.begin("/x").finish()
    assert monitor.snapshot().completed == 1


def test_durations_go_as_distributions_whose_weights_are_the_interval_counts(
    sink: DogStatsDSink, listener: Listener
) -> None:
    """Each report sends the duration distribution of the requests it closes: the samples'
    weights add up to the requests finished, their weighted sum to the true total."""
    monitor = concmon.get_monitor()
    for _ in range(7):
        monitor.http.begin("/a", "GET").finish()
    monitor.http.begin("/a").finish(Outcome.FAILED)
    _report()
    lines = listener.lines()
    stats = monitor.snapshot().endpoints["/a"]
    assert stats.duration_all is not None
    count, seconds = _weighted(lines, "concmon.request.duration", "endpoint:/a")
    assert round(count, 6) == 8
    assert seconds == pytest.approx(stats.duration_all.sum_s, rel=1e-6, abs=1e-9)
    monitor.http.begin("/a").finish()
    _report()
    count, _ = _weighted(listener.lines(), "concmon.request.duration", "endpoint:/a")
    assert round(count, 6) == 1


def test_method_and_status_tags_can_be_switched_off(listener: Listener) -> None:
    """CONCMON_METRICS_METHOD_LABEL=false folds the method away: one count per outcome."""
    concmon.init_monitor(update_interval=3600, sinks=(), start_reporter=False)
    runtime = concmon.get_runtime()
    assert runtime is not None
    settings = ExporterSettings(statsd_port=listener.port, metrics_method_label=False)
    assert runtime.plugins.register(DogStatsDSink(settings), "dogstatsd")
    try:
        monitor = concmon.get_monitor()
        for method in ("GET", "POST", "BREW"):
            monitor.http.begin("/m", method).finish()
        _report()
        lines = listener.lines()
        found = _find(lines, "concmon.requests", "endpoint:/m", "outcome:ok")
        assert found == [(3, "c")]
        assert not any("method:" in line for line in lines)
    finally:
        concmon.shutdown_monitor()
