"""Sources: the latest report per worker, read from the end; JSON lines; the live URL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from concmon import ConcurrencyMonitor
from concmon.logformat import format_report
from concmon_cli.errors import CliError
from concmon_cli.sources import FileSource, UrlSource, open_source
from tests.cli.conftest import busy_snapshot, write
from tests.servers import uvicorn_thread


def test_latest_report_per_worker_from_an_interleaved_file(tmp_path: Path) -> None:
    """Two workers interleaving in one file: each pid's latest report, summed exactly."""
    path = write(
        tmp_path / "c.log",
        [
            busy_snapshot(pid=1, active=1, seconds_ago=10),
            busy_snapshot(pid=2, active=5, seconds_ago=9),
            busy_snapshot(pid=1, active=2, seconds_ago=5),
            busy_snapshot(pid=2, active=4, seconds_ago=4),
        ],
    )
    reading = FileSource(path).latest()
    assert {s.pid: s.active for s in reading.live} == {1: 2, 2: 4}
    assert reading.workers.total() is not None
    assert reading.workers.total().active == 6  # type: ignore[union-attr]
    previous = {s.pid: reading.workers.previous_of(s) for s in reading.live}
    assert {pid: s.active for pid, s in previous.items() if s is not None} == {1: 1, 2: 5}


def test_a_worker_silent_for_several_intervals_is_dropped(tmp_path: Path) -> None:
    """A worker killed a minute ago no longer adds its active requests to the sum."""
    path = write(
        tmp_path / "c.log",
        [busy_snapshot(pid=9, active=7, interval=1.0, seconds_ago=8)]
        + [busy_snapshot(pid=1, active=1, interval=1.0, seconds_ago=s) for s in (3, 2, 1, 0)],
    )
    reading = FileSource(path).latest()
    assert [s.pid for s in reading.live] == [1]


def test_show_never_reads_the_start_of_a_long_file(tmp_path: Path) -> None:
    """Megabytes of garbage before an hour of reports are never reached, so never counted."""
    path = tmp_path / "big.log"
    with path.open("wb") as handle:
        handle.write(b"\x00garbage line\n" * 400_000)
    write(path, [busy_snapshot(seconds_ago=s) for s in range(3600, -1, -5)])
    reading = FileSource(path).latest()
    assert reading.skipped == 0
    assert [s.active for s in reading.live] == [3]


def test_unreadable_lines_near_the_end_are_skipped_and_counted(tmp_path: Path) -> None:
    """Junk between reports is counted, and the report around it still reads."""
    path = write(tmp_path / "c.log", [busy_snapshot(seconds_ago=3)])
    with path.open("a") as handle:
        handle.write("not a report\n\x00\x01binary\n")
    write(path, [busy_snapshot(active=8)])
    reading = FileSource(path).latest()
    assert reading.skipped == 2
    assert reading.live[0].active == 8


def test_a_report_cut_mid_line_is_ignored_and_the_previous_one_used(tmp_path: Path) -> None:
    """A truncated file (disk full, crash) shows the last complete report."""
    path = write(tmp_path / "c.log", [busy_snapshot(active=2, seconds_ago=1)])
    text = format_report(busy_snapshot(active=9))
    path.write_text(path.read_text() + text[: len(text) // 2])
    assert FileSource(path).latest().live[0].active == 2


def test_rotated_backup_is_read_when_the_new_file_has_no_report_yet(tmp_path: Path) -> None:
    """Right after a rotation the current file is empty of reports; the ``.1`` answers."""
    write(tmp_path / "c.log.1", [busy_snapshot(active=4)])
    path = tmp_path / "c.log"
    path.write_text("half a li")
    assert FileSource(path).latest().live[0].active == 4


def test_json_lines_are_detected_and_read(tmp_path: Path) -> None:
    """A JSON-lines file without a telling suffix is recognised by its content."""
    path = write(tmp_path / "reports.txt", [busy_snapshot(active=6)], jsonl=True)
    source = FileSource(path)
    assert source.kind == "jsonl"
    assert source.latest().live[0].active == 6


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: p.write_bytes(bytes(range(256)) * 100), "no complete concmon report"),
        (lambda p: p.write_text("hello\nworld\n"), "2 unreadable lines skipped"),
    ],
)
def test_unusable_files_raise_one_clear_error(tmp_path: Path, setup: Any, message: str) -> None:
    """Missing, directory, empty, binary, foreign: a one-line reason each."""
    path = tmp_path / "c.log"
    setup(path)
    with pytest.raises(CliError, match=message) as info:
        FileSource(path).latest()
    assert "\n" not in str(info.value)


def test_other_url_schemes_are_refused() -> None:
    """``ftp://`` is neither a URL we read nor a file name."""
    with pytest.raises(CliError, match="only http"):
        open_source("ftp://127.0.0.1/x")


def _snapshot_app(monitor: ConcurrencyMonitor) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        status, body = 200, json.dumps(monitor.snapshot().to_dict()).encode()
        if scope["path"] != "/concurrency":
            status, body = 404, b"no"
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


@pytest.mark.slow
def test_url_source_reads_a_live_snapshot_and_names_http_errors() -> None:
    """A real server's snapshot JSON reads back exactly; a 404 is a clear error."""
    monitor = ConcurrencyMonitor()
    ticket = monitor.http.begin("/v1/completions")
    with uvicorn_thread(_snapshot_app(monitor), lifespan="off") as base:
        snap = UrlSource(f"{base}/concurrency").latest().live[0]
        assert snap.endpoints["/v1/completions"].active == 1
        with pytest.raises(CliError, match="HTTP 404"):
            UrlSource(f"{base}/nope").latest()
    ticket.finish()


def test_unreachable_url_is_a_clear_error() -> None:
    """Nothing listening on the port: one line naming the URL."""
    from tests.servers import free_port

    url = f"http://127.0.0.1:{free_port()}/concurrency"
    with pytest.raises(CliError, match="cannot reach"):
        UrlSource(url).latest()
