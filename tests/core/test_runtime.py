"""init_monitor, the reporter thread and the process lifecycle, with real threads and forks."""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import statistics
import threading
import time
from pathlib import Path

import pytest

import concmon
from concmon import ConfigError, get_monitor, get_runtime, init_monitor, shutdown_monitor
from concmon.hookspecs import hookimpl
from concmon.logformat import parse_reports
from concmon.reporter import next_tick
from concmon.settings import load_settings
from concmon.snapshot import Snapshot
from concmon.testing import CapturingSink, check_balanced


def _capture() -> CapturingSink:
    runtime = get_runtime()
    assert runtime is not None
    sink = CapturingSink()
    assert runtime.plugins.register(sink, "capture")
    return sink


def test_init_and_get_are_idempotent_across_threads() -> None:
    """Many threads calling init_monitor/get_monitor at once all get the one monitor."""
    barrier = threading.Barrier(16)
    got: list[object] = []

    def call(i: int) -> None:
        barrier.wait()
        got.append(init_monitor(sinks=()) if i % 2 else get_monitor())

    threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(m) for m in got}) == 1
    assert got[0] is get_monitor()
    runtime = get_runtime()
    assert runtime is not None and runtime.reporter.running


class _SlowSink:
    """Takes 30 ms over every report, as a sink writing to a slow disk might."""

    name = "slow"

    @hookimpl
    def concmon_report(self, snapshot: Snapshot) -> None:
        time.sleep(0.03)


def test_reports_arrive_on_a_grid_without_drift() -> None:
    """Reports come once per interval even when each takes 30 ms: the next tick is due on the
    grid, not an interval after the last report ended (which would space them 0.13 s apart)."""
    init_monitor(sinks=(), update_interval=0.1, system_metrics=False)
    runtime = get_runtime()
    assert runtime is not None
    assert runtime.plugins.register(_SlowSink(), "slow")
    sink = _capture()
    sink.wait_for(21, timeout=30)
    # Medians and sums, not each spacing: a loaded machine may wake the reporter late once,
    # and the grid then makes the next spacing as much shorter.
    spacings = [r.interval_s for r in sink.reports[1:21]]
    assert 0.08 < statistics.median(spacings) < 0.12, spacings
    assert sum(spacings) < 20 * 0.1 + 0.3, spacings


@pytest.mark.parametrize(
    ("due", "now", "expected"),
    [
        (10.0, 10.03, 11.0),  # a 30 ms report: the next tick stays on the grid
        (10.0, 10.99, 11.0),
        (10.0, 11.0, 12.0),  # ran to its successor's time: that tick is skipped
        (10.0, 13.5, 14.5),  # a sink stuck for 3.5 intervals: no burst of catch-up reports
    ],
)
def test_report_ticks_stay_on_the_grid_and_skip_missed_ones(
    due: float, now: float, expected: float
) -> None:
    """The schedule, with the clock stepped by hand: no drift, and no catching up."""
    assert next_tick(due, now, 1.0) == expected


def test_interval_values_reset_after_each_report() -> None:
    """The interval peak of one report does not leak into the next."""
    monitor = init_monitor(sinks=(), update_interval=0.1, system_metrics=False)
    sink = _capture()
    tickets = [monitor.begin("/burst") for _ in range(5)]
    for t in tickets:
        t.finish()
    # The first report after the burst covers its peak (or an earlier one did); the second
    # covers only time after it, whenever the burst fell between the reports.
    reports = sink.wait_for(len(sink.reports) + 2)
    assert any(r.interval_peak == 5 for r in reports)
    assert reports[-1].interval_peak == 0
    assert reports[-1].total == 5


def test_shutdown_is_prompt_and_flushes_a_final_report(tmp_path: Path) -> None:
    """shutdown_monitor returns well within one interval and the final report reaches sinks."""
    monitor = init_monitor(sinks=("logfile",), update_interval=30.0)
    sink = _capture()
    runtime = get_runtime()
    assert runtime is not None and runtime.reporter.reported_at_start.wait(10)
    monitor.begin("/x").finish()
    start = time.monotonic()
    final = shutdown_monitor()
    assert time.monotonic() - start < 5
    assert final is not None and final.total == 1
    assert sink.final == final
    assert shutdown_monitor() is None
    text = (tmp_path / "logs" / "concmon.log").read_text()
    reports, skipped = parse_reports(text.splitlines())
    assert (skipped, len(reports), reports[-1]) == (0, 2, final)  # the report at start, the final


