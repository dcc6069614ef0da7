"""Starlette's, FastAPI's and Flask's own test suites pass as well with concmon in every app.

Each framework's sdist, at the version installed here, is downloaded and gets a venv of its own
with the test requirements its maintainers use (their dependency group, pinned by their uv.lock
where the sdist has one: Flask 3.1.3's tests need the pytest 9.0.x it locks). The suite then
runs twice under tests/frameworks/everywhere.py: without concmon, then with it installed into
every app. A few tests fail on some machines either way (file permissions when run as root), so
the two runs are compared instead of requiring a clean run: whatever passes without concmon must
pass with it, and the monitor must balance at the end.

The download and the venv are cached under ``CONCMON_FRAMEWORK_CACHE`` (default
``.cache/frameworks`` in the repository), per framework, version and Python; concmon itself is
installed editable, so a cached venv always runs the code of the working tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from concmon import Snapshot
from concmon.testing import check_balanced

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIR = Path(__file__).resolve().parent
# Read on import: tests/conftest.py clears every CONCMON_ variable before each test runs.
CACHE = Path(os.environ.get("CONCMON_FRAMEWORK_CACHE") or ROOT / ".cache" / "frameworks")
PIP_TIMEOUT = 600
SUITE_TIMEOUT = 900
# Linters, type checkers, coverage and benchmarks are in the dev groups but run no tests.
TOOLING = {"coverage", "mypy", "pytest-codspeed", "ruff", "twine", "ty"}


@dataclass(frozen=True)
class Framework:
    name: str  # the distribution, and the value of CONCMON_EVERYWHERE
    install: str  # the framework as its test requirements want it, without the version
    group: str  # the dependency group in the sdist's pyproject.toml that runs the tests
    extra: str  # concmon's extra for this framework

    @property
    def version(self) -> str:
        return version(self.name)


FRAMEWORKS = [
    Framework("starlette", "starlette[full]", group="dev", extra="fastapi"),
    Framework("fastapi", "fastapi[all]", group="tests", extra="fastapi"),
    Framework("flask", "flask", group="tests", extra="flask"),
]


def _tail(text: str | bytes | None, lines: int = 30) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join((text or "").splitlines()[-lines:])


def _run(
    what: str,
    argv: list[str],
    timeout: float,
    *,
    ok: tuple[int, ...] = (0,),
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> None:
    """Run a step; if it fails, so does the test, naming the step, with the end of its output."""
    started = time.monotonic()
    try:
        result = subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{what}: no result after {timeout:.0f} s\n{_tail(exc.stdout)}", pytrace=False)
    if result.returncode not in ok:
        output = result.stdout + result.stderr
        pytest.fail(f"{what} failed (exit {result.returncode})\n{_tail(output)}", pytrace=False)
    print(f"{what}: {time.monotonic() - started:.0f} s")


def _pinned(requirement: str, lock: list[dict[str, Any]]) -> str | None:
    """``requirement`` pinned to the version uv.lock resolves for this Python; None to skip it."""
    req = Requirement(requirement)
    name = canonicalize_name(req.name)
    if name in TOOLING or name.startswith("types-") or (req.marker and not req.marker.evaluate()):
        return None
    for package in lock:
        if canonicalize_name(str(package["name"])) != name or "version" not in package:
            continue
        markers = package.get("resolution-markers") or []
        if not markers or any(Marker(str(m)).evaluate() for m in markers):
            extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
            return f"{req.name}{extras}=={package['version']}"
    return requirement


def _group(groups: dict[str, list[Any]], name: str) -> list[str]:
    """The requirements of one dependency group, the groups it includes expanded."""
    found: list[str] = []
    for entry in groups[name]:
        if isinstance(entry, dict):
            found += _group(groups, entry["include-group"])
        else:
            found.append(entry)
    return found


def _install_argv(framework: Framework, source: Path) -> list[str]:
    """The framework at the installed version, its pinned test group, and concmon editable."""
    project = tomllib.loads((source / "pyproject.toml").read_text())
    locked = source / "uv.lock"  # FastAPI's sdist ships none: its group is taken as written
    lock = tomllib.loads(locked.read_text()).get("package", []) if locked.exists() else []
    own = canonicalize_name(framework.name)
    group = [
        pin
        for entry in _group(project["dependency-groups"], framework.group)
        if canonicalize_name(Requirement(entry).name) != own
        if (pin := _pinned(entry, lock)) is not None
    ]
    # One command, so concmon's extra (fastapi needs starlette) cannot move the framework's pin.
    return [
        "install",
        "-q",
        *group,
        f"{framework.install}=={framework.version}",
        "-e",
        f"{ROOT}[{framework.extra}]",
    ]


def _prepare(framework: Framework) -> tuple[Path, Path]:
    """The extracted sdist and the venv's python, built once per framework, version and Python.

    The marker file is written last, after a successful install, and records the install
    command: a half-built cache or one made for another checkout of concmon is built afresh.
    """
    python_tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    home = CACHE / f"{framework.name}-{framework.version}-{python_tag}"
    ready, python = home / "ready.json", home / "venv" / "bin" / "python"
    if ready.exists():
        built = json.loads(ready.read_text())
        source = home / "src" / built["source"]
        if python.exists() and built["install"] == _install_argv(framework, source):
            return source, python
    shutil.rmtree(home, ignore_errors=True)
    (home / "sdist").mkdir(parents=True)
    spec = f"{framework.name}=={framework.version}"
    download = ["download", "--no-binary", ":all:", "--no-deps", spec, "--dest", home / "sdist"]
    _run(
        f"downloading the {spec} sdist from the package index (is it reachable?)",
        [sys.executable, "-m", "pip", *map(str, download)],
        PIP_TIMEOUT,
    )
    (archive,) = (home / "sdist").glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(home / "src", filter="data")
    (source,) = (home / "src").iterdir()
    _run(f"creating a venv for {spec}", [sys.executable, "-m", "venv", str(home / "venv")], 120)
    install = _install_argv(framework, source)
    _run(f"pip {' '.join(install)}", [str(python), "-m", "pip", *install], PIP_TIMEOUT)
    ready.write_text(json.dumps({"source": source.name, "install": install}))
    return source, python


def _outcomes(junit: Path) -> dict[str, str]:
    """Each test's id and its outcome (passed, failed, skipped or xfailed) from JUnit XML."""
    outcomes = {}
    for case in ET.parse(junit).iter("testcase"):
        test = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag: child.get("type") for child in case}
        if kinds.keys() & {"failure", "error"}:
            outcomes[test] = "failed"
        elif "skipped" in kinds:
            outcomes[test] = "xfailed" if kinds["skipped"] == "pytest.xfail" else "skipped"
        else:
            outcomes.setdefault(test, "passed")
    return outcomes


