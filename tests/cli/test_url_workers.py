"""A URL in front of several workers: every look shows the whole host and each worker."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from concmon.host import HostView
from concmon_cli.main import cli
from concmon_cli.sources import UrlSource
from tests.servers import HOST, free_port, server_process

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 4
WAIT_S = 60.0


def _host_adds_up(source: UrlSource, sent: int) -> HostView:
    """The per-worker answer once every worker has published what it served (bounded): the
    other workers' figures are as they last wrote them, so wait until polls answered by any
    worker agree, several in a row."""
    deadline = time.monotonic() + WAIT_S
    agreeing = 0
    while True:
        host = source.host()
        assert host is not None
        total = host.total()
        if total is not None and total.completed == sent and len(host.live()) == WORKERS:
            agreeing += 1
            if agreeing == 3 * WORKERS:
                return host
        else:
            agreeing = 0
        if time.monotonic() > deadline:
            pytest.fail(f"the host never added up to {sent}: {total}")
        time.sleep(0.1)


def test_every_poll_of_a_url_behind_four_workers_shows_all_of_them(tmp_path: Path) -> None:
    """gunicorn with 4 workers in multi-process mode: the per-worker answer lists all four on
    every poll, and the CLI's table totals equal the requests sent, however often it polls."""
    port = free_port()
    argv = [
        sys.executable, "-m", "gunicorn", "-k", "uvicorn.workers.UvicornWorker",
        "-w", str(WORKERS), "-b", f"{HOST}:{port}", "tests.cli.url_app:app",
    ]  # fmt: skip
    env = {
        "CONCMON_PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "mp"),
        "CONCMON_PROMETHEUS_WRITE_INTERVAL": "0.2",
        "PYTHONWARNINGS": "ignore",
    }
    with server_process(argv, port, env=env, cwd=ROOT):
        base = f"http://{HOST}:{port}"
        source = UrlSource(f"{base}/concurrency")
        sent, pids = 0, set()
        with httpx.Client(base_url=base, timeout=10, headers={"Connection": "close"}) as client:
            while len(pids) < WORKERS and sent < 2000:
                pids.add(client.get("/work").json()["pid"])
                sent += 1
        assert len(pids) == WORKERS, "gunicorn never spread the requests over every worker"
        host = _host_adds_up(source, sent)
        assert {s.pid for s in host.live()} == pids
        for _ in range(10):  # each poll may reach any worker: each shows the whole host
            again = source.host()
            assert again is not None
            assert len(again.live()) == WORKERS
            total = again.total()
            assert total is not None and total.completed == sent
        shown = CliRunner().invoke(cli, ["show", f"{base}/concurrency", "--per-worker"])
        assert shown.exit_code == 0, shown.output
        assert f"Total {sent}" in shown.output
        assert all(str(pid) in shown.output for pid in pids)
        watched = CliRunner().invoke(cli, ["watch", f"{base}/concurrency", "--count", "3",
                                           "--refresh", "0.1"])  # fmt: skip
        assert watched.exit_code == 0, watched.output
        assert watched.output.count(f"Total {sent}") == 3


def test_one_process_answers_itself_as_the_only_worker(tmp_path: Path) -> None:
    """Without multi-process mode the per-worker answer holds the one process that answered."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "--host", HOST, "--port", str(port),
            "tests.cli.url_app:app"]  # fmt: skip
    with server_process(argv, port, env={"PYTHONWARNINGS": "ignore"}, cwd=ROOT):
        base = f"http://{HOST}:{port}"
        for _ in range(5):
            assert httpx.get(f"{base}/work", timeout=10).status_code == 200
        host = UrlSource(f"{base}/concurrency").host()
        assert host is not None
        (only,) = host.live()
        assert only.endpoints["/work"].completed == 5
        body = httpx.get(f"{base}/concurrency/workers", timeout=10).json()
        assert body["schema"] == "concmon.workers/1" and body["finished"] == []
