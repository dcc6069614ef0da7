"""Every benchmark refuses a count or a name that cannot work with one line naming the option.

A zero number of rounds would run to the end and die in ``statistics.median`` with a traceback;
argparse refuses it before anything starts.
"""

from __future__ import annotations

import pytest

from tests.bench import run_bench

COUNTS = [
    ("core.py", "--pairs", "0"),
    ("core.py", "--endpoints", "-3"),
    ("inprocess.py", "--rounds", "0"),
    ("inprocess.py", "--batch", "many"),
    ("peers.py", "--seconds", "0"),
    ("peers.py", "--connections", "1.5"),
    ("scrape.py", "--scrapes", "0"),
]
NAMES = [
    ("inprocess.py", "--frameworks", "fastapi,falsk", "falsk"),
    ("inprocess.py", "--workloads", "streaming", "streaming"),
    ("peers.py", "--endpoints", "items,sleep", "sleep"),
]


@pytest.mark.parametrize(("script", "option", "value"), COUNTS)
def test_bad_count_is_one_line(script: str, option: str, value: str) -> None:
    """A zero, negative or non-whole count exits 2 with argparse's line naming the option."""
    done = run_bench(script, option, value)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert f"argument {option}: must be" in last, last


@pytest.mark.parametrize(("script", "option", "value", "unknown"), NAMES)
def test_unknown_name_is_one_line(script: str, option: str, value: str, unknown: str) -> None:
    """A misspelt framework, workload or endpoint is named, with the choices, before any run."""
    done = run_bench(script, option, value)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert f"argument {option}: unknown name {unknown}; choose from" in last, last
