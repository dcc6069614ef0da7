"""The live table at real terminal widths: figures are never cut, names are never obeyed."""

from __future__ import annotations

import dataclasses
import itertools
import re
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from rich.console import Console

from concmon import ConcurrencyMonitor, Outcome, Snapshot
from concmon.host import merge
from concmon.testing import FakeClock
from concmon_cli.main import cli
from concmon_cli.render import ENDPOINT_COLUMNS, Footer, Thresholds, endpoint_table, view
from tests.cli.conftest import UPTIME_AT_NOW, at, write

LONG = "/v1/organisations/{organisation_id}/projects/{project_id}/completions"
PIDS = (2512345, 3987654)


def big_worker(pid: int, scale: int, names: tuple[str, ...] = ("/v1/chat", LONG)) -> Snapshot:
    """A real monitor's report, its counters then raised to 6-7 digit figures."""
    monitor = ConcurrencyMonitor()
    for name in names:
        monitor.http.begin(name).finish(Outcome.FAILED)
        monitor.http.begin(name)
    with monitor.queued("upstream"):
        snap = monitor.report_snapshot()
    endpoints = {
        name: dataclasses.replace(
            e,
            active=1234 + scale,
            peak=7654321 + scale,
            interval_peak=2345678 + scale,
            total=3961234 + scale,
            completed=3961234 - 1234,
            failed=123456 + scale,
            cancelled=654321 + scale,
            avg_ms=123456.7,
            max_ms=9876543.2,
        )
        for name, e in snap.endpoints.items()
    }
    return dataclasses.replace(
        snap,
        pid=pid,
        timestamp=at(0),
        uptime_s=UPTIME_AT_NOW,
        interval_s=5.0,
        active=2468 + scale,
        peak=8765432 + scale,
        interval_peak=4567890 + scale,
        total=7922468 + scale,
        completed=7920000,
        failed=246912 + scale,
        cancelled=1308642 + scale,
        rejected=1111111 + scale,
        queue_depth=333333,
        queue_peak=444444 + scale,
        endpoints=endpoints,
    )


def render(width: int, snapshots: list[Snapshot], *, per_worker: bool, terminal: bool) -> str:
    console = Console(width=width, force_terminal=False, highlight=False, color_system=None)
    total = merge(snapshots)
    info = Footer("big.log", now=datetime.now(UTC))
    with console.capture() as captured:
        console.print(
            view(snapshots, total, info, Thresholds(), terminal=terminal, per_worker=per_worker)
        )
    return captured.get()


def figures(snapshots: list[Snapshot], per_worker: bool) -> set[str]:
    """Every count the table shows for the host (and each worker with ``per_worker``)."""
    total = merge(snapshots)
    shown: set[str] = set()
    for s in [*snapshots, total] if per_worker else [total]:
        shown |= {str(s.active), str(s.total)} | ({str(s.pid)} if per_worker else set())
        for e in s.endpoints.values():
            shown |= {str(e.active), str(e.total)}
    return shown - {"0"}


@pytest.mark.parametrize("width", [60, 80, 100, 160])
@pytest.mark.parametrize("per_worker", [False, True])
@pytest.mark.parametrize("terminal", [False, True])
def test_no_figure_is_cut_at_any_width(width: int, per_worker: bool, terminal: bool) -> None:
    """6-7 digit figures and 7-digit pids at 60-160 columns: whole, and no line overflows."""
    workers = [big_worker(PIDS[0], 0), big_worker(PIDS[1], 7)]
    out = render(width, workers, per_worker=per_worker, terminal=terminal)
    for line in out.splitlines():
        assert len(line) <= width, line
        if "…" in line:  # only a name is ever shortened, and the figures after it stay whole
            assert line.lstrip().startswith("/v1/organisations"), line
    numbers = set(re.findall(r"\d+", out))
    for figure in figures(workers, per_worker):
        assert figure in numbers, f"{figure} not shown whole"
    assert "…" not in out.replace(LONG[:8], "")[: out.find("\n")]  # the header is whole


@pytest.mark.parametrize("width", [60, 80, 100, 160])
def test_short_names_leave_no_ellipsis_anywhere(width: int) -> None:
    """With names that fit, nothing at all is shortened, at any width."""
    workers = [big_worker(PIDS[0], 0, ("/a", "/b")), big_worker(PIDS[1], 7, ("/a", "/b"))]
    out = render(width, workers, per_worker=True, terminal=True)
    assert "…" not in out
    assert str(PIDS[0]) in re.findall(r"\d+", out)


