"""What a user gets from the built package: metadata, sdist contents, import cost, and a working
``concmon-cli`` in every documented install, with a one-line hint where an extra is missing."""

from __future__ import annotations

import email
import json
import os
import shutil
import subprocess
import sys
import tarfile
import venv
from pathlib import Path

import pytest

from concmon.logformat import format_report
from concmon.monitor import ConcurrencyMonitor

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "concmon" / "exporters" / "grafana-dashboard.json"
SKIPPED = {".venv", ".git", ".cache", ".test-tools", "dist", "build", "logs", "bench"}


def _copy_project(target: Path) -> Path:
    """The project tree without venvs, caches or build output (builds write egg-info in place)."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        if Path(folder) == ROOT:
            return {n for n in names if n in SKIPPED}
        return {n for n in names if n.endswith(".egg-info") or n == "__pycache__"}

    shutil.copytree(ROOT, target, ignore=ignore)
    return target


def _report_file(path: Path) -> Path:
    monitor = ConcurrencyMonitor()
    monitor.http.begin("GET /items").finish()
    path.write_text(format_report(monitor.report_snapshot()))
    return path


def _modules_after(code: str) -> dict[str, bool]:
    probe = (
        f"{code}\nimport sys, json\n"
        "print('MODULES=' + json.dumps({m: m in sys.modules for m in "
        "('pydantic', 'pydantic_settings', 'psutil')}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("MODULES="))
    loaded: dict[str, bool] = json.loads(line.removeprefix("MODULES="))
    return loaded


def test_import_concmon_loads_no_pydantic() -> None:
    """`import concmon` leaves pydantic and psutil unloaded; settings load when first read."""
    assert _modules_after("import concmon") == {
        "pydantic": False,
        "pydantic_settings": False,
        "psutil": False,
    }
    assert _modules_after("from concmon import ConfigError, Settings, load_settings")[
        "pydantic_settings"
    ]


def test_cli_show_loads_no_settings(tmp_path: Path) -> None:
    """`concmon-cli show FILE` reads the report without importing pydantic-settings."""
    log = _report_file(tmp_path / "concmon.log")
    loaded = _modules_after(
        "from concmon_cli.main import main\n"
        "try:\n"
        f"    main(['show', '--no-color', {str(log)!r}])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
    )
    assert not loaded["pydantic_settings"]
    assert not loaded["pydantic"]


def test_export_grafana_prints_the_packaged_dashboard(tmp_path: Path) -> None:
    """`export grafana` prints the dashboard shipped in the package, or writes it with -o."""
    cli = [sys.executable, "-m", "concmon_cli.main", "export", "grafana"]
    printed = subprocess.run(cli, capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(printed.stdout) == json.loads(DASHBOARD.read_text())
    target = tmp_path / "dashboard.json"
    subprocess.run([*cli, "-o", str(target)], timeout=120, check=True)
    assert json.loads(target.read_text()) == json.loads(DASHBOARD.read_text())
    failed = subprocess.run(
        [*cli, "-o", str(tmp_path / "missing" / "d.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failed.returncode == 2
    assert failed.stderr.startswith("concmon-cli: error: cannot write")
    assert len(failed.stderr.strip().splitlines()) == 1


def test_sdist_has_license_urls_and_no_tests(tmp_path: Path) -> None:
    """The sdist builds without warnings, has LICENSE, SPDX metadata and URLs, and no tests."""
    project = _copy_project(tmp_path / "project")
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            "-c",
            f"from setuptools.build_meta import build_sdist; build_sdist({str(dist)!r})",
        ],
        cwd=project,
        capture_output=True,
        timeout=300,
        check=True,
    )
    (archive,) = dist.glob("concmon-*.tar.gz")
    with tarfile.open(archive) as tar:
        names = [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]
        info = tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith("/PKG-INFO")))
        assert info is not None
        metadata = email.message_from_bytes(info.read())
    assert "LICENSE" in names
    assert "concmon/exporters/grafana-dashboard.json" in names
    assert not [n for n in names if n.startswith("tests/")]
    assert metadata["License-Expression"] == "MIT"
    assert "LICENSE" in metadata.get_all("License-File", [])
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL", []))
    assert set(urls) >= {"Homepage", "Documentation", "Source"}
    assert "](docs/" not in str(metadata.get_payload())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel pip builds from this tree, as a user's `pip install .` would."""
    base = tmp_path_factory.mktemp("wheel")
    project = _copy_project(base / "project")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(project), "-w", str(base)],
        capture_output=True,
        timeout=600,
        check=True,
    )
    (built,) = base.glob("concmon-*.whl")
    return built


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("extra", ["", "[flask]", "[fastapi]"])
def test_every_install_gives_a_working_cli(wheel: Path, tmp_path: Path, extra: str) -> None:
    """Core, [flask] and [fastapi] installs: show and export grafana work; run names its extra."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", f"{wheel}{extra}"],
        capture_output=True,
        timeout=600,
        check=True,
    )
    cli = str(bin_dir / "concmon-cli")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("CONCMON_", "PYTHON"))}
    log = _report_file(tmp_path / "concmon.log")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [cli, *args], capture_output=True, text=True, timeout=120, env=environ, cwd=tmp_path
        )

    shown = run("show", "--no-color", str(log))
    assert shown.returncode == 0, shown.stderr
    assert "GET /items" in shown.stdout
    exported = run("export", "grafana")
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout) == json.loads(DASHBOARD.read_text())
    assert run("run", "--help").returncode == 0
    if extra != "[fastapi]":
        served = run("run", "x:y")
        assert served.returncode == 2
        assert served.stderr.strip() == (
            "concmon-cli: error: concmon-cli run needs uvicorn: pip install 'concmon[fastapi]'"
        )
