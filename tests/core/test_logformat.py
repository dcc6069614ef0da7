"""The tagged log format: what is written reads back exactly, and bad lines never crash."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from concmon import ConcurrencyMonitor, Outcome, Snapshot, SystemStats
from concmon.logformat import (
    LogFormatError,
    ReportAssembler,
    format_report,
    parse_line,
    parse_reports,
)
from concmon.testing import FakeClock
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


OLDER_REPORT = (
    "2026-11-27T12:00:05.000123+00:00 pid=4242 [CONCURRENCY] Active: 4/12 Total: 256 "
    "Completed: 252 Failed: 2 Cancelled: 1 Queue: 2 Routing: 0 Uptime: 125.0s IntervalPeak: 7 "
    'AvgActive: 3.2 Rejected: 0 QueuePeak: 5 Interval: 5.0s Saturation: 0.5 Host: "web-1"\n'
    '2026-11-27T12:00:05.000123+00:00 pid=4242 [ENDPOINTS] "/chat/completions" active=3 '
    "peak=10 interval_peak=5 avg_active=2.5 total=100 completed=97 failed=1 cancelled=1 "
    'rejected=0 avg_ms=812.4 max_ms=2950.1; ws:"/ws/feed" active=1 peak=1 interval_peak=1 '
    "avg_active=1.0 total=1 completed=0 failed=0 cancelled=0 rejected=0 avg_ms=- max_ms=-; "
    'queue:"gate" depth=2 peak=5 waited=40 wait_avg_ms=12.5 wait_max_ms=80.0\n'
    "2026-11-27T12:00:05.000123+00:00 pid=4242 [SYSTEM] CPU: 45.2% Memory: 123.4MB "
    "Threads: 12 FDs: 31 LoopLag: 0.8ms SinkErrors: {}\n"
)


def test_a_report_written_before_distributions_existed_still_parses() -> None:
    """A report without rates, buckets, distributions or responses reads as a snapshot whose
    new fields are empty, every older figure kept."""
    parsed, skipped = parse_reports(OLDER_REPORT.splitlines())
    assert skipped == 0
    (snap,) = parsed
    stats = snap.endpoints["/chat/completions"]
    assert (snap.total, stats.completed, stats.avg_ms) == (256, 97, 812.4)
    assert (snap.rate, snap.buckets_s, stats.rate, stats.responses) == (0.0, (), 0.0, {})
    assert stats.duration is None and stats.ttfb_all is None
    assert snap.websockets["/ws/feed"].active == 1


def _streamed(clock: FakeClock) -> ConcurrencyMonitor:
    """Twenty streamed answers: head after 50 ms, first byte after 0.3-2.2 s, done at +1 s."""
    monitor = ConcurrencyMonitor(clock=clock)
    for i in range(20):
        ticket = monitor.http.begin("/chat/completions", "POST")
        clock.advance(0.05)
        ticket.respond(200 if i else 500)
        clock.advance(0.25 + i * 0.1)
        ticket.first_byte()
        clock.advance(1.0)
        ticket.finish(Outcome.OK if i else Outcome.FAILED)
    return monitor


def test_a_real_report_shows_percentiles_and_reads_back_its_buckets() -> None:
    """A person reading the line sees p50/p90/p99 of the duration and the time to first byte;
    the buckets, rate and responses read back exactly, only non-empty buckets written."""
    clock = FakeClock()
    monitor = _streamed(clock)
    clock.advance(10.0)
    snap = monitor.report_snapshot()
    stats = snap.endpoints["/chat/completions"]
    assert stats.duration is not None and stats.ttfb is not None
    line = format_report(snap).splitlines()[1]
    assert f" p50_ms={stats.duration.p50_ms!r} " in line
    assert f" p99_ms={stats.duration.p99_ms!r} " in line
    assert f" ttfb_p90_ms={stats.ttfb.p90_ms!r} " in line
    assert f" rate={stats.rate!r} " in line
    assert ' responses={"POST 2xx ok":19,"POST 5xx failed":1}' in line
    written = line.split(" duration=")[1].split(" ")[0]
    assert written.count(":") == sum(1 for n in stats.duration.counts if n)
    head = format_report(snap).splitlines()[0]
    assert " Rate: " in head and " Buckets: 0.001,0.0025," in head
    parsed, skipped = parse_reports(format_report(snap).splitlines())
    assert skipped == 0 and parsed == [snap]


def test_a_bucket_past_the_last_bound_skips_the_report() -> None:
    """An index past the report's buckets is damage: the report is skipped and counted."""
    clock = FakeClock()
    text = format_report(_streamed(clock).report_snapshot())
    damaged = re.sub(r" duration=([^/]+)/([^/]+)/", r" duration=\1/\2/99:1,", text)
    assert damaged != text
    parsed, skipped = parse_reports(damaged.splitlines())
    assert parsed == [] and skipped == 3


@pytest.mark.parametrize(
    "entry",
    [
        '"/a" active=0 peak=0 interval_peak=0 avg_active=0.0 total=0 completed=0 failed=0 '
        "cancelled=0 rejected=0 avg_ms=- max_ms=- duration=1.0/-/1:2,1:3",
        '"/a" active=0 peak=0 interval_peak=0 avg_active=0.0 total=0 completed=0 failed=0 '
        "cancelled=0 rejected=0 avg_ms=- max_ms=- rate=1.0 rate=2.0",
        '"/a" active=0 peak=0 interval_peak=0 avg_active=0.0 total=0 completed=0 failed=0 '
        "cancelled=0 rejected=0 avg_ms=- max_ms=- colour=1",
        '"/a" active=0 peak=0 interval_peak=0 avg_active=0.0 total=0 completed=0 failed=0 '
        'cancelled=0 rejected=0 avg_ms=- max_ms=- responses={"GET 2xx ok":-1}',
        '"/a" active=0 peak=0 interval_peak=0 avg_active=0.0 total=0 completed=0 failed=0 '
        "cancelled=0 rejected=0 avg_ms=- max_ms=- ttfb=x/1/-",
    ],
)
def test_damaged_new_fields_raise_format_error(entry: str) -> None:
    """A bucket written twice, a repeated or unknown field, a negative response count or a
    distribution that is not <sum>/<max>/<buckets> is a LogFormatError."""
    with pytest.raises(LogFormatError):
        parse_line(f"2026-11-27T12:00:00+00:00 pid=1 [ENDPOINTS] {entry}")


def test_the_documented_example_report_parses_and_writes_back_as_shown() -> None:
    """The three lines of docs/log-format.md read as one report, and writing that report gives
    the same lines: the documented percentiles are the ones its buckets give."""
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "log-format.md").read_text("utf-8")
    lines = [line for line in page.splitlines() if line.startswith("2026-11-27T12:00:05")]
    assert len(lines) == 3
    parsed, skipped = parse_reports(lines)
    assert skipped == 0
    (snap,) = parsed
    assert format_report(snap).splitlines() == lines
    stats = snap.endpoints["/chat/completions"]
    assert stats.duration is not None and stats.duration.count == 16
    assert sum(stats.responses.values()) == stats.completed
