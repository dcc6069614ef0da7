"""``concmon-cli run`` as a real process: the app's own install() options, run's own flags,
ENABLE_CONCURRENCY_MONITOR=false, and the block it prints on start."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port, server_process

CLI = [sys.executable, "-m", "concmon_cli.main"]
TOKEN = "s3cret-token"
pytestmark = pytest.mark.slow

OWN_INSTALL_APP = f"""
import asyncio

from fastapi import FastAPI

from concmon_fastapi import install

app = FastAPI()
release = asyncio.Event()


@app.get("/hold")
async def hold() -> dict[str, bool]:
    await release.wait()
    return {{"ok": True}}


@app.post("/release")
async def release_all() -> dict[str, bool]:
    release.set()
    return {{"ok": True}}


install(
    app,
    max_concurrency=2,
    max_queue=0,
    prometheus=True,
    metrics_token={TOKEN!r},
    json_path=True,
    exclude_paths=["/release"],
)
"""

PLAIN_APP = """
from fastapi import FastAPI

app = FastAPI()


@app.get("/fast")
async def fast() -> dict[str, bool]:
    return {"ok": True}
"""

BEARER = {"Authorization": f"Bearer {TOKEN}"}


def _run(tmp_path: Path, source: str, port: int, *extra: str) -> list[str]:
    (tmp_path / "userapp.py").write_text(source)
    return [*CLI, "run", "userapp:app", "--port", str(port), *extra]


def test_the_apps_own_install_options_win_under_run(tmp_path: Path) -> None:
    """An app that installs concmon itself keeps its gate, its /metrics and its token under run."""
    port = free_port()
    log = tmp_path / "c.log"
    argv = _run(tmp_path, OWN_INSTALL_APP, port, "--log-file", str(log), "--interval", "0.5")
    with server_process(argv, port, cwd=tmp_path, timeout=60) as proc:
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/metrics", timeout=30).status_code == 401
        assert httpx.get(f"{base}/concurrency", timeout=30).status_code == 401
        metrics = httpx.get(f"{base}/metrics", headers=BEARER, timeout=30)
        assert metrics.status_code == 200 and "concmon_" in metrics.text
        assert httpx.get(f"{base}/concurrency", headers=BEARER, timeout=30).status_code == 200

        statuses: list[int] = []
        held = [
            threading.Thread(
                target=lambda: statuses.append(httpx.get(f"{base}/hold", timeout=60).status_code)
            )
            for _ in range(2)
        ]
        for thread in held:
            thread.start()
        active = 0
        for _ in range(600):  # bounded: until both held requests are inside the app
            snap = httpx.get(f"{base}/concurrency", headers=BEARER, timeout=30).json()
            active = snap["endpoints"].get("/hold", {}).get("active", 0)
            if active == 2:
                break
            threading.Event().wait(0.05)
        assert active == 2
        turned_away = httpx.get(f"{base}/hold", timeout=30)
        assert turned_away.status_code == 503
        assert turned_away.headers["retry-after"] == "1"
        assert httpx.post(f"{base}/release", timeout=30).status_code == 200
        for thread in held:
            thread.join(60)
        assert statuses == [200, 200]
        snap = httpx.get(f"{base}/concurrency", headers=BEARER, timeout=30).json()
        assert snap["endpoints"]["/hold"]["completed"] == 2
        assert snap["endpoints"]["/hold"]["active"] == 0
        assert proc.poll() is None
    assert "the app's own install()" in proc.output  # type: ignore[attr-defined]


def test_run_flags_guard_the_endpoints_it_adds(tmp_path: Path) -> None:
    """--prometheus, a token in CONCMON_METRICS_TOKEN and --metrics-allow guard run's endpoints."""
    port = free_port()
    argv = _run(tmp_path, PLAIN_APP, port, "--prometheus", "--metrics-allow", "127.0.0.0/8")
    env = {"CONCMON_METRICS_TOKEN": TOKEN}
    with server_process(argv, port, env=env, cwd=tmp_path, timeout=60) as proc:
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/fast", timeout=30).status_code == 200
        assert httpx.get(f"{base}/metrics", timeout=30).status_code == 401
        assert httpx.get(f"{base}/concurrency", timeout=30).status_code == 401
        metrics = httpx.get(f"{base}/metrics", headers=BEARER, timeout=30)
        assert metrics.status_code == 200 and "concmon_" in metrics.text
        snap = httpx.get(f"{base}/concurrency", headers=BEARER, timeout=30).json()
        assert snap["endpoints"]["/fast"]["completed"] == 1
    assert TOKEN not in proc.output  # type: ignore[attr-defined]

    port = free_port()
    argv = _run(tmp_path, PLAIN_APP, port, "--metrics-allow", "10.0.0.0/8", "--prometheus")
    with server_process(argv, port, cwd=tmp_path, timeout=60):
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/fast", timeout=30).status_code == 200
        assert httpx.get(f"{base}/metrics", timeout=30).status_code == 403
        assert httpx.get(f"{base}/concurrency", timeout=30).status_code == 403


