"""The instruction-count benchmark's child side runs and checks what it drove.

cachegrind itself is not needed here (the parent's part is arithmetic on its counts); the
child builds an app, warms it over every id and drives more requests, and fails if concmon
did not record exactly those: the count a table is built from must be of real requests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
@pytest.mark.parametrize("variant", ["bare", "concmon"])
def test_child_drives_and_checks_its_requests(framework: str, variant: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "bench/instructions.py", "--child", framework, variant, "50"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "CONCMON_LOG_FILE": str(tmp_path / "concmon.log")},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "recorded" not in done.stderr


def test_parent_says_how_to_get_valgrind_when_missing(tmp_path: Path) -> None:
    """Without valgrind on PATH the bench names the package to install and exits 2."""
    done = subprocess.run(
        [sys.executable, "bench/instructions.py", "--peers", "none"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": str(tmp_path)},
    )
    assert done.returncode == 2
    assert "apt-get install valgrind" in done.stdout
