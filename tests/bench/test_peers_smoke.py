"""The peer benchmark still runs end to end (tiny mode): its harness cannot rot unnoticed.

No timing is asserted; the tables' shape and the bench's own checks are (every server answers
both endpoints, every instrumentation records exactly the requests it is sent).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.peers import missing_peers
from tests.bench import run_bench

_missing = missing_peers()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(_missing),
        reason=f"the `bench` extra is not installed (no {', '.join(_missing)}); "
        "pip install -e '.[bench]' to run the peer benchmark",
    ),
]


def _run(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = tmp_path / "peers.json"
    done = run_bench("peers.py", "--quick", "--json", str(out), *extra, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    return done, json.loads(out.read_text())


@pytest.mark.timeout(300)
def test_tiny_run_covers_every_variant(tmp_path: Path) -> None:
    """A tiny run measures concmon and every peer on both frameworks and prints both tables."""
    extra = () if shutil.which("wrk") else ("--inprocess-only",)
    done, record = _run(tmp_path, *extra)
    expected = {
        "fastapi": ["bare", "concmon", "starlette-exporter", "instrumentator", "opentelemetry"],
        "flask": ["bare", "concmon", "prometheus-flask-exporter", "opentelemetry"],
    }
    for framework, variants in expected.items():
        rows = record["in_process"][framework]
        assert [r["variant"] for r in rows] == variants
        assert all(r["ns_per_request"] > 0 for r in rows)
        assert f"### In-process, {framework}" in done.stdout
    if extra:
        pytest.skip("wrk is not installed: only the in-process half ran")
    for framework, variants in expected.items():
        rows = record["http"][framework]
        assert [r["variant"] for r in rows] == variants
        for row in rows:
            assert row["errors"] == 0, row
            assert row["median_rps"] > 0 and row["rss_mb"] > 0 and row["p99_ms"] > 0
            # wrk stops at the cap, finishing the responses already read in the same poll.
            assert all(run["requests"] <= 300 + 4 for run in row["runs"]), "the cap held"
        assert f"### Over HTTP, {framework}" in done.stdout
    assert "## Targets" in done.stdout


def test_bad_arguments_get_one_line(tmp_path: Path) -> None:
    """A typo in a framework name is refused with one line naming the choices, no traceback."""
    done = run_bench("peers.py", "--frameworks", "fastapi,falsk")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0 and "falsk" in done.stderr
