"""The bytecode count: real requests traced in a child, the table built from them."""

from __future__ import annotations

import json
import re

import pytest

from tests.bench import run_bench


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
def test_concmon_adds_a_few_hundred_bytecodes(framework: str) -> None:
    """Each child traces its own requests; concmon's variant dispatches more than the bare
    app, and not by thousands (the per-request path is a few hundred bytecodes)."""
    counts = {}
    for variant in ("bare", "concmon"):
        done = run_bench("bytecodes.py", "--child", framework, variant, "5", timeout=120)
        assert done.returncode == 0, done.stderr
        counts[variant] = json.loads(done.stdout.splitlines()[-1])["bytecodes_per_request"]
    assert counts["bare"] > 1000, "a traced request runs the framework's Python"
    assert 100 < counts["concmon"] - counts["bare"] < 1000


def test_table_without_peers() -> None:
    done = run_bench("bytecodes.py", "--peers", "none", "--requests", "5", timeout=240)
    assert done.returncode == 0, done.stderr
    rows = re.findall(r"^\| concmon \| ([\d,]+) \| ([\d,]+) \|", done.stdout, re.MULTILINE)
    assert len(rows) == 2, done.stdout  # one per framework


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
def test_experiment_variants_sit_between_bare_and_concmon(framework: str) -> None:
    """The variants that take concmon apart serve the same app (the driver checks every answer
    is 200), and their costs order as their construction says: one more layer costs a few
    bytecodes, the adapter with free counting costs less than concmon by about the core's share."""
    counts = {}
    for variant in ("bare", "passthrough", "uncounted", "concmon"):
        done = run_bench("bytecodes.py", "--child", framework, variant, "5", timeout=120)
        assert done.returncode == 0, done.stderr
        counts[variant] = json.loads(done.stdout.splitlines()[-1])["bytecodes_per_request"]
    assert counts["bare"] < counts["passthrough"] < counts["bare"] + 40
    assert counts["passthrough"] < counts["uncounted"] < counts["concmon"]
    assert counts["concmon"] - counts["uncounted"] > 100, "admit and finish are not free"
