"""Built-in sinks and the shared append-only file: rotation, logrotate, many writers, bad disks."""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import os
from contextlib import redirect_stdout
from pathlib import Path

import psutil
import pytest

from concmon import ConcurrencyMonitor, Snapshot, SystemStats, get_runtime, init_monitor
from concmon.logformat import format_report, parse_reports
from concmon.sinks.appendfile import AppendFile, SinkWriteError
from concmon.sinks.jsonl import snapshot_line
from concmon.sinks.stdout import StdoutSink
from concmon.system import SystemSampler
from concmon.testing import FakeClock


def _snap(n: int = 1) -> Snapshot:
    monitor = ConcurrencyMonitor()
    for _ in range(n):
        monitor.begin("/x").finish()
    return monitor.report_snapshot(SystemStats(cpu_percent=3.5))


def test_logfile_and_jsonl_write_what_parses_back(tmp_path: Path) -> None:
    """logfile writes three tagged lines per report, jsonl one JSON object; both read back."""
    monitor = init_monitor(sinks=("logfile", "jsonl"), update_interval=60)
    runtime = get_runtime()
    assert runtime is not None
    assert runtime.reporter.reported_at_start.wait(10)
    monitor.begin("/a").finish()
    first = runtime.reporter.report_now()
    monitor.begin("/b")
    second = runtime.reporter.report_now()
    log = (tmp_path / "logs" / "concmon.log").read_text()
    assert len(log.splitlines()) == 9  # the report at start, then these two
    reports, skipped = parse_reports(log.splitlines())
    assert (skipped, reports[0].total, reports[1:]) == (0, 0, [first, second])
    jsonl = (tmp_path / "logs" / "concmon.jsonl").read_text().splitlines()
    assert [Snapshot.from_dict(json.loads(line)) for line in jsonl] == reports


def test_stdout_sink_prints_the_tagged_lines() -> None:
    """The stdout sink writes the same three lines as the log file."""
    snap = _snap()
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        StdoutSink().concmon_report(snap)
    assert buffer.getvalue() == format_report(snap)


def test_rotation_by_size_keeps_backups(tmp_path: Path) -> None:
    """Past max_bytes the file moves to .1, .2 ...; no line is split and none lost."""
    path = tmp_path / "r.log"
    writer = AppendFile(path, max_bytes=2000, backup_count=50)
    reports = [_snap(i) for i in range(30)]
    for snap in reports:
        writer.write(format_report(snap))
    writer.close()
    files = [path, *sorted(tmp_path.glob("r.log.*"), key=lambda p: int(p.suffix[1:]))]
    assert len(files) > 3
    lines: list[str] = []
    for f in reversed(files):
        assert f.stat().st_size <= 2000 or len(f.read_text().splitlines()) == 3
        lines += f.read_text().splitlines()
    assert parse_reports(lines) == (reports, 0)


def test_rotation_without_backups_truncates(tmp_path: Path) -> None:
    """backup_count 0 keeps one bounded file."""
    path = tmp_path / "r.log"
    writer = AppendFile(path, max_bytes=1500, backup_count=0)
    for i in range(20):
        writer.write(format_report(_snap(i)))
    assert path.stat().st_size <= 1500 or len(path.read_text().splitlines()) == 3
    assert list(tmp_path.glob("r.log.*")) == []


def test_external_rename_and_recreate_loses_nothing(tmp_path: Path) -> None:
    """RELIABILITY 29: logrotate moves the file away; the writer reopens on the inode change."""
    path = tmp_path / "concmon.log"
    writer = AppendFile(path)
    a, b, c = _snap(1), _snap(2), _snap(3)
    writer.write(format_report(a))
    os.rename(path, tmp_path / "concmon.log.1")
    path.touch()  # logrotate's `create`
    writer.write(format_report(b))
    os.unlink(path)  # and a plain delete
    writer.write(format_report(c))
    assert parse_reports((tmp_path / "concmon.log.1").read_text().splitlines()) == ([a], 0)
    assert parse_reports(path.read_text().splitlines()) == ([c], 0)


def _append_many(path: str, worker: int, count: int) -> None:
    writer = AppendFile(Path(path), max_bytes=0)
    monitor = ConcurrencyMonitor()
    monitor.pid = 10_000 + worker
    for i in range(count):
        monitor.begin(f"/w{worker}/" + "x" * (i % 50)).finish()
        writer.write(format_report(monitor.report_snapshot()))
    writer.close()


def test_eight_processes_append_complete_lines(tmp_path: Path) -> None:
    """RELIABILITY 29: eight processes appending to one file: every line complete."""
    path = tmp_path / "shared.log"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(path), w, 150)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    reports, skipped = parse_reports(path.read_text().splitlines())
    assert skipped == 0
    assert len(reports) == 8 * 150
    for w in range(8):
        mine = [r for r in reports if r.pid == 10_000 + w]
        assert [r.total for r in mine] == list(range(1, 151))


def test_unwritable_path_gives_a_clear_message_and_counting_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """RELIABILITY 30: a log file that cannot be opened is reported clearly; counting goes on."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    monkeypatch.setenv("CONCMON_LOG_FILE", str(blocker / "concmon.log"))
    monitor = init_monitor(update_interval=60)
    runtime = get_runtime()
    assert runtime is not None
    assert runtime.reporter.reported_at_start.wait(10)
    with caplog.at_level(logging.ERROR, logger="concmon"):
        monitor.begin("/x").finish()
        snap = runtime.reporter.report_now()
        monitor.begin("/x").finish()
        runtime.reporter.report_now()
    assert snap.total == 1
    assert monitor.snapshot().total == 2
    assert monitor.snapshot().sink_errors == {"logfile": 3}  # the report at start too
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"cannot write reports to {blocker / 'concmon.log'}" in m for m in messages)


def test_full_disk_is_reported(tmp_path: Path) -> None:
    """RELIABILITY 30: a full disk (ENOSPC from /dev/full) raises one clear SinkWriteError."""
    if not os.path.exists("/dev/full"):
        pytest.skip("/dev/full is not available on this system")
    writer = AppendFile(Path("/dev/full"))
    with pytest.raises(SinkWriteError, match="cannot write reports to /dev/full"):
        writer.write(format_report(_snap()))


def test_jsonl_lines_are_single_ascii_lines() -> None:
    """A JSON line holds one snapshot whatever the names, so a write never splits it."""
    monitor = ConcurrencyMonitor()
    monitor.begin('/ü\n\u2028"quoted"').finish()
    line = snapshot_line(monitor.snapshot())
    assert line.isascii() and line.count("\n") == 1 and line.endswith("\n")


def test_system_metrics_are_read_or_null() -> None:
    """psutil figures are filled in; a process that has gone away gives nulls, not a crash."""
    clock = FakeClock()
    reading = SystemSampler(clock)
    reading.sample()  # CPU percent needs a window: it starts here
    clock.advance(1.0)
    stats = reading.sample()
    assert stats.memory_mb is not None and stats.memory_mb > 0
    assert stats.threads is not None and stats.threads >= 1
    assert stats.open_fds is not None and stats.open_fds > 0
    assert stats.cpu_percent is not None

    ctx = multiprocessing.get_context("fork")
    release = ctx.Event()
    child = ctx.Process(target=release.wait, args=(10,))
    child.start()
    assert child.pid is not None
    sampler = SystemSampler()
    sampler._pid = os.getpid()
    sampler._process = psutil.Process(child.pid)
    release.set()
    child.join()
    assert sampler.sample() == SystemStats(), "every figure of a vanished process is null"
