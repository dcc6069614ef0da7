"""The live table at real terminal widths: figures are never cut, names are never obeyed."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from rich.console import Console

from concmon import ConcurrencyMonitor, Outcome, Snapshot
from concmon.host import merge
from concmon_cli.main import cli
from concmon_cli.render import Footer, Thresholds, view
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
