"""The tagged log format: what is written reads back exactly, and bad lines never crash."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from concmon import ConcurrencyMonitor, Snapshot, SystemStats
from concmon.logformat import (
    LogFormatError,
    ReportAssembler,
    format_report,
    parse_line,
    parse_reports,
)
from tests.strategies import snapshots


@given(snapshots())
@settings(max_examples=300, deadline=None)
def test_round_trip_is_exact(snapshot: Snapshot) -> None:
    """Parsing a written report gives back exactly the snapshot written, whatever the names."""
    text = format_report(snapshot)
    assert text.count("\n") == 3, "a report is exactly three lines, whatever the names hold"
    parsed, skipped = parse_reports(text.splitlines(keepends=True))
    assert skipped == 0
    assert parsed == [snapshot]
    assert parsed[0].to_dict() == snapshot.to_dict()


@given(snapshots())
@settings(max_examples=100, deadline=None)
def test_lines_are_ascii_and_tagged(snapshot: Snapshot) -> None:
    """Every line is ASCII and starts with timestamp, pid and one of the three tags."""
    lines = format_report(snapshot).splitlines()
    assert [line.split(" ")[2] for line in lines] == ["[CONCURRENCY]", "[ENDPOINTS]", "[SYSTEM]"]
    for line in lines:
        assert line.isascii()
        assert line.startswith(f"{snapshot.timestamp} pid={snapshot.pid} ")


def test_a_name_cannot_forge_a_line() -> None:
    """An endpoint name holding a newline and a fake report line stays inside its own line."""
    monitor = ConcurrencyMonitor()
    forged = '/x"\n2026-01-01T00:00:00+00:00 pid=1 [SYSTEM] CPU: 1.0% Memory: -'
    monitor.begin(forged).finish()
    snap = monitor.snapshot()
    text = format_report(snap)
    assert text.count("\n") == 3
    parsed, skipped = parse_reports(text.splitlines())
    assert skipped == 0
    assert list(parsed[0].endpoints) == [forged]


def test_readme_example_line_parses() -> None:
    """The shape promised in the docs: `Active: A/P` is active over lifetime peak."""
    monitor = ConcurrencyMonitor()
    tickets = [monitor.begin("/chat/completions") for _ in range(12)]
    for t in tickets[4:]:
        t.finish()
    line = format_report(monitor.snapshot()).splitlines()[0]
    assert (
        "[CONCURRENCY] Active: 4/12 Total: 12 Completed: 8 Failed: 0 Cancelled: 0 Queue: 0" in line
    )
    values = parse_line(line).values
    assert values["active"] == 4
    assert values["peak"] == 12


def test_lines_written_before_the_routing_figure_still_parse() -> None:
    """An older line has no `Routing:` field; it reads as 0 routing, everything else kept."""
    monitor = ConcurrencyMonitor()
    held = monitor.http.admit()
    line = format_report(monitor.snapshot()).splitlines()[0]
    assert " Routing: 1 " in line
    assert parse_line(line).values["routing"] == 1
    older = parse_line(line.replace(" Routing: 1", ""))
    assert older.values["routing"] == 0 and older.values["active"] == 1
    held.finish()


@pytest.mark.parametrize(
    "line",
    [
        "",
        "hello world",
        "2026-11-27T12:00:00+00:00 pid=12 [CONCURRENCY] Active: 1/2",
        "2026-11-27T12:00:00+00:00 pid=x [SYSTEM] CPU: 1%",
        "not-a-time pid=1 [ENDPOINTS] ",
        '2026-11-27T12:00:00+00:00 pid=1 [ENDPOINTS] "/a" active=1',
        '2026-11-27T12:00:00+00:00 pid=1 [ENDPOINTS] "/a active=1',
        "2026-11-27T12:00:00+00:00 pid=1 [SYSTEM] CPU: nan% Memory: -MB Threads: - FDs: - "
        "LoopLag: - SinkErrors: {}",
        "2026-11-27T12:00:00+00:00 pid=1 [SYSTEM] CPU: - Memory: - Threads: - FDs: - "
        "LoopLag: - SinkErrors: []",
        "\x00\x01\x02 binary",
    ],
)
def test_garbage_lines_raise_format_error(line: str) -> None:
    """A malformed line raises LogFormatError, never anything else."""
    with pytest.raises(LogFormatError):
        parse_line(line)


@given(st.lists(st.text(max_size=200) | st.binary(max_size=200), max_size=30))
@settings(max_examples=200, deadline=None)
def test_arbitrary_input_never_crashes(lines: list[str | bytes]) -> None:
    """Random text and bytes are skipped and counted, never raised."""
    parsed, skipped = parse_reports(lines)
    assert parsed == []
    assert skipped <= len(lines)


def _report(pid: int) -> str:
    monitor = ConcurrencyMonitor()
    monitor.pid = pid
    monitor.begin(f"/p{pid}").finish()
    return format_report(monitor.report_snapshot(SystemStats(cpu_percent=1.5)))


def test_interleaved_workers_and_damage_are_counted() -> None:
    """Lines of two pids interleave; truncated, binary and orphan lines are skipped and counted."""
    a = _report(100).splitlines()
    b = _report(200).splitlines()
    lines: list[str | bytes] = [
        a[0],
        b[0],
        b"\xff\xfe garbage",
        a[1],
        b[1],
        "truncated [CONCURR",
        a[2],
        b[2],
        a[0],  # a report cut off after its first line
    ]
    parsed, skipped = parse_reports(lines)
    assert sorted(s.pid for s in parsed) == [100, 200]
    assert skipped == 3


def test_assembler_bounds_pending_reports() -> None:
    """Half-written reports cannot grow the parser's memory without bound."""
    assembler = ReportAssembler(max_pending=10)
    for pid in range(1, 51):
        assembler.feed(_report(pid).splitlines()[0])
    assert len(assembler._pending) <= 10
    assembler.close()
    assert assembler.skipped == 50


def test_json_and_log_agree() -> None:
    """The log line and the JSON line of one snapshot carry the same numbers."""
    monitor = ConcurrencyMonitor()
    t = monitor.begin("/a")
    monitor.begin("/b").finish()
    snap = monitor.snapshot()
    t.finish()
    from concmon.sinks.jsonl import snapshot_line

    from_json = Snapshot.from_dict(json.loads(snapshot_line(snap)))
    from_log = parse_reports(format_report(snap).splitlines())[0][0]
    assert from_json == from_log == snap
