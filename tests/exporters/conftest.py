"""Fixtures for the exporter tests: a clean exporter state, and a real Prometheus server.

Prometheus comes from Debian's ``prometheus`` package; when it is missing the set-up installs
it (as root, with scripts/install-prometheus.sh). Tests that need it skip, saying why, only when
it can be neither found nor installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from concmon.exporters import prometheus
from tests.servers import HOST, free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = ROOT / "scripts" / "install-prometheus.sh"


@pytest.fixture(autouse=True)
def clean_exporters(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No multi-process directory or StatsD address leaks in; the exporter starts unchosen."""
    for name in ("PROMETHEUS_MULTIPROC_DIR", "DD_AGENT_HOST", "DD_DOGSTATSD_PORT"):
        monkeypatch.delenv(name, raising=False)
    prometheus._close_backend()
    prometheus._logged.clear()
    yield
    prometheus._close_backend()
    prometheus._logged.clear()


_install_outcome: str | None = None


def _ensure_prometheus() -> str | None:
    """None when prometheus and promtool are on PATH (installing them if needed), else why not."""
    global _install_outcome
    if shutil.which("prometheus") and shutil.which("promtool"):
        return None
    if _install_outcome is None:
        if os.geteuid() != 0:
            _install_outcome = "Debian's prometheus package is not installed and we are not root"
        else:
            proc = subprocess.run(
                ["sh", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=600
            )
            _install_outcome = (
                ""
                if proc.returncode == 0
                else f"installing prometheus failed: {proc.stderr[-500:]}"
            )
    if shutil.which("prometheus") and shutil.which("promtool"):
        return None
    return _install_outcome or "prometheus is not on PATH after installing it"


@pytest.fixture(scope="session")
def promtool() -> str:
    reason = _ensure_prometheus()
    if reason is not None:
        pytest.skip(reason)
    path = shutil.which("promtool")
    assert path is not None
    return path


class PrometheusServer:
    """A running Prometheus and the bits of its HTTP API the tests use."""

    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, promql: str) -> list[dict[str, Any]]:
        q = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{q}", timeout=5) as resp:
            data = json.load(resp)
        assert data["status"] == "success", data
        result: list[dict[str, Any]] = data["data"]["result"]
        return result

    def value(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, promql: str, expected: float, timeout: float = 30.0) -> float | None:
        """Poll until ``promql`` equals ``expected``; returns the last value seen."""
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = self.value(promql)
            if seen == expected:
                return seen
            time.sleep(0.25)
        return seen

    def ready(self) -> bool:
        """Prometheus answers 503 until its storage is open; only then can it be queried."""
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=5) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def targets_up(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=5) as resp:
            data = json.load(resp)
        return [t for t in data["data"]["activeTargets"] if t["health"] == "up"]


@contextlib.contextmanager
def prometheus_server(targets: list[str], tmp_path: Path) -> Iterator[PrometheusServer]:
    """Prometheus on 127.0.0.1 scraping ``targets`` (host:port) every second."""
    reason = _ensure_prometheus()
    if reason is not None:
        pytest.skip(reason)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: concmon\n"
        "    scrape_interval: 1s\n"
        "    scrape_timeout: 900ms\n"
        f"    static_configs:\n      - targets: {json.dumps(targets)}\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address={HOST}:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port, 30, proc)
        server = PrometheusServer(f"http://{HOST}:{port}")
        deadline = time.monotonic() + 30
        while not server.ready() or len(server.targets_up()) < len(targets):
            if time.monotonic() > deadline:
                raise TimeoutError(f"prometheus not ready or targets not up: {targets}")
            time.sleep(0.25)
        yield server
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=5)