def _run_suite(
    framework: Framework, source: Path, python: Path, out: Path, *, with_concmon: bool
) -> tuple[dict[str, str], Snapshot]:
    """One run of the framework's suite; its per-test outcomes and the monitor's last snapshot."""
    out.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CONCMON_", "PYTEST_")) and key != "PYTHONPATH"
    }
    env |= {
        "PYTHONPATH": str(PLUGIN_DIR),
        "CONCMON_LOG_FILE": str(out / "concmon.log"),
        "CONCMON_JSONL_FILE": str(out / "concmon.jsonl"),
        "CONCMON_EVERYWHERE_SNAPSHOT": str(out / "snapshot.json"),
    }
    if with_concmon:
        env["CONCMON_EVERYWHERE"] = framework.name
    argv = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "everywhere"]
    argv += [f"--junitxml={out / 'junit.xml'}", f"--basetemp={out / 'tmp'}", "tests"]
    label = f"{framework.name} {framework.version}'s suite {'with' if with_concmon else 'without'}"
    # Exit 1 is "some tests failed", which the comparison judges; 2 and up: the suite did not run.
    _run(f"{label} concmon", argv, SUITE_TIMEOUT, ok=(0, 1), cwd=source, env=env)
    snapshot = Snapshot.from_dict(json.loads((out / "snapshot.json").read_text()))
    return _outcomes(out / "junit.xml"), snapshot


def _passed(outcomes: dict[str, str]) -> set[str]:
    return {test for test, outcome in outcomes.items() if outcome == "passed"}


def _summary(outcomes: dict[str, str]) -> str:
    return ", ".join(f"{n} {outcome}" for outcome, n in sorted(Counter(outcomes.values()).items()))


@pytest.mark.slow
@pytest.mark.timeout(3 * PIP_TIMEOUT + 2 * SUITE_TIMEOUT)
@pytest.mark.parametrize("framework", FRAMEWORKS, ids=lambda f: f.name)
def test_own_suite_passes_with_concmon_in_every_app(framework: Framework, tmp_path: Path) -> None:
    """Every test of the framework's suite that passes without concmon passes with it; balanced."""
    source, python = _prepare(framework)
    without, idle = _run_suite(framework, source, python, tmp_path / "without", with_concmon=False)
    with_, snapshot = _run_suite(framework, source, python, tmp_path / "with", with_concmon=True)
    print(f"without concmon: {_summary(without)}; with concmon: {_summary(with_)}")

    assert len(_passed(without)) > 100, f"only {len(_passed(without))} tests passed without concmon"
    assert idle.total == 0, "the run without concmon counted requests: the patch leaked"
    broken = sorted(_passed(without) - _passed(with_))
    assert not broken, f"{len(broken)} tests pass only without concmon:\n" + "\n".join(broken)
    assert snapshot.total > 0, "concmon counted no request: the apps were not instrumented"
    check_balanced(snapshot)
    assert snapshot.total == snapshot.completed, (
        f"{snapshot.total} begun, {snapshot.completed} done"
    )
