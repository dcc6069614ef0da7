"""The test project under real server processes: gunicorn (sync and gthread workers) and
``manage.py runserver`` with its autoreloader, every worker reporting JSON lines to one file."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest

from concmon import Snapshot
from concmon.testing import check_invariants
from tests.flask.serving import wait_until
from tests.servers import HOST, free_port, server_process

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.django.project.settings",
        "CONCMON_SINKS": "jsonl",
        "CONCMON_JSONL_FILE": str(tmp_path / "reports.jsonl"),
        "CONCMON_LOG_FILE": str(tmp_path / "concmon.log"),
        "CONCMON_UPDATE_INTERVAL": "0.1",
        "CONCMON_SYSTEM_METRICS": "false",
        "DJANGO_TEST_RELEASE_FILE": str(tmp_path / "release"),
    }


def read_reports(path: Path) -> dict[int, list[Snapshot]]:
    """Every report in the file, by pid, in file order; each one checked for soundness."""
    by_pid: dict[int, list[Snapshot]] = {}
    if not path.exists():
        return by_pid
    for line in path.read_text().splitlines():
        snapshot = check_invariants(Snapshot.from_dict(json.loads(line)))
        by_pid.setdefault(snapshot.pid, []).append(snapshot)
    return by_pid


def latest(path: Path) -> list[Snapshot]:
    return [reports[-1] for reports in read_reports(path).values()]


@contextlib.contextmanager
def gunicorn(tmp_path: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    argv = [
        "python", "-m", "gunicorn", "-b", f"{HOST}:{port}", "--graceful-timeout", "10",
        "--timeout", "60", *args, "tests.django.project.wsgi:application",
    ]  # fmt: skip
    with server_process(argv, port, env=_env(tmp_path), cwd=ROOT) as proc:
        yield proc, f"http://{HOST}:{port}"


@pytest.mark.parametrize(
    ("args", "held"),
    [
        (("-k", "gthread", "-w", "1", "--threads", "70"), 60),
        (("-k", "sync", "-w", "6", "--preload"), 6),
    ],
    ids=["gthread", "sync"],
)
def test_held_requests_under_gunicorn_are_all_active(
    tmp_path: Path, args: tuple[str, ...], held: int
) -> None:
    """Requests held in a sync view under gunicorn: the workers' active and peak add up to
    exactly the held requests while held (60 on gthread threads, one per sync worker), each
    under the view's pattern; balanced after, with a FileResponse sent by the file wrapper."""
    reports = tmp_path / "reports.jsonl"
    with gunicorn(tmp_path, *args) as (proc, base):
        limits = httpx.Limits(max_connections=held + 5, max_keepalive_connections=0)
        with httpx.Client(base_url=base, timeout=60, limits=limits) as client:
            with ThreadPoolExecutor(held) as pool:
                futures = [pool.submit(client.get, "/slow/") for _ in range(held)]
                try:
                    wait_until(
                        lambda: sum(s.active for s in latest(reports)) == held,
                        40,
                        f"{held} requests active",
                    )
                    now = latest(reports)
                    assert sum(s.peak for s in now) == held
                    assert sum(s.endpoints["slow/"].active for s in now if "slow/" in s.endpoints)
                finally:
                    (tmp_path / "release").touch()
                assert all(f.result().status_code == 200 for f in futures)
            assert len(client.get("/download/").content) == 100_000
            assert client.get("/api/items/5/").status_code == 200
        wait_until(
            lambda: (
                sum(s.total for s in latest(reports)) == held + 2
                and sum(s.active for s in latest(reports)) == 0
            ),
            20,
            "every request reported done",
        )
    finals = latest(reports)

    def completed(name: str) -> int:
        return sum(s.endpoints[name].completed for s in finals if name in s.endpoints)

    assert completed("slow/") == held
    assert completed("download/") == 1
    assert completed("api/items/<int:pk>/") == 1
    assert sum(s.failed for s in finals) == 0
    assert proc.pid not in {s.pid for s in finals if s.total}


def test_runserver_autoreloader_parent_neither_counts_nor_reports(tmp_path: Path) -> None:
    """Under manage.py runserver with its autoreloader, only the serving child reports (and
    counts every request); the reloader parent writes no report at all."""
    port = free_port()
    reports = tmp_path / "reports.jsonl"
    argv = ["python", "tests/django/manage.py", "runserver", f"{HOST}:{port}"]
    with server_process(argv, port, env=_env(tmp_path), cwd=ROOT, timeout=60) as proc:
        parent = proc.pid
        children = psutil.Process(parent).children()
        assert children, "runserver started no serving child"
        with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=30) as client:
            for pk in range(3):
                assert client.get(f"/api/items/{pk}/").status_code == 200
        wait_until(lambda: sum(s.total for s in latest(reports)) == 3, 20, "the child reports them")
    pids = set(read_reports(reports))
    assert parent not in pids
    assert pids <= {child.pid for child in children}
    (final,) = latest(reports)
    assert final.endpoints["api/items/<int:pk>/"].completed == 3


def test_runserver_without_autoreload_reports_from_its_own_process(tmp_path: Path) -> None:
    """runserver --noreload serves in its own process, and that process reports."""
    port = free_port()
    reports = tmp_path / "reports.jsonl"
    argv = ["python", "tests/django/manage.py", "runserver", "--noreload", f"{HOST}:{port}"]
    with server_process(argv, port, env=_env(tmp_path), cwd=ROOT, timeout=60) as proc:
        with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=30) as client:
            assert client.get("/").status_code == 200
        wait_until(lambda: sum(s.total for s in latest(reports)) == 1, 20, "reported")
    assert set(read_reports(reports)) == {proc.pid}
