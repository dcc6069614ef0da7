"""The commands in-process (click's runner): table content, JSON, exit codes, bad input."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from concmon import ConcurrencyMonitor, Snapshot, get_runtime, init_monitor, shutdown_monitor
from concmon.testing import FakeClock
from concmon_cli.main import cli
from tests.cli.conftest import at, busy_snapshot, write


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_show_prints_totals_and_one_row_per_endpoint(log_file: Path) -> None:
    """The latest report's figures appear in the header and the endpoint rows."""
    result = run("show", str(log_file))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(
        "Active 3  Peak this interval 4  Peak ever 4  Total 9  Completed 6  Failed 1"
    )
    row = next(line for line in lines if line.startswith("/chat/completions"))
    cells = row.split()
    assert cells[:9] == ["/chat/completions", "3", "3", "3", "8", "1", "0", "0.0", "0.0"]
    assert len(cells) == 13  # then the interval's req/s, p50, p99 and ttfb p99
    assert any(line.startswith("/health") for line in lines)
    assert f"source {log_file}" in result.stdout


def test_output_to_a_pipe_is_plain_text(log_file: Path) -> None:
    """No escape codes and no box drawing when stdout is not a terminal."""
    out = run("show", str(log_file)).stdout
    assert "\x1b[" not in out
    assert "─" not in out and "━" not in out


def test_endpoint_names_are_shown_as_written_never_as_markup(tmp_path: Path) -> None:
    """A route named like rich markup is printed literally."""
    path = write(tmp_path / "c.log", [busy_snapshot(endpoint="/x/[bold red]{id}")])
    assert "/x/[bold red]{id}" in run("show", str(path)).stdout


def test_per_worker_shows_each_pid_and_the_sum(tmp_path: Path) -> None:
    """Two workers: a row per pid and a sum row that adds them up."""
    path = write(
        tmp_path / "c.log", [busy_snapshot(pid=101, active=2), busy_snapshot(pid=202, active=5)]
    )
    out = run("show", str(path), "--per-worker").stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert rows["101"][1] == "2" and rows["202"][1] == "5" and rows["sum"][1] == "7"
    assert out.splitlines()[0].startswith("Active 7  Peak this interval \u22649  Peak ever \u22649")


def test_export_json_of_the_log_equals_the_jsonl_sinks_own_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both sinks fed by one real monitor: the CLI's JSON from the log is the jsonl line."""
    monkeypatch.setenv("CONCMON_SINKS", "logfile,jsonl")
    monitor = init_monitor(update_interval=60)
    monitor.http.begin("/v1/chat/completions")
    monitor.http.begin("/v1/completions").finish()
    runtime = get_runtime()
    assert runtime is not None
    runtime.reporter.report_now()
    shutdown_monitor()
    log, jsonl = Path(os.environ["CONCMON_LOG_FILE"]), Path(os.environ["CONCMON_JSONL_FILE"])
    exported = run("export", "json", str(log)).stdout
    assert exported == jsonl.read_text().splitlines(keepends=True)[-1]
    assert json.loads(exported)["endpoints"]["/v1/chat/completions"]["active"] == 1
    assert run("export", "json", str(jsonl)).stdout == exported


def test_export_json_since_gives_every_report_in_order(tmp_path: Path) -> None:
    """``--since`` writes one line per report newer than the cut-off, oldest first."""
    path = write(
        tmp_path / "c.log",
        [busy_snapshot(active=a, seconds_ago=s) for a, s in ((1, 3600), (2, 60), (3, 1))],
    )
    out = run("export", "json", str(path), "--since", "10m").stdout
    assert [json.loads(line)["active"] for line in out.splitlines()] == [2, 3]


