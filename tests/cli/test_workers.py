"""Several workers in the CLI: gone workers keep their totals, only live ones count as active."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from concmon.host import HostView
from concmon.testing import check_invariants
from concmon_cli.main import cli
from concmon_cli.sources import FileSource
from tests.cli.conftest import busy_snapshot, write
from tests.exporters.helpers import parse, total, value


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _recycled(tmp_path: Path) -> Path:
    """Worker 9 stopped reporting 3.5 s ago (1 s interval) with 7 in flight; worker 1 is live.

    3.5 intervals: past the stale window of 3, within what a read from the end covers (4).
    """
    return write(
        tmp_path / "c.log",
        [busy_snapshot(pid=9, active=7, done=5, failed=2, interval=1.0, seconds_ago=3.5)]
        + [
            busy_snapshot(pid=1, active=1, done=3, failed=0, interval=1.0, seconds_ago=s)
            for s in (3, 2, 1, 0)
        ],
    )


def test_a_gone_workers_totals_stay_in_the_sum_and_its_actives_leave(tmp_path: Path) -> None:
    """The file view: worker 9 is gone, its 5 finished (+1 health) stay, its 7 active finish
    as lost."""
    reading = FileSource(_recycled(tmp_path)).latest()
    assert [s.pid for s in reading.live] == [1]
    host = check_invariants(reading.total)
    assert (host.active, host.completed, host.failed, host.lost) == (1, 6 + 4 + 7, 2, 7)
    assert host.total == 6 + 7 + 4 + 1  # every request started by either worker
    assert host.endpoints["/chat/completions"].lost == 7
    assert reading.workers.retired == 1


def test_show_and_export_json_report_the_host_with_the_gone_workers_totals(tmp_path: Path) -> None:
    """``show`` and ``export json`` agree: live actives, every worker's totals, one gone noted."""
    path = _recycled(tmp_path)
    shown = run("show", str(path)).stdout
    assert shown.splitlines()[0].startswith("Active 1  Peak this interval ")
    assert "Total 18  Completed 17  Failed 2" in shown.splitlines()[0]
    assert "1 worker gone (their totals kept)" in shown
    exported = json.loads(run("export", "json", str(path)).stdout)
    assert (exported["pid"], exported["active"], exported["completed"]) == (0, 1, 17)
    assert exported["lost"] == 7
    per_worker = run("export", "json", str(path), "--per-worker").stdout.splitlines()
    assert [json.loads(line)["pid"] for line in per_worker] == [1]


def test_export_prometheus_keeps_a_gone_workers_totals(tmp_path: Path) -> None:
    """The textfile export adds the workers up by the same rule as the table."""
    samples = parse(run("export", "prometheus", str(_recycled(tmp_path))).stdout)
    assert total(samples, "concmon_requests_active") == 1
    assert total(samples, "concmon_requests_total", endpoint="/chat/completions", outcome="ok") == 6
    assert (
        total(samples, "concmon_requests_total", endpoint="/chat/completions", outcome="failed")
        == 2
    )
    assert value(samples, "concmon_processes") == 1


def test_check_counts_the_gone_workers_in_the_lifetime_failure_rate(tmp_path: Path) -> None:
    """With one report per worker the rate is the host's lifetime one, gone workers included."""
    path = write(
        tmp_path / "c.log",
        [
            busy_snapshot(pid=9, active=0, done=4, failed=4, interval=1.0, seconds_ago=3.5),
            busy_snapshot(pid=1, active=0, done=4, failed=0, interval=1.0),
        ],
    )
    out = run("check", str(path), "--max-failed-rate", "0.5").stdout
    assert out.startswith("OK - active=0 queue=0 failed_rate=0.4000 (lifetime)"), out


def test_watching_keeps_a_worker_that_goes_away_meanwhile(tmp_path: Path) -> None:
    """What ``watch`` follows: a worker that stops reporting while watched keeps its totals."""
    path = write(
        tmp_path / "c.log",
        [
            busy_snapshot(pid=9, active=7, done=5, interval=1.0, seconds_ago=10),
            busy_snapshot(pid=1, active=1, done=3, interval=1.0, seconds_ago=10),
        ],
    )
    stream = FileSource(path).stream(initial=True)
    view = HostView()
    view.extend(stream.poll())
    host = view.total()
    assert host is not None and (host.active, host.completed) == (8, 10)
    before = host.total
    later = [busy_snapshot(pid=1, active=1, done=3, interval=1.0, seconds_ago=s) for s in (5, 0)]
    write(path, later)
    view.extend(stream.poll())
    stream.close()
    host = check_invariants(view.total())  # type: ignore[arg-type]
    assert [s.pid for s in view.live()] == [1]
    # The host's counters never go down: the gone worker's 7 in flight finished as lost.
    assert (host.active, host.completed, host.lost) == (1, 17, 7)
    assert host.total == before
