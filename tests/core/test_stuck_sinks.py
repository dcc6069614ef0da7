"""A sink that blocks for ever delays only itself, and shutdown still finishes within its bound.

The stuck sink is a real plugin blocking on an event nobody sets (a network call that never
returns); the other sinks are the built-in log and JSON-lines files, read back with the parsers.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from click.testing import CliRunner

import concmon
from concmon import init_monitor, shutdown_monitor
from concmon.delivery import SINK_BACKLOG
from concmon.logformat import parse_reports
from concmon.runtime import Runtime, get_runtime
from concmon.settings import ConfigError, load_settings
from concmon.snapshot import Snapshot
from concmon.testing import CapturingSink
from concmon_cli.main import cli
from tests.servers import free_port, wait_for_port

T = TypeVar("T")

BOUND = 60.0
"""How long a test lets a call run before calling it hung (far past any bound under test)."""


class Stuck:
    """A sink whose every call blocks until ``release`` is set, as a dead network peer does."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    @concmon.hookimpl
    def concmon_report(self, snapshot: Snapshot) -> None:
        self.entered.set()
        self.release.wait()

    @concmon.hookimpl
    def concmon_shutdown(self, snapshot: Snapshot) -> None:
        self.release.wait()


def _returns(fn: Callable[[], T]) -> T:
    """``fn()``, run on a thread and failed if it has not returned within :data:`BOUND`."""
    result: list[T] = []
    thread = threading.Thread(target=lambda: result.append(fn()), daemon=True)
    thread.start()
    thread.join(BOUND)
    assert not thread.is_alive(), f"{fn} is hung behind the stuck sink"
    return result[0]


@pytest.fixture
def stuck() -> Iterator[Stuck]:
    sink = Stuck()
    yield sink
    sink.release.set()


def _runtime(tmp_path: Path, interval: float, **settings: object) -> Runtime:
    init_monitor(
        sinks=("logfile", "jsonl"),
        update_interval=interval,
        system_metrics=False,
        shutdown_timeout=1.0,
        **settings,
    )
    runtime = get_runtime()
    assert runtime is not None
    assert runtime.reporter.reported_at_start.wait(BOUND), "the report at start never came"
    return runtime


def _files(tmp_path: Path) -> tuple[list[Snapshot], list[dict[str, object]]]:
    logs = tmp_path / "logs"
    reports, bad = parse_reports((logs / "concmon.log").read_text().splitlines())
    assert bad == 0
    lines = [json.loads(line) for line in (logs / "concmon.jsonl").read_text().splitlines()]
    return reports, lines


def test_a_stuck_sink_delays_neither_the_files_nor_shutdown(
    tmp_path: Path, stuck: Stuck, caplog: pytest.LogCaptureFixture
) -> None:
    """RELIABILITY 40: with a sink blocked for ever, every report and the final one still reach
    the log and JSON-lines files, the stuck sink is counted, logged once and shown by
    `concmon-cli check`, and shutdown_monitor() returns."""
    runtime = _runtime(tmp_path, interval=3600.0)  # reports made here, by report_now
    assert runtime.plugins.register(stuck, "stuck")
    monitor = runtime.monitor
    with caplog.at_level(logging.ERROR, logger="concmon"):
        for n in range(3):
            monitor.http.begin(f"/r{n}").finish()
            _returns(runtime.reporter.report_now)
            assert stuck.entered.is_set()
        final = _returns(shutdown_monitor)
    assert final is not None
    reports, lines = _files(tmp_path)
    assert [r.total for r in reports] == [0, 1, 2, 3, 3]  # the report at start, then these
    assert [line["total"] for line in lines] == [0, 1, 2, 3, 3]
    assert reports[-1].sink_errors["stuck"] >= 3
    late = [r for r in caplog.records if "plugin 'stuck'" in r.getMessage()]
    assert len(late) == 1, "a stuck sink is logged with the rate limit"
    unfinished = [r for r in caplog.records if "did not finish their final report" in r.message]
    assert len(unfinished) == 1 and "'stuck'" in unfinished[0].getMessage()
    check = CliRunner().invoke(cli, ["check", str(tmp_path / "logs" / "concmon.log")])
    assert check.exit_code == 0
    assert f"sink_errors=stuck:{reports[-1].sink_errors['stuck']}" in check.output