def test_export_json_sums_workers_unless_asked_per_worker(tmp_path: Path) -> None:
    """Several workers: one summed object (pid 0), or one line per worker."""
    path = write(
        tmp_path / "c.log", [busy_snapshot(pid=1, active=2), busy_snapshot(pid=2, active=3)]
    )
    summed = json.loads(run("export", "json", str(path)).stdout)
    assert (summed["pid"], summed["active"]) == (0, 5)
    each = run("export", "json", str(path), "--per-worker").stdout.splitlines()
    assert [json.loads(line)["pid"] for line in each] == [1, 2]


@pytest.mark.parametrize(
    ("options", "code", "start"),
    [
        ((), 0, "OK - active=3 queue=0"),
        (("--max-active", "3"), 0, "OK"),
        (("--max-active", "2"), 2, "CRITICAL - active 3 > 2"),
        (("--warn-active", "2"), 1, "WARNING - active 3 > 2"),
        (("--warn-active", "2", "--max-active", "5"), 1, "WARNING - active 3 > 2"),
        (("--max-failed-rate", "0.5"), 0, "OK"),
        (("--max-failed-rate", "0.1"), 2, "CRITICAL - failed rate 0.3333 > 0.1 (last interval)"),
        (("--max-queue", "0", "--max-loop-lag", "5"), 0, "OK"),
        (("--max-age", "1h"), 0, "OK"),
    ],
)
def test_check_exit_codes_follow_monitoring_plugins(
    log_file: Path, options: tuple[str, ...], code: int, start: str
) -> None:
    """0 within limits, 1 past a warning, 2 past a critical one, with one line saying which."""
    result = run("check", str(log_file), *options)
    assert result.exit_code == code
    assert result.stdout.startswith(start)
    assert len(result.stdout.splitlines()) == 1


def test_check_flags_a_report_that_is_too_old(tmp_path: Path) -> None:
    """A server that stopped reporting is an alert with ``--max-age``."""
    path = write(tmp_path / "c.log", [busy_snapshot(seconds_ago=120)])
    result = run("check", str(path), "--max-age", "30s")
    assert result.exit_code == 2
    assert "latest report is 120s old > 30s" in result.stdout


def test_history_rows_and_sparklines(tmp_path: Path) -> None:
    """One row per report and a sparkline whose top is the highest interval peak."""
    path = write(
        tmp_path / "c.log",
        [busy_snapshot(active=a, seconds_ago=s) for a, s in ((1, 15), (4, 10), (2, 5), (0, 0))],
    )
    out = run("history", str(path), "--since", "1h").stdout
    rows = [line.split() for line in out.splitlines() if line[:2] == "20"]
    assert [row[2] for row in rows] == ["1", "4", "2", "0"]
    spark = next(line for line in out.splitlines() if line.startswith("/chat/completions"))
    assert "█" in spark and spark.split()[-1] == "4"
    one = run("history", str(path), "-e", "/health").stdout
    assert "/chat/completions" not in one


def test_history_groups_many_reports_into_rows(tmp_path: Path) -> None:
    """An hour of reports fits into ``--rows`` rows, peaks kept."""
    snaps = [busy_snapshot(active=1, seconds_ago=s) for s in range(3600, 0, -5)]
    snaps.insert(100, busy_snapshot(active=42, seconds_ago=3100))
    path = write(tmp_path / "c.log", sorted(snaps, key=lambda s: s.timestamp))
    out = run("history", str(path), "--rows", "10").stdout
    rows = [line.split() for line in out.splitlines() if line[:2] == "20"]
    assert 9 <= len(rows) <= 11
    assert max(int(row[3]) for row in rows) == 43  # 42 held plus the /health probe


