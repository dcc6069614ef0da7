"""``concmon-cli show`` on a 200 MB log answers as fast as on a small one.

Generates a log of two workers reporting every second (written with the core's own
formatter), then times ``show``'s read-and-render path on it and on a 20 KB log, in process and
as a real command. Prints the times and the ratio big/small; a ratio near 1 means the size of
the file does not matter. Run: .venv/bin/python bench/cli_show.py [--mb 200]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from concmon import ConcurrencyMonitor, Outcome
from concmon.logformat import format_report
from concmon_cli.render import Footer, Thresholds, make_console, view
from concmon_cli.sources import FileSource
from concmon_cli.workers import merge

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import positive_int  # noqa: E402


def sample_reports() -> list[str]:
    monitor = ConcurrencyMonitor()
    for i in range(12):
        name = f"/v1/endpoint/{i}"
        for j in range(5):
            monitor.http.begin(name).finish(Outcome.FAILED if j == 0 else Outcome.OK)
        monitor.http.begin(name)
    snap = monitor.report_snapshot()
    return [format_report(dataclasses.replace(snap, pid=pid, interval_s=1.0)) for pid in (101, 102)]


def generate(path: Path, megabytes: int) -> int:
    reports = sample_reports()
    start = datetime.now(UTC) - timedelta(days=30)
    size, n = 0, 0
    target = megabytes * 1024 * 1024
    with path.open("w", encoding="utf-8") as out:
        while size < target:
            stamp = (start + timedelta(seconds=n)).isoformat()
            chunk = "".join(r.replace(r.split(" ", 1)[0], stamp) for r in reports)
            out.write(chunk)
            size += len(chunk)
            n += 1
        # the last reports are recent, as in a running server
        now = datetime.now(UTC).isoformat()
        out.write("".join(r.replace(r.split(" ", 1)[0], now) for r in reports))
    return n


def time_show(path: Path, repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        reading = FileSource(path).latest()
        console = make_console(io.StringIO())
        console.print(
            view(reading.live, merge(reading.live), Footer(str(path)), Thresholds(), terminal=False)
        )
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def time_command(path: Path, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "concmon_cli.main", "show", str(path)],
            check=True,
            capture_output=True,
        )
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=positive_int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        big, small = Path(tmp, "big.log"), Path(tmp, "small.log")
        started = time.perf_counter()
        generate(big, args.mb)
        generate(small, 0)
        size = big.stat().st_size / 1024 / 1024
        print(f"generated {size:.0f} MB in {time.perf_counter() - started:.1f}s")
        small_t, big_t = time_show(small), time_show(big)
        print(
            f"show, in process: small {small_t * 1000:.2f} ms, {size:.0f} MB {big_t * 1000:.2f} ms,"
            f" ratio {big_t / small_t:.2f}"
        )
        small_c, big_c = time_command(small), time_command(big)
        print(
            f"show, as a command: small {small_c * 1000:.0f} ms, {size:.0f} MB "
            f"{big_c * 1000:.0f} ms, ratio {big_c / small_c:.2f}"
        )


if __name__ == "__main__":
    main()
