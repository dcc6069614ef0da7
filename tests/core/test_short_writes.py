"""A report cut short by a full disk never glues the next report onto its partial line.

The short write is real: a child process lowers its file size limit (RLIMIT_FSIZE, SIGXFSZ
ignored), so the kernel writes part of a report and refuses the rest, as on a full disk; the
limit is then raised again, as when space comes back.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from concmon.logformat import parse_reports
from concmon_cli.sources import FileSource

resource = pytest.importorskip("resource")

_WRITER = textwrap.dedent(
    """
    import resource, signal, sys
    from pathlib import Path

    from concmon.logformat import format_report
    from concmon.monitor import ConcurrencyMonitor
    from concmon.sinks.appendfile import AppendFile, SinkWriteError
    from concmon.sinks.jsonl import snapshot_line

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    path, kind = Path(sys.argv[1]), sys.argv[2]
    line = format_report if kind == "log" else snapshot_line
    monitor = ConcurrencyMonitor()
    file = AppendFile(path)

    def report(name):
        monitor.http.begin(name).finish()
        file.write(line(monitor.report_snapshot()))

    report("/first")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 40, hard))
    try:
        report("/cut-short")
    except SinkWriteError as exc:
        print(exc)
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    report("/after")
    """
)


def _write(path: Path, kind: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _WRITER, str(path), kind],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


@pytest.mark.parametrize("kind", ["log", "jsonl"])
def test_the_report_after_a_short_write_parses(tmp_path: Path, kind: str) -> None:
    """RELIABILITY 42: after a write cut short, the next report starts on a line of its own and
    parses; only the partial line is unreadable, and the file reader skips it."""
    path = tmp_path / f"concmon.{kind}"
    message = _write(path, kind)
    assert f"cannot write reports to {path}" in message
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"", "the file ends with a whole line"
    if kind == "log":
        reports, bad = parse_reports(lines[:-1])
        assert [r.total for r in reports] == [1, 3]
        assert bad >= 1
    else:
        parsed = []
        for line in lines[:-1]:
            try:
                parsed.append(json.loads(line)["total"])
            except ValueError:
                parsed.append(None)
        assert parsed == [1, None, 3]
    reading = FileSource(path).latest()
    total = reading.workers.total()
    assert total is not None and total.total == 3
    assert reading.skipped >= 1