def test_the_reporter_thread_keeps_its_grid_past_a_stuck_sink(tmp_path: Path, stuck: Stuck) -> None:
    """A stuck sink does not stop the reporter thread: another sink keeps getting reports."""
    runtime = _runtime(tmp_path, interval=0.05)
    assert runtime.plugins.register(stuck, "stuck")
    capture = CapturingSink()
    assert runtime.plugins.register(capture, "capture")
    assert stuck.entered.wait(BOUND)
    reports = capture.wait_for(len(capture.reports) + 5, timeout=BOUND)
    assert reports[-1].sink_errors["stuck"] >= 3
    assert _returns(shutdown_monitor) is not None
    assert capture.final is not None


def test_a_stuck_sinks_backlog_is_bounded_and_drops_are_counted(
    tmp_path: Path, stuck: Stuck
) -> None:
    """A stuck sink keeps at most SINK_BACKLOG reports waiting; the older ones are dropped and
    counted, and each report it was late for shows under sink_errors."""
    runtime = _runtime(tmp_path, interval=3600.0)
    assert runtime.plugins.register(stuck, "stuck")
    extra = 3
    for _ in range(1 + SINK_BACKLOG + extra):  # one in the sink, a full backlog, and more
        _returns(runtime.reporter.report_now)
    worker = runtime.plugins.worker("stuck")
    assert worker is not None and worker.dropped == extra
    assert runtime.monitor.snapshot().sink_errors["stuck"] == 1 + SINK_BACKLOG + extra
    assert _returns(shutdown_monitor) is not None


def test_shutdown_timeout_is_validated() -> None:
    """CONCMON_SHUTDOWN_TIMEOUT takes a positive number of seconds, and says so when it is not."""
    assert load_settings(shutdown_timeout="2.5").shutdown_timeout == 2.5
    for bad in ("0", "-1", "soon", "nan"):
        with pytest.raises(ConfigError, match="CONCMON_SHUTDOWN_TIMEOUT='"):
            load_settings(CONCMON_SHUTDOWN_TIMEOUT=bad)


_APP = textwrap.dedent(
    """
    import threading

    from fastapi import FastAPI

    import concmon
    from concmon.runtime import get_runtime
    from concmon_fastapi import install

    never = threading.Event()


    class Stuck:
        @concmon.hookimpl
        def concmon_report(self, snapshot):
            never.wait()

        @concmon.hookimpl
        def concmon_shutdown(self, snapshot):
            never.wait()


    app = FastAPI()
    install(app)


    @app.get("/stick")
    def stick():
        runtime = get_runtime()
        return {"registered": runtime is not None and runtime.plugins.register(Stuck(), "stuck")}
    """
)


def test_sigterm_stops_a_uvicorn_server_with_a_stuck_sink(tmp_path: Path) -> None:
    """RELIABILITY 40: a real uvicorn server whose sink blocks for ever exits on SIGTERM, with
    the log file's reports (the final one included) whole and the stuck sink counted."""
    (tmp_path / "stuckapp.py").write_text(_APP)
    log = tmp_path / "logs" / "concmon.log"
    port = free_port()
    env = dict(os.environ)
    env.update(
        CONCMON_SINKS="logfile",
        MONITOR_UPDATE_INTERVAL="0.1",
        CONCMON_SHUTDOWN_TIMEOUT="1",
        CONCMON_SYSTEM_METRICS="false",
        CONCMON_LOG_FILE=str(log),
        PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]),
    )
    argv = [sys.executable, "-m", "uvicorn", "stuckapp:app", "--host", "127.0.0.1"]
    proc = subprocess.Popen(
        [*argv, "--port", str(port), "--log-level", "warning"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for_port(port, BOUND, proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stick", timeout=BOUND) as reply:
            assert json.loads(reply.read()) == {"registered": True}
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline:  # until the other sink shows the stuck one, counted
            reports, _ = parse_reports(log.read_text().splitlines()) if log.exists() else ([], 0)
            if reports and reports[-1].sink_errors.get("stuck", 0) >= 2:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the log file never showed the stuck sink counted")
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=BOUND)
        except subprocess.TimeoutExpired:
            pytest.fail("SIGTERM did not stop the server: shutdown hung on the stuck sink")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=BOUND)
    reports, bad = parse_reports(log.read_text().splitlines())
    assert bad == 0
    assert reports[-1].total == 1  # the final report: the /stick request, finished
    assert "did not finish their final report" in output