def test_the_monitor_stops_when_its_last_holder_lets_go() -> None:
    """Two apps hold the monitor: the first to stop leaves the other's reports running."""
    first = concmon.hold_monitor()
    assert concmon.hold_monitor() is first
    runtime = get_runtime()
    assert runtime is not None and runtime.reporter.running
    assert concmon.release_monitor() is None
    assert get_runtime() is runtime and runtime.reporter.running
    first.begin("/x").finish()
    final = concmon.release_monitor()
    assert final is not None and final.total == 1
    assert get_runtime() is None and not runtime.reporter.running
    assert concmon.release_monitor() is None, "a release too many changes nothing"


def test_counting_survives_shutdown_and_restart() -> None:
    """After shutdown the monitor still counts, and init_monitor reports again."""
    monitor = init_monitor(sinks=())
    shutdown_monitor()
    monitor.begin("/x").finish()
    assert init_monitor(sinks=()) is monitor
    assert check_balanced(monitor.snapshot()).total == 1


BAD_SETTINGS = [
    ("MONITOR_UPDATE_INTERVAL", "abc", "MONITOR_UPDATE_INTERVAL='abc'"),
    ("MONITOR_UPDATE_INTERVAL", "0", "greater than 0"),
    ("MONITOR_UPDATE_INTERVAL", "-1", "MONITOR_UPDATE_INTERVAL='-1'"),
    ("ENABLE_CONCURRENCY_MONITOR", "maybe", "true or false"),
    ("CONCMON_MAX_ENDPOINTS", "0", "CONCMON_MAX_ENDPOINTS"),
]


