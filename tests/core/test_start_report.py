"""The report a worker makes as it starts: readers see the app at once, not one interval later."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from concmon import ConcurrencyMonitor, init_monitor, shutdown_monitor
from concmon.host import HostView
from concmon.logformat import parse_reports


def _reports(log: Path, wanted: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    found = 0
    while time.monotonic() < deadline:
        if log.exists():
            found = len(parse_reports(log.read_text().splitlines())[0])
            if found >= wanted:
                break
        time.sleep(0.02)
    return found


def test_the_first_report_is_written_as_the_reporter_starts(tmp_path: Path) -> None:
    """With an hour between reports, the log still holds one as soon as the monitor starts."""
    init_monitor(sinks=("logfile",), update_interval=3600.0, system_metrics=False)
    log = tmp_path / "logs" / "concmon.log"
    assert _reports(log, 1) == 1
    final = shutdown_monitor()
    assert final is not None
    reports, skipped = parse_reports(log.read_text().splitlines())
    assert (skipped, len(reports), reports[0].total) == (0, 2, 0)


def test_workers_starting_a_moment_apart_are_all_live() -> None:
    """Start reports cover only a moment: a worker whose start report came 0.5 s before
    another's is not taken for gone."""
    now = datetime.now(UTC)
    starts = [
        dataclasses.replace(
            ConcurrencyMonitor().report_snapshot(),
            pid=pid,
            interval_s=0.002,
            timestamp=(now + timedelta(seconds=0.5 * n)).isoformat(),
        )
        for n, pid in enumerate((101, 102, 103))
    ]
    view = HostView()
    view.extend(starts)
    assert [s.pid for s in view.live()] == [101, 102, 103]
    assert view.retired == 0