def _bad(tmp_path: Path, name: str) -> list[str]:
    target = tmp_path / "c.log"
    if name == "missing":
        return ["show", str(tmp_path / "nope.log")]
    if name == "directory":
        return ["show", str(tmp_path)]
    if name == "empty":
        target.write_bytes(b"")
    elif name == "binary":
        target.write_bytes(os.urandom(200_000))
    elif name == "corrupt":
        target.write_text("[CONCURRENCY] Active: lots\n" * 10)
    elif name == "truncated":
        target.write_text("2026-01-01T00:00:00+00:00 pid=1 [CONCURRENCY] Active: 1/")
    elif name == "bad-since":
        return ["history", str(write(target, [busy_snapshot()])), "--since", "yesterday-ish"]
    elif name == "url":
        from tests.servers import free_port

        return ["show", f"http://127.0.0.1:{free_port()}/concurrency"]
    elif name == "bad-option":
        return ["show", "--warn-active", "many"]
    elif name == "history-url":
        return ["history", "http://127.0.0.1:9/concurrency"]
    return ["show", str(target)]


@pytest.mark.parametrize(
    "name",
    [
        "missing",
        "directory",
        "empty",
        "binary",
        "corrupt",
        "truncated",
        "bad-since",
        "url",
        "bad-option",
        "history-url",
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_2(tmp_path: Path, name: str) -> None:
    """Every bad input: exit 2, exactly one line on stderr, no traceback, nothing on stdout."""
    result = CliRunner().invoke(cli, _bad(tmp_path, name))
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert result.stderr.startswith("concmon-cli: error: ")
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_export_prometheus_adds_up_workers_and_writes_atomically(tmp_path: Path) -> None:
    """Two workers' latest reports become one exposition; ``-o`` leaves only the final file."""
    path = write(
        tmp_path / "c.log", [busy_snapshot(pid=1, active=2), busy_snapshot(pid=2, active=3)]
    )
    out = run("export", "prometheus", str(path)).stdout
    assert 'concmon_requests_active{endpoint="/chat/completions"} 5.0' in out
    target = tmp_path / "prom" / "concmon.prom"
    target.parent.mkdir()
    assert run("export", "prometheus", str(path), "-o", str(target)).exit_code == 0
    assert target.read_text() == out
    assert [p.name for p in target.parent.iterdir()] == ["concmon.prom"]


def test_export_prometheus_folds_the_labels_switched_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``CONCMON_METRICS_METHOD_LABEL=false`` folds the method away in the file export as in the
    live exporter; a bad value is one error line."""
    monitor = ConcurrencyMonitor(clock=FakeClock())
    for method in ("GET", "POST", "POST"):
        ticket = monitor.http.begin("/items", method)
        ticket.respond(200)
        ticket.finish()
    path = write(tmp_path / "c.log", [monitor.snapshot()])
    with_method = run("export", "prometheus", str(path)).stdout
    assert 'method="POST"' in with_method
    monkeypatch.setenv("CONCMON_METRICS_METHOD_LABEL", "false")
    folded = run("export", "prometheus", str(path)).stdout
    assert "method=" not in folded
    assert 'concmon_requests_total{endpoint="/items",outcome="ok",status="2xx"} 3.0' in folded
    monkeypatch.setenv("CONCMON_METRICS_METHOD_LABEL", "maybe")
    bad = run("export", "prometheus", str(path))
    assert bad.exit_code == 2 and "CONCMON_METRICS_METHOD_LABEL" in bad.stderr
    assert len(bad.stderr.splitlines()) == 1


def test_check_reports_a_misconfigured_concmon(
    log_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad own setting, which switches concmon off in the app, makes check critical, naming
    the variable, with reports to read or without any."""
    monkeypatch.setenv("CONCMON_MAX_ENDPOINTS", "lots")
    result = run("check", str(log_file))
    assert result.exit_code == 2
    assert result.stdout.startswith("CRITICAL - concmon is switched off by its settings here")
    assert "CONCMON_MAX_ENDPOINTS" in result.stdout
    silent = run("check", str(tmp_path / "never-written.log"))
    assert silent.exit_code == 2
    assert "CONCMON_MAX_ENDPOINTS" in silent.stdout
    assert len(silent.stdout.splitlines()) == 1
    monkeypatch.delenv("CONCMON_MAX_ENDPOINTS")
    assert run("check", str(log_file)).stdout.startswith("OK")


def test_show_names_requests_still_before_routing(tmp_path: Path) -> None:
    """A report with requests not routed yet shows them as Routing in the header."""
    from concmon import ConcurrencyMonitor

    monitor = ConcurrencyMonitor()
    held = [monitor.http.admit() for _ in range(2)]
    path = write(tmp_path / "r.log", [monitor.report_snapshot()])
    out = run("show", str(path)).stdout
    assert "Routing 2" in out
    assert out.splitlines()[0].startswith("Active 2  Peak this interval 2  Peak ever 2")
    for ticket in held:
        ticket.finish()


def test_show_names_requests_lost_in_a_worker_that_went(tmp_path: Path) -> None:
    """A worker gone with requests in flight shows them as Lost in the header; totals hold."""
    path = write(
        tmp_path / "gone.log",
        [
            busy_snapshot(pid=2, active=7, done=0, interval=1.0, seconds_ago=3.5),
            busy_snapshot(pid=1, active=1, done=3, interval=1.0, seconds_ago=0),
        ],
    )
    out = run("show", str(path)).stdout
    assert "Lost 7" in out
    assert out.splitlines()[0].startswith("Active 1  Peak this interval ")


def _stuck_report(stuck: int, name: str = "/v1/chat/completions") -> Snapshot:
    """A real monitor's 10 s interval of 50 ms requests, with ``stuck`` requests in flight
    since before it began."""
    clock = FakeClock()
    monitor = ConcurrencyMonitor(clock=clock)
    for _ in range(stuck):
        monitor.http.begin(name, "GET")
    monitor.report_snapshot()
    for _ in range(100):
        ticket = monitor.http.begin(name, "GET")
        clock.advance(0.05)
        ticket.finish()
        clock.advance(0.05)
    return dataclasses.replace(monitor.report_snapshot(), timestamp=at(0), uptime_s=100.0)


@pytest.mark.parametrize(
    ("stuck", "options", "code", "start"),
    [
        (0, ("--warn-littles-law", "0.5"), 0, "OK"),
        (2, (), 0, "OK"),
        (2, ("--warn-littles-law", "0.5"), 1, 'WARNING - Little\'s law: "/v1/chat/completions"'),
        (2, ("--warn-littles-law", "0.5", "--max-littles-law", "1.5"), 2, "CRITICAL - Little"),
    ],
)
def test_check_flags_stuck_requests_by_littles_law_when_asked(
    tmp_path: Path, stuck: int, options: tuple[str, ...], code: int, start: str
) -> None:
    """Two requests in flight all interval, longer than any that finished: unexplained
    concurrency past the threshold warns or is critical; without the option nothing changes;
    the perfdata item is there when asked."""
    path = write(tmp_path / "c.log", [_stuck_report(stuck)])
    result = run("check", str(path), *options)
    assert result.exit_code == code, result.stdout
    assert result.stdout.startswith(start), result.stdout
    perfdata = result.stdout.partition(" | ")[2].split()
    labels = [item.split("=")[0] for item in perfdata]
    assert ("littles_law" in labels) == bool(options), perfdata
    if code:
        assert "requests of concurrency unexplained" in result.stdout
        value = float(perfdata[-1].split("=")[1].split(";")[0])
        assert 1.8 < value <= 2.0
        assert perfdata[-1].endswith(";0.5;1.5;0" if code == 2 else ";0.5;;0")


def test_a_littles_law_finding_keeps_an_odd_name_on_one_line(tmp_path: Path) -> None:
    """An endpoint name with a newline and a bar stays inside the status text."""
    path = write(tmp_path / "c.log", [_stuck_report(2, name="/a|b\nCRITICAL")])
    result = run("check", str(path), "--warn-littles-law", "0.5")
    assert result.exit_code == 1
    assert len(result.stdout.splitlines()) == 1
    assert result.stdout.count("|") == 1
    assert '"/a\\u007cb\\nCRITICAL"' in result.stdout