@pytest.mark.parametrize(("variable", "value", "expected"), BAD_SETTINGS)
def test_bad_settings_are_fatal_when_strict(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    """CONCMON_STRICT=1: a bad value names the variable and what it accepts, with no chained
    traceback, and nothing starts."""
    monkeypatch.setenv("CONCMON_STRICT", "1")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        init_monitor()
    assert expected in str(caught.value)
    assert variable in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert get_runtime() is None


@pytest.mark.parametrize(("variable", "value", "expected"), BAD_SETTINGS)
def test_bad_settings_switch_concmon_off_with_one_error_line(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    variable: str,
    value: str,
    expected: str,
) -> None:
    """A bad value never takes the service down: counting is off, one error line says why."""
    monkeypatch.setenv(variable, value)
    with caplog.at_level(logging.WARNING, logger="concmon"):
        monitor = get_monitor()
        assert init_monitor() is monitor

        @concmon.track_task("/x")
        def work() -> int:
            return 1

        assert work() == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1, errors
    assert "switched off" in errors[0] and expected in errors[0] and "CONCMON_STRICT" in errors[0]
    runtime = get_runtime()
    assert runtime is not None and not runtime.reporter.running
    assert monitor.snapshot().total == 0


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ENABLED", "false"),
        ("SINKS", "stdout"),
        ("LOG_FILE", "/nonexistent/x.log"),
        ("MAX_ENDPOINTS", "3"),
        ("UPDATE_INTERVAL", "0.01"),
        ("PROMETHEUS_PORT", "9"),
        ("STATSD_PORT", "9"),
    ],
)
def test_other_tools_variables_never_configure_concmon(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """Only the seed's four names and CONCMON_* configure concmon, not a field's bare name."""
    from concmon.exporters.config import load_exporter_settings

    before = (load_settings(), load_exporter_settings())
    monkeypatch.setenv(variable, value)
    assert (load_settings(), load_exporter_settings()) == before
    assert load_settings(max_endpoints=3).max_endpoints == 3, "field names still work in code"


@pytest.mark.parametrize(
    "case",
    [
        ("LOG_LEVEL", "critical", False, "error", False),
        ("LOG_LEVEL", "trace", False, "debug", False),
        ("LOG_LEVEL", "WARN", False, "warning", False),
        ("LOG_LEVEL", "loud", False, "info", True),
        ("DEBUG", "2", True, "debug", False),
        ("DEBUG", "yes", True, "debug", False),
        ("DEBUG", "off", False, "info", False),
        ("DEBUG", "express:*", False, "info", True),
    ],
)
def test_shared_variables_are_read_leniently(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    case: tuple[str, str, bool, str, bool],
) -> None:
    """DEBUG and LOG_LEVEL belong to other tools too: their values read as the nearest meaning,
    or are ignored with one warning, never an error."""
    variable, value, debug, level, warned = case
    monkeypatch.setenv(variable, value)
    monkeypatch.setattr("concmon.settings._warned", set())
    with caplog.at_level(logging.WARNING, logger="concmon"):
        first, second = load_settings(), load_settings()
    assert first == second
    assert (first.debug, first.effective_log_level) == (debug, level)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == (1 if warned else 0), warnings
    if warned:
        assert variable in warnings[0] and value in warnings[0]


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """The seed's unprefixed variables and the CONCMON_ ones reach the settings."""
    monkeypatch.setenv("MONITOR_UPDATE_INTERVAL", "0.5")
    monkeypatch.setenv("DEBUG", "true")
    monkeypatch.setenv("CONCMON_SINKS", "jsonl, stdout")
    monkeypatch.setenv("CONCMON_MAX_ENDPOINTS", "7")
    init_monitor(start_reporter=False)
    runtime = get_runtime()
    assert runtime is not None
    s = runtime.settings
    assert (s.update_interval, s.debug, s.sinks, s.max_endpoints) == (
        0.5,
        True,
        ("jsonl", "stdout"),
        7,
    )
    assert s.effective_log_level == "debug"
    assert runtime.monitor.max_endpoints == 7
    assert sorted(runtime.plugins.names()) == ["jsonl", "stdout"]


def test_disabled_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """ENABLE_CONCURRENCY_MONITOR=false: no reporter, no sinks, tracking is a no-op."""
    monkeypatch.setenv("ENABLE_CONCURRENCY_MONITOR", "false")
    monitor = init_monitor()
    runtime = get_runtime()
    assert runtime is not None and not runtime.reporter.running
    assert runtime.plugins.names() == []

    @concmon.track_task("/x")
    def work() -> int:
        return 1

    assert work() == 1
    assert monitor.snapshot().total == 0


def test_track_task_sync_and_async() -> None:
    """The decorator counts plain and async functions, failures and cancellation."""
    import asyncio

    @concmon.track_task("/sync")
    def ok(x: int) -> int:
        return x * 2

    @concmon.track_task
    def bad() -> None:
        raise KeyError("k")

    @concmon.track_task("/async")
    async def slow() -> None:
        await asyncio.sleep(10)

    assert ok(2) == 4
    with pytest.raises(KeyError):
        bad()

    async def main() -> None:
        task = asyncio.create_task(slow())
        await asyncio.sleep(0.01)
        assert get_monitor().snapshot().endpoints["/async"].active == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    snap = check_balanced(get_monitor().snapshot())
    assert snap.endpoints["/sync"].completed == 1
    assert snap.endpoints["test_track_task_sync_and_async.<locals>.bad"].failed == 1
    assert snap.endpoints["/async"].cancelled == 1
    assert ok.__name__ == "ok", "functools.wraps keeps the function's identity"


class _LockedSink:
    """A sink that writes under a lock of its own and takes its time, as file sinks do."""

    name = "locked"

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = threading.Event()
        self.reports = 0

    @hookimpl
    def concmon_report(self, snapshot: Snapshot) -> None:
        with self.lock:
            self.inside.set()
            time.sleep(0.3)
            self.reports += 1


def _child_result(pid: int, read_fd: int, timeout: float) -> dict[str, int] | None:
    """What the child wrote to the pipe, or None (and the child killed) if it hung."""
    ready, _, _ = select.select([read_fd], [], [], timeout)
    if not ready:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read_fd)
        return None
    with os.fdopen(read_fd) as pipe:
        result: dict[str, int] = json.loads(pipe.read())
    os.waitpid(pid, 0)
    return result


