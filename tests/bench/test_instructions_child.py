"""The instruction-count benchmark's own parts: the in-process child, the HTTP driver, the
reading of valgrind's totals.

cachegrind itself is not needed here (the parent's part is arithmetic on its counts); the
child builds an app, warms it over every id and drives more requests, and fails if concmon
did not record exactly those: the count a table is built from must be of real requests.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from bench import instructions
from bench.common import free_port, wait_for_port
from bench.peers import FRAMEWORKS
from tests.bench import ROOT, run_bench


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
@pytest.mark.parametrize("variant", ["bare", "concmon"])
def test_child_drives_and_checks_its_requests(framework: str, variant: str, tmp_path: Path) -> None:
    done = run_bench(
        "instructions.py",
        *("--child", framework, variant, "50"),
        timeout=120,
        env={**os.environ, "CONCMON_LOG_FILE": str(tmp_path / "concmon.log")},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "recorded" not in done.stderr


def test_parent_says_how_to_get_valgrind_when_missing(tmp_path: Path) -> None:
    """Without valgrind on PATH the bench names the package to install and exits 2."""
    done = run_bench("instructions.py", "--peers", "none", env={"PATH": str(tmp_path)})
    assert done.returncode == 2
    assert "apt-get install valgrind" in done.stdout


def test_http_driver_talks_to_a_real_server() -> None:
    """``--http`` drives the bench's real uvicorn server over one keep-alive connection, and
    an answer other than 200 stops the count with the path and status instead of counting it."""
    port = free_port()
    proc = subprocess.Popen(
        FRAMEWORKS["fastapi"].argv(port),
        cwd=ROOT,
        env={**os.environ, "BENCH_VARIANT": "concmon", "PYTHONPATH": str(ROOT)},
    )
    try:
        wait_for_port(port, proc)
        instructions.drive_http(port, [f"/items/{i}" for i in range(1, 51)])
        with pytest.raises(RuntimeError, match=r"GET /nowhere answered 404"):
            instructions.drive_http(port, ["/items/1", "/nowhere"])
    finally:
        proc.terminate()
        proc.wait(20)


def test_valgrind_totals_are_read_per_process() -> None:
    """A gunicorn master and its forked worker each get their own total (valgrind's format)."""
    output = "\n".join(
        [
            "==4101== Cachegrind, a high-precision tracing profiler",
            "==4102== I   refs:      4,177,256,885",
            "==4101== ",
            "==4101== I   refs:      467,810,775",
        ]
    )
    assert instructions.instructions_by_pid(output) == {4101: 467_810_775, 4102: 4_177_256_885}
