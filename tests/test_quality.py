"""The code stays ruff-clean and mypy --strict clean: checked as part of the test suite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["concmon", "concmon_fastapi", "concmon_flask", "concmon_cli"]
LINTED = [*PACKAGES, "tests", "bench", "examples"]


def _tool(name: str) -> str:
    found = Path(sys.executable).with_name(name)
    if found.exists():
        return str(found)
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; install the `test` extra")
    return path


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_lint() -> None:
    """ruff finds nothing in the packages, tests, benchmarks and examples."""
    result = _run(_tool("ruff"), "check", *[p for p in LINTED if (ROOT / p).exists()])
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    """Every file is formatted as ruff formats it."""
    result = _run(_tool("ruff"), "format", "--check", *[p for p in LINTED if (ROOT / p).exists()])
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict() -> None:
    """mypy --strict passes on every package and on the typed usage examples."""
    targets = [p for p in PACKAGES if (ROOT / p).exists()]
    result = _run(_tool("mypy"), *targets, "tests/typing_usage.py")
    assert result.returncode == 0, result.stdout + result.stderr