def test_fork_during_a_report_leaves_no_sink_lock_held(tmp_path: Path) -> None:
    """A fork that lands while the reporter is inside a sink (holding the sink's lock, or the
    size-rotation lock of the log file) must not hand the child a lock nobody will release:
    the fork waits for the report in flight, and the child and the parent both go on reporting."""
    monitor = init_monitor(
        sinks=("logfile",), update_interval=0.1, system_metrics=False, log_max_bytes=1 << 20
    )
    runtime = get_runtime()
    assert runtime is not None
    sink = _LockedSink()
    assert runtime.plugins.register(sink, "locked")
    assert sink.inside.wait(5), "the reporter never reached the sink"
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(read_fd)
            start = sink.reports
            deadline = time.monotonic() + 10
            while sink.reports < start + 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            get_monitor().begin("/child").finish()
            report = runtime.reporter.report_now()
            result = {"reports": sink.reports - start, "total": report.total}
            os.write(write_fd, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    result = _child_result(pid, read_fd, 20)
    assert result is not None, "the child hung on a lock held at the fork"
    assert result["reports"] >= 2
    assert result["total"] == 1
    monitor.begin("/parent").finish()
    after = runtime.reporter.report_now()
    assert after.total >= 1
    shutdown_monitor()
    reports, bad = parse_reports((tmp_path / "logs" / "concmon.log").read_text().splitlines())
    assert bad == 0
    assert {r.pid for r in reports} == {os.getpid(), pid}


def _reports_in_child(wanted: int = 2, timeout: float = 5.0) -> int:
    """In a forked child: the reports its own reporter made, once ``wanted`` or after
    ``timeout`` (-1 without a runtime)."""
    runtime = get_runtime()
    if runtime is None:
        return -1
    deadline = time.monotonic() + timeout
    while runtime.reporter.reports < wanted and time.monotonic() < deadline:
        time.sleep(0.02)
    return runtime.reporter.reports


def test_fork_after_start_gives_the_child_its_own_reporter(tmp_path: Path) -> None:
    """RELIABILITY 26: after fork the child has fresh counters, its own pid and a reporter."""
    monitor = init_monitor(sinks=("jsonl",), update_interval=0.1, system_metrics=False)
    held = monitor.begin("/parent")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(read_fd)
            child = get_monitor()
            before = child.snapshot()
            child.begin("/child").finish()
            result = {
                "pid": child.snapshot().pid,
                "before_active": before.active,
                "total": child.snapshot().total,
                "reports": _reports_in_child(),
            }
            os.write(write_fd, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        result = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert result["pid"] == pid
    assert result["before_active"] == 0, "the parent's in-flight requests are not the child's"
    assert result["total"] == 1
    assert result["reports"] >= 2, "the child must report on its own"
    assert monitor.snapshot().active == 1, "the parent is untouched"
    held.finish()
    shutdown_monitor()
    lines = (tmp_path / "logs" / "concmon.jsonl").read_text().splitlines()
    pids = {json.loads(line)["pid"] for line in lines}
    assert pids == {os.getpid(), pid}


def test_fork_during_init_monitor_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fork that lands while another thread is inside init_monitor() (its sinks still
    loading) waits for it: the child gets the finished runtime and starts its own reporter,
    instead of a runtime whose reporter was not started yet and so is never restarted."""
    from concmon.plugins import PluginHost

    loading = threading.Event()
    original = PluginHost.load_configured

    def slow_load(self: PluginHost) -> None:
        loading.set()
        time.sleep(0.3)  # an entry point that takes a while to import
        original(self)

    monkeypatch.setattr(PluginHost, "load_configured", slow_load)
    starter = threading.Thread(
        target=init_monitor,
        kwargs={"sinks": ("jsonl",), "update_interval": 0.1, "system_metrics": False},
    )
    starter.start()
    assert loading.wait(5)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(read_fd)
            os.write(write_fd, json.dumps({"reports": _reports_in_child()}).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    runtime = get_runtime()
    started = runtime is not None and runtime.reporter._thread is not None
    starter.join()
    assert started, "the fork did not wait for init_monitor to finish"
    result = _child_result(pid, read_fd, 20)
    assert result is not None, "the child hung"
    assert result["reports"] >= 2, "the child must report on its own"
    shutdown_monitor()
    lines = (tmp_path / "logs" / "concmon.jsonl").read_text().splitlines()
    assert {json.loads(line)["pid"] for line in lines} == {os.getpid(), pid}