def test_enable_concurrency_monitor_false_serves_the_app_uncounted(tmp_path: Path) -> None:
    """ENABLE_CONCURRENCY_MONITOR=false: run serves the app as it is, and says so in one line."""
    port = free_port()
    log = tmp_path / "c.log"
    argv = _run(tmp_path, PLAIN_APP, port, "--log-file", str(log), "--interval", "0.2")
    env = {"ENABLE_CONCURRENCY_MONITOR": "false"}
    with server_process(argv, port, env=env, cwd=tmp_path, timeout=60) as proc:
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/fast", timeout=30).status_code == 200
        assert httpx.get(f"{base}/concurrency", timeout=30).status_code == 404
    output: str = proc.output  # type: ignore[attr-defined]
    said = [line for line in output.splitlines() if "ENABLE_CONCURRENCY_MONITOR" in line]
    assert len(said) == 1 and "uncounted" in said[0]
    assert not log.exists()


def test_run_prints_where_reports_go_on_start(tmp_path: Path) -> None:
    """On start, one short block names the log file, the snapshot URL and the watch command."""
    port = free_port()
    log = tmp_path / "reports" / "c.log"
    argv = _run(tmp_path, PLAIN_APP, port, "--log-file", str(log))
    with server_process(argv, port, cwd=tmp_path, timeout=60) as proc:
        assert httpx.get(f"http://127.0.0.1:{port}/fast", timeout=30).status_code == 200
    out: str = proc.output  # type: ignore[attr-defined]
    assert str(log) in out
    assert f"http://127.0.0.1:{port}/concurrency" in out
    assert f"concmon-cli watch {log}" in out
    block = out[: out.index(f"concmon-cli watch {log}")]
    assert len(block.splitlines()) <= 5


def test_workers_keep_the_apps_own_options_and_runs_flags(tmp_path: Path) -> None:
    """With --workers 2 (an import-string launch) each worker applies the same rule and flags."""
    port = free_port()
    argv = _run(tmp_path, OWN_INSTALL_APP, port, "--workers", "2", "--metrics-allow", "10.0.0.0/8")
    with server_process(argv, port, cwd=tmp_path, timeout=60) as proc:
        base = f"http://127.0.0.1:{port}"
        for _ in range(4):  # either worker may answer; both keep the app's own token
            assert httpx.get(f"{base}/concurrency", timeout=30).status_code == 401
            assert httpx.get(f"{base}/concurrency", headers=BEARER, timeout=30).status_code == 200
    assert "the app's own install()" in proc.output  # type: ignore[attr-defined]

    (tmp_path / "plainapp.py").write_text(PLAIN_APP)
    port = free_port()
    argv = [*CLI, "run", "plainapp:app", "--port", str(port), "--workers", "2"]
    argv += ["--metrics-allow", "10.0.0.0/8"]
    with server_process(argv, port, cwd=tmp_path, timeout=60) as proc:
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/fast", timeout=30).status_code == 200
        for _ in range(4):
            assert httpx.get(f"{base}/concurrency", timeout=30).status_code == 403
    assert f"http://127.0.0.1:{port}/concurrency" in proc.output  # type: ignore[attr-defined]
