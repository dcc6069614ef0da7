"""The bytecode count: real requests traced in a child, the table built from them."""

from __future__ import annotations

import json
import os
import re

import pytest

from concmon.monitor import KERNEL
from tests.bench import run_bench


def _bytecodes(framework: str, variant: str, kernel: str) -> float:
    env = dict(os.environ, CONCMON_PURE_PYTHON="1" if kernel == "python" else "0")
    done = run_bench("bytecodes.py", "--child", framework, variant, "5", timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    figure: float = json.loads(done.stdout.splitlines()[-1])["bytecodes_per_request"]
    return figure


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
def test_concmon_adds_a_few_hundred_bytecodes(framework: str) -> None:
    """Each child traces its own requests; concmon's variant dispatches more than the bare
    app, and not by thousands (the per-request path is a few hundred bytecodes)."""
    counts = {variant: _bytecodes(framework, variant, KERNEL) for variant in ("bare", "concmon")}
    assert counts["bare"] > 1000, "a traced request runs the framework's Python"
    assert 100 < counts["concmon"] - counts["bare"] < 1000


def test_table_without_peers() -> None:
    done = run_bench("bytecodes.py", "--peers", "none", "--requests", "5", timeout=240)
    assert done.returncode == 0, done.stderr
    rows = re.findall(r"^\| concmon \| ([\d,]+) \| ([\d,]+) \|", done.stdout, re.MULTILINE)
    assert len(rows) == 2, done.stdout  # one per framework


@pytest.mark.parametrize("kernel", ["python", "c"])
@pytest.mark.parametrize("framework", ["fastapi", "flask"])
def test_experiment_variants_sit_between_bare_and_concmon(framework: str, kernel: str) -> None:
    """The variants that take concmon apart serve the same app (the driver checks every answer
    is 200), and their costs order as their construction says: one more layer costs a few
    bytecodes; the adapter with free counting costs less than concmon by the Python kernel's
    share, and as much as concmon with the C kernel, whose two calls dispatch no bytecode."""
    if kernel == "c" and KERNEL != "c":
        pytest.skip("the C kernel was not built here (no compiler at install time)")
    counts = {
        variant: _bytecodes(framework, variant, kernel)
        for variant in ("bare", "passthrough", "uncounted", "concmon")
    }
    assert counts["bare"] < counts["passthrough"] < counts["bare"] + 40
    assert counts["passthrough"] + 100 < counts["uncounted"]
    if kernel == "python":
        assert counts["concmon"] - counts["uncounted"] > 100, "admit and finish are not free"
    else:
        assert abs(counts["concmon"] - counts["uncounted"]) < 20
