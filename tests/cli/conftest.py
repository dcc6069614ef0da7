"""Report files for the CLI tests, written by the core's own writers from real monitors."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from concmon import ConcurrencyMonitor, Outcome, Snapshot
from concmon.logformat import format_report
from concmon.sinks.jsonl import snapshot_line
from concmon.testing import FakeClock

Writer = Callable[..., Path]
UPTIME_AT_NOW = 86400.0
"""The uptime of every fixture worker at this moment: a day."""


def at(seconds_ago: float) -> str:
    """An ISO timestamp ``seconds_ago`` seconds before now, as the monitor writes them."""
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat()


def busy_snapshot(
    *,
    pid: int = 4242,
    active: int = 3,
    done: int = 5,
    failed: int = 1,
    interval: float = 5.0,
    seconds_ago: float = 0.0,
    endpoint: str = "/chat/completions",
) -> Snapshot:
    """A real monitor's snapshot: ``active`` open, ``done`` finished (``failed`` of them).

    Its uptime grows with its timestamp, as a real worker's does (a pid whose uptime goes
    backwards is a new process to the host view).
    """
    monitor = ConcurrencyMonitor(clock=FakeClock())  # durations exact, whatever the load
    for i in range(done):
        monitor.http.begin(endpoint).finish(Outcome.FAILED if i < failed else Outcome.OK)
    for _ in range(active):
        monitor.http.begin(endpoint)
    monitor.http.begin("/health").finish()
    snap = monitor.report_snapshot()
    return dataclasses.replace(
        snap,
        pid=pid,
        interval_s=interval,
        timestamp=at(seconds_ago),
        uptime_s=UPTIME_AT_NOW - seconds_ago,
    )


def write(path: Path, snapshots: Sequence[Snapshot], *, jsonl: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    render = snapshot_line if jsonl else format_report
    with path.open("a", encoding="utf-8") as handle:
        for snap in snapshots:
            handle.write(render(snap))
    return path


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    """Two reports of one worker, the latest with 3 active of which none finished."""
    return write(
        tmp_path / "concmon.log",
        [busy_snapshot(active=1, done=2, failed=0, seconds_ago=5), busy_snapshot()],
    )