def test_wider_terminals_show_more_columns() -> None:
    """The most important columns stay at 60; 160 shows every column."""
    workers = [big_worker(PIDS[0], 0)]
    narrow = render(60, workers, per_worker=False, terminal=True)
    wide = render(160, workers, per_worker=False, terminal=True)
    for column in ("endpoint", "active", "peak ivl"):
        assert column in narrow
    for column in ("peak ever", "total", "failed", "cancelled", "avg ms", "max ms"):
        assert column in wide
    assert "max ms" not in narrow


def test_show_per_worker_through_click_keeps_pids_whole(tmp_path: object) -> None:
    """``show --per-worker`` with COLUMNS=80 (a pipe, so 200 wide): every pid and figure whole."""
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    workers = [big_worker(PIDS[0], 0), big_worker(PIDS[1], 7)]
    path = write(tmp_path / "big.log", workers)
    result = CliRunner().invoke(
        cli, ["show", str(path), "--per-worker"], catch_exceptions=False, env={"COLUMNS": "80"}
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    numbers = set(re.findall(r"\d+", out))
    for pid in PIDS:
        assert str(pid) in numbers
    assert str(merge(workers).total) in numbers
    assert "…" not in out


def test_peaks_name_their_span_and_sums_are_marked_as_bounds() -> None:
    """One worker: exact peaks named by span; two: the summed peaks read ≤N with a note."""
    one = render(160, [big_worker(PIDS[0], 0)], per_worker=False, terminal=False)
    first = one.splitlines()[0]
    assert first.startswith("Active 2468  Peak this interval 4567890  Peak ever 8765432")
    assert "≤" not in one and "upper bound" not in one
    header = one.splitlines()[3]
    assert header.split()[:5] == ["endpoint", "active", "peak", "ivl", "peak"]
    assert "Queue 333333 (peak 444444 this interval)" in one
    two = render(
        160, [big_worker(PIDS[0], 0), big_worker(PIDS[1], 7)], per_worker=True, terminal=False
    )
    assert f"Peak this interval ≤{4567890 * 2 + 7}  Peak ever ≤{8765432 * 2 + 7}" in two
    assert f"≤{7654321 * 2 + 7}" in two  # an endpoint's summed lifetime peak
    assert "upper bound" in two


NASTY = ("/a\nActive 999  Total 999", "/b\x1b[31mred", "/c[red]x[/red]", "/d\u202eevil")


@pytest.mark.parametrize("terminal", [False, True])
def test_names_are_escaped_and_never_read_as_markup(terminal: bool) -> None:
    """A newline, an ESC byte, markup and a bidi override in names come out as inert text."""
    monitor = ConcurrencyMonitor()
    for name in NASTY:
        monitor.http.begin(name)
    with monitor.queued("q\nforged"):
        snap = monitor.report_snapshot()
    out = render(160, [snap], per_worker=True, terminal=terminal)
    assert "\x1b" not in out and "\u202e" not in out
    assert not any(line.startswith("Active 999") for line in out.splitlines())
    assert "/a\\nActive 999  Total 999" in out
    assert "/b\\x1b[31mred" in out
    assert "/c[red]x[/red]" in out
    assert "/d\\u202eevil" in out
    assert "q\\nforged" in out


def test_show_escapes_names_read_from_a_log(tmp_path: object) -> None:
    """Names written by the log's own writer and read back by ``show`` stay on their row."""
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    monitor = ConcurrencyMonitor()
    for name in NASTY:
        monitor.http.begin(name)
    path = write(
        tmp_path / "n.log", [dataclasses.replace(monitor.report_snapshot(), timestamp=at(0))]
    )
    out = CliRunner().invoke(cli, ["show", str(path)], catch_exceptions=False).stdout
    assert "\x1b" not in out
    rows = [line for line in out.splitlines() if line.startswith("/")]
    assert len(rows) == len(NASTY)
    assert any(row.startswith("/a\\nActive 999  Total 999") for row in rows)
    assert any(row.startswith("/c[red]x[/red]") for row in rows)


def streaming_worker(pid: int = PIDS[0]) -> Snapshot:
    """A real monitor after a busy 10 s interval of streamed answers overlapping in time:
    seconds-long durations, sub-second first bytes, tens of requests per second, on the
    endpoint names an LLM proxy has."""
    clock = FakeClock()
    monitor = ConcurrencyMonitor(clock=clock)
    events: list[tuple[float, int, str]] = []
    tickets = {}
    for i in range(400):
        start = i * 0.02
        name = ("/v1/chat/completions", "/v1/completions", "/health")[i % 3]
        events += [
            (start, i, name),
            (start + 0.004, i, "respond"),
            (start + 0.05 + (i % 40) * 0.02, i, "first_byte"),
            (start + 0.5 + (i % 50) * 0.03, i, "finish"),
        ]
    for when, i, what in sorted(events):
        clock.advance(max(when - (clock() - 1000.0), 0.0))
        if what == "respond":
            tickets[i].respond(200 if i % 17 else 503)
        elif what == "first_byte":
            tickets[i].first_byte()
        elif what == "finish":
            tickets[i].finish(Outcome.OK if i % 17 else Outcome.FAILED)
        else:
            tickets[i] = monitor.http.begin(what, "POST")
    monitor.http.begin("/v1/chat/completions")
    monitor.websocket.begin("/ws/feed").finish()
    clock.advance(1.0)
    return dataclasses.replace(
        monitor.report_snapshot(), pid=pid, timestamp=at(0), uptime_s=UPTIME_AT_NOW
    )


WIDTHS = (60, 70, 80, 90, 100, 120, 160)


def shown_columns(snapshot: Snapshot, width: int, terminal: bool) -> list[str]:
    table = endpoint_table(snapshot, Thresholds(), terminal)
    return [table.columns[i].name for i in table.layout(width)[0]]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("terminal", [False, True])
def test_latency_columns_are_whole_or_absent_at_every_width(width: int, terminal: bool) -> None:
    """Rate and interval percentiles at 60-160 columns: each header shown is whole, each row
    carries every shown column's value whole (as the snapshot's buckets give it), and no
    line is wider than the terminal."""
    snap = streaming_worker()
    out = render(width, [snap], per_worker=False, terminal=terminal)
    shown = shown_columns(snap, width, terminal)
    lines = out.splitlines()
    assert all(len(line) <= width for line in lines), width
    assert "…" not in out
    head = next(line for line in lines if line.startswith("endpoint"))
    assert head.split() == " ".join(shown).split()  # every header whole, in order
    for name, stats in snap.endpoints.items():
        row = next(line for line in lines if line.startswith(name + " "))
        duration, ttfb = stats.duration, stats.ttfb
        assert duration is not None and ttfb is not None
        cells = {
            "active": str(stats.active),
            "total": str(stats.total),
            "req/s": f"{stats.rate:.1f}",
            "p50 ms": f"{duration.p50_ms:.1f}",
            "p99 ms": f"{duration.p99_ms:.1f}",
            "ttfb p99 ms": f"{ttfb.p99_ms:.1f}",
        }
        values = dict(zip(shown[1:], row.split()[1:], strict=True))
        for column, value in values.items():
            if column in cells:
                assert value == cells[column], (column, row)


def test_at_80_columns_rate_and_tail_latency_show_and_wider_shows_more() -> None:
    """At 80 columns, with a 20-cell endpoint name, the rate, p99 and TTFB p99 are shown
    beside active, the interval peak and the total; p50 and the rest come back as the
    terminal widens, and a column once shown stays at every greater width."""
    snap = streaming_worker()
    at_80 = shown_columns(snap, 80, terminal=True)
    for column in ("endpoint", "active", "peak ivl", "total", "req/s", "p99 ms", "ttfb p99 ms"):
        assert column in at_80
    assert "p50 ms" in shown_columns(snap, 100, terminal=True)
    assert len(shown_columns(snap, 160, terminal=True)) == len(ENDPOINT_COLUMNS)
    for terminal in (False, True):
        for narrow, wide in itertools.pairwise(WIDTHS):
            assert set(shown_columns(snap, narrow, terminal)) <= set(
                shown_columns(snap, wide, terminal)
            )


def test_websockets_have_no_time_to_first_byte_and_the_header_shows_the_rate() -> None:
    """A WebSocket row reads ``-`` for the time to first byte; the header gives the host's
    requests per second over the interval."""
    snap = streaming_worker()
    out = render(200, [snap], per_worker=False, terminal=False)
    row = next(line for line in out.splitlines() if line.startswith("ws /ws/feed"))
    assert row.split()[-1] == "-"
    assert f"Rate {snap.rate:.1f}/s" in out.splitlines()[0]
