"""The command as a real process: a pipe, a pseudo-terminal, a launched app, the demo."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import busy_snapshot, write
from tests.servers import free_port, server_process

CLI = [sys.executable, "-m", "concmon_cli.main"]
pytestmark = pytest.mark.slow


def cli(*args: str, timeout: float = 60, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, check=False, **kw
    )  # type: ignore[call-overload, no-any-return]


def test_subprocess_show_and_export_and_check(log_file: Path) -> None:
    """Through a pipe: plain table, exact JSON, monitoring exit codes."""
    shown = cli("show", str(log_file))
    assert shown.returncode == 0
    assert (
        shown.stdout.startswith("Active 3  Peak this interval 4  Peak ever 4")
        and "\x1b[" not in shown.stdout
    )
    exported = json.loads(cli("export", "json", str(log_file)).stdout)
    assert exported["active"] == 3
    assert cli("check", str(log_file), "--max-active", "1").returncode == 2


@pytest.mark.parametrize(
    "args",
    [
        ("show", "/nonexistent/concmon.log"),
        ("show", "/"),
        ("history", "/dev/null", "--since", "last tuesday"),
        ("run", "no_such_module_here:app", "--port", "0"),
        ("run", "not-an-app-path"),
    ],
)
def test_subprocess_bad_input_never_prints_a_traceback(args: tuple[str, ...]) -> None:
    """A real process with bad input: exit 2 and one line on stderr."""
    done = cli(*args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def _read_pty(fd: int, until: float, want: bytes) -> bytes:
    seen = b""
    while time.monotonic() < until and want not in seen:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def _like_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_watch_in_a_terminal_redraws_as_reports_arrive(tmp_path: Path) -> None:
    """In a pseudo-terminal: colours, a new report drawn in place, Ctrl-C ends it cleanly."""
    path = write(tmp_path / "c.log", [busy_snapshot(active=3)])
    main, child = pty.openpty()
    env = dict(os.environ, COLUMNS="120", LINES="40", TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [*CLI, "watch", str(path), "--refresh", "0.2", "--warn-active", "3"],
        stdin=child,
        stdout=child,
        stderr=child,
        env=env,
        close_fds=True,
        # A suite started in the background inherits SIGINT ignored; a user's terminal does not.
        preexec_fn=_like_a_terminal,
    )
    os.close(child)
    try:
        first = _read_pty(main, time.monotonic() + 30, b"/chat/completions")
        assert b"/chat/completions" in first
        assert b"\x1b[" in first  # a terminal gets colours
        write(path, [busy_snapshot(active=17, endpoint="/v1/new-endpoint")])
        later = _read_pty(main, time.monotonic() + 30, b"/v1/new-endpoint")
        assert b"/v1/new-endpoint" in later
        assert b"17" in later
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            _read_pty(main, time.monotonic() + 0.5, b"\0never")  # keep the terminal drained
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main)


def test_watch_waits_for_a_file_that_does_not_exist_yet(tmp_path: Path) -> None:
    """Started before the app: it says it waits, then shows the first report (plain output)."""
    path = tmp_path / "later.log"
    proc = subprocess.Popen(
        [*CLI, "watch", str(path), "--refresh", "0.1", "--count", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    waiting = f"waiting for {path} to appear"
    for line in proc.stdout:  # the file is written only once the watcher has said it waits
        lines.append(line)
        if waiting in line:
            break
    else:
        pytest.fail(f"the watcher never said it waits: {''.join(lines)!r}")
    write(path, [busy_snapshot(active=5)])
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Active 5  Peak this interval 6  Peak ever 6" in out


APP = """
import asyncio
from fastapi import FastAPI

app = FastAPI()

@app.get("/slow")
async def slow() -> dict[str, bool]:
    await asyncio.sleep(float(__import__("os").environ.get("SLOW_S", "3")))
    return {"ok": True}

@app.get("/fast")
async def fast() -> dict[str, bool]:
    return {"ok": True}
"""


def _export(log: Path) -> dict[str, object] | None:
    done = cli("export", "json", str(log), "--per-worker")
    if done.returncode != 0:
        return None
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    return {"workers": lines}


def test_run_two_workers_per_worker_and_summed_figures(tmp_path: Path) -> None:
    """``concmon-cli run`` with 2 workers: reports per pid, and the CLI sums them exactly."""
    (tmp_path / "userapp.py").write_text(APP)
    log = tmp_path / "logs" / "concmon.log"
    port = free_port()
    argv = [
        *CLI,
        "run",
        "userapp:app",
        "--workers",
        "2",
        "--port",
        str(port),
        "--interval",
        "0.3",
        "--log-file",
        str(log),
    ]
    with server_process(argv, port, cwd=tmp_path, timeout=60):
        base = f"http://127.0.0.1:{port}"
        pids: set[int] = set()
        deadline = time.monotonic() + 30
        while len(pids) < 2 and time.monotonic() < deadline:
            got = _export(log)
            pids = {w["pid"] for w in got["workers"]} if got else set()  # type: ignore[index,union-attr]
            time.sleep(0.2)
        assert len(pids) == 2, "both workers report into the one file"
        for _ in range(10):
            assert httpx.get(f"{base}/fast").status_code == 200
        held = 6
        threads = [
            threading.Thread(target=httpx.get, args=(f"{base}/slow",), kwargs={"timeout": 30})
            for _ in range(held)
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        summed: dict[str, object] = {}
        while time.monotonic() < deadline:
            done = cli("export", "json", str(log))
            summed = json.loads(done.stdout) if done.returncode == 0 else {}
            if summed.get("active") == held and summed.get("completed") == 10:
                break
            time.sleep(0.2)
        assert (summed.get("active"), summed.get("completed")) == (held, 10)
        shown = cli("show", str(log), "--per-worker").stdout
        rows = {r.split()[0]: r.split() for r in shown.splitlines() if r.strip()}
        worker_rows = [rows[str(pid)] for pid in pids]
        assert sum(int(r[1]) for r in worker_rows) == int(rows["sum"][1]) == held
        assert sum(int(r[4]) for r in worker_rows) == int(rows["sum"][4]) == held + 10
        live = httpx.get(f"{base}/concurrency").json()
        assert live["pid"] in pids
        for t in threads:
            t.join(30)


def test_demo_ends_by_itself_with_traffic_visible(tmp_path: Path) -> None:
    """The README's command: it ends on its own and showed queueing and both endpoints."""
    started = time.monotonic()
    done = cli("demo", "--duration", "5", timeout=90, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 60
    out = done.stdout
    assert "/v1/chat/completions" in out and "/v1/completions" in out
    assert "demo over:" in out
    assert "upstream" in out
    assert list(tmp_path.iterdir()) == []  # the demo writes no files


def test_run_with_reload_serves_the_wrapped_app(tmp_path: Path) -> None:
    """``--reload`` (an import-string launch): requests are counted and the snapshot served."""
    (tmp_path / "userapp.py").write_text(APP)
    port = free_port()
    argv = [
        *CLI,
        "run",
        "userapp:app",
        "--reload",
        "--port",
        str(port),
        "--interval",
        "0.5",
        "--log-file",
        str(tmp_path / "c.log"),
    ]
    with server_process(argv, port, cwd=tmp_path, timeout=60):
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/fast", timeout=30).status_code == 200
        snap = httpx.get(f"{base}/concurrency", timeout=30).json()
        assert snap["endpoints"]["/fast"]["completed"] == 1
