"""The benchmarks are held to the packages' standard: mypy --strict passes on bench/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.bench import ROOT


def test_mypy_strict_on_bench() -> None:
    """mypy --strict finds nothing in the benchmark scripts and their shared module."""
    mypy = Path(sys.executable).with_name("mypy")
    scripts = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "bench").glob("*.py"))
    done = subprocess.run(
        [str(mypy), "--strict", "--explicit-package-bases", *scripts],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
