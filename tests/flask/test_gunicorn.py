"""gunicorn (gthread) worker processes: exact counts per pid, reporters after fork, exits.

Each worker appends JSON-lines reports to one shared file; the tests read that file the way the
CLI does, one latest snapshot per pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest

from concmon import Snapshot
from concmon.logformat import parse_reports
from concmon.testing import check_invariants
from tests.flask.serving import wait_until
from tests.servers import HOST, free_port, server_process

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.flask.apps:create_app()"


@contextlib.contextmanager
def gunicorn(
    tmp_path: Path, *args: str, workers: int = 2, threads: int = 4, sinks: str = "jsonl"
) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    port = free_port()
    reports = tmp_path / "reports.jsonl"
    argv = [
        "python", "-m", "gunicorn", "-k", "gthread", "-w", str(workers),
        "--threads", str(threads), "-b", f"{HOST}:{port}", "--graceful-timeout", "10",
        *args, APP,
    ]  # fmt: skip
    env = {
        "PYTHONPATH": str(ROOT),
        "CONCMON_SINKS": sinks,
        "CONCMON_JSONL_FILE": str(reports),
        "CONCMON_LOG_FILE": str(tmp_path / "concmon.log"),
        "MONITOR_UPDATE_INTERVAL": "0.1",
        "CONCMON_SYSTEM_METRICS": "false",
        "FLASK_TEST_RELEASE_FILE": str(tmp_path / "release"),
    }
    with server_process(argv, port, env=env, cwd=ROOT) as proc:
        yield proc, f"http://{HOST}:{port}", reports


def worker_pids(proc: subprocess.Popen[str], count: int) -> list[int]:
    master = psutil.Process(proc.pid)
    wait_until(lambda: len(master.children()) == count, 30, f"{count} workers")
    return sorted(child.pid for child in master.children())


def read_reports(path: Path) -> dict[int, list[Snapshot]]:
    """Every report in the file, by pid, in file order; each one checked for soundness. A
    line still being written (no newline yet) is left for the next read."""
    by_pid: dict[int, list[Snapshot]] = {}
    if not path.exists():
        return by_pid
    text = path.read_text()
    for line in text[: text.rfind("\n") + 1].splitlines():
        snap = check_invariants(Snapshot.from_dict(json.loads(line)))
        by_pid.setdefault(snap.pid, []).append(snap)
    return by_pid


def latest(path: Path, pids: list[int]) -> list[Snapshot]:
    reports = read_reports(path)
    return [reports[pid][-1] for pid in pids if reports.get(pid)]


def test_hundred_concurrent_requests_across_preloaded_workers(tmp_path: Path) -> None:
    """--preload, 2 gthread workers: 100 held requests all active, exact totals per worker pid,
    each worker reporting on its own thread after the fork, a final report at SIGTERM."""
    n = 100
    with gunicorn(tmp_path, "--preload", threads=n + 10) as (proc, base, reports):
        pids = worker_pids(proc, 2)
        limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=0)
        with httpx.Client(base_url=base, timeout=60, limits=limits) as client:
            with ThreadPoolExecutor(n) as pool:
                futures = [pool.submit(client.get, "/slow") for _ in range(n)]
                try:
                    wait_until(
                        lambda: sum(s.active for s in latest(reports, pids)) == n,
                        40,
                        "100 requests active across the workers",
                    )
                finally:
                    (tmp_path / "release").touch()
                assert all(f.result().status_code == 200 for f in futures)
            for item_id in range(10):
                client.get(f"/api/items/{item_id}")
        wait_until(
            lambda: (
                sum(s.total for s in latest(reports, pids)) == n + 10
                and sum(s.active for s in latest(reports, pids)) == 0
            ),
            20,
            "all requests reported done",
        )
    by_pid = read_reports(reports)
    assert set(pids) <= set(by_pid)
    peaks = [max(s.interval_peak for s in by_pid[pid]) for pid in pids]
    assert sum(peaks) >= 90
    finals = [by_pid[pid][-1] for pid in pids]

    def served(name: str) -> int:
        return sum(s.endpoints[name].total for s in finals if name in s.endpoints)

    assert served("/slow") == n
    assert served("/api/items/<int:item_id>") == 10
    assert all(s.active == 0 for s in finals)
    for pid in pids:  # the child's own reporter, not an inherited copy of the master's
        assert len(by_pid[pid]) >= 3
    assert all(s.total == 0 for s in by_pid.get(proc.pid, []))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGQUIT])
def test_worker_exit_writes_a_final_report(tmp_path: Path, sig: signal.Signals) -> None:
    """A worker stopped with SIGTERM or SIGQUIT writes a last report holding all its counts."""
    with gunicorn(tmp_path, workers=1) as (proc, base, reports):
        (pid,) = worker_pids(proc, 1)
        # Connection: close, so no keep-alive socket wakes the worker's main thread after the
        # last response: gunicorn's gthread SIGQUIT handler shuts its thread pool down from the
        # signal handler and deadlocks if the signal lands inside ThreadPoolExecutor.submit
        # (a gunicorn bug, seen with py-spy; it has nothing to do with concmon).
        with httpx.Client(base_url=base, timeout=20, headers={"Connection": "close"}) as client:
            for _ in range(7):
                client.get("/")
        os.kill(pid, sig)
        wait_until(lambda: _gone(pid), what=f"worker {pid} exits")
    final = read_reports(reports)[pid][-1]
    assert (final.total, final.completed, final.active) == (7, 7, 0)


def test_killed_worker_leaves_and_its_replacement_starts_fresh(tmp_path: Path) -> None:
    """SIGKILL on a worker holding a request: its reports stop whole, the new worker (new pid)
    counts from zero, and the surviving worker's totals never decrease."""
    with gunicorn(tmp_path, "--preload", workers=2) as (proc, base, reports):
        pids = worker_pids(proc, 2)
        with httpx.Client(base_url=base, timeout=30) as client, ThreadPoolExecutor(4) as pool:
            held = [pool.submit(client.get, "/slow") for _ in range(4)]
            wait_until(lambda: sum(s.active for s in latest(reports, pids)) == 4, 30, "held")
            victim = max(latest(reports, pids), key=lambda s: s.active).pid
            os.kill(victim, signal.SIGKILL)
            wait_until(lambda: victim not in worker_pids_now(proc), 20, "victim gone")
            (tmp_path / "release").touch()
            for future in held:
                with contextlib.suppress(httpx.HTTPError):
                    future.result()
            new_pids = worker_pids(proc, 2)
            assert victim not in new_pids
            for _ in range(6):
                client.get("/")

            def replacement_reports() -> bool:
                snaps = latest(reports, new_pids)
                index_total = sum(s.endpoints["/"].total for s in snaps if "/" in s.endpoints)
                return len(snaps) == 2 and index_total == 6

            wait_until(replacement_reports, 20, "the replacement reports")
        by_pid = read_reports(reports)
    newcomer = next(pid for pid in new_pids if pid not in pids)
    assert by_pid[newcomer][0].total <= 6
    survivor = next(pid for pid in new_pids if pid in pids)
    totals = [s.total for s in by_pid[survivor]]
    assert totals == sorted(totals)
    assert all(s.active == 0 for s in (by_pid[pid][-1] for pid in new_pids))


def _gone(pid: int) -> bool:
    """The process has exited (or is a zombie); it may vanish between two psutil calls."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def worker_pids_now(proc: subprocess.Popen[str]) -> list[int]:
    return [child.pid for child in psutil.Process(proc.pid).children()]


def _recycle(client: httpx.Client, times: int) -> None:
    served = 0
    for _ in range(times * 5):
        if served == times:
            return
        with contextlib.suppress(httpx.TransportError):
            if client.get("/", headers={"Connection": "close"}).status_code == 200:
                served += 1
    raise AssertionError(f"only {served} of {times} requests were served")


def test_worker_recycling_keeps_the_master_bounded(tmp_path: Path) -> None:
    """40 worker recycles (--max-requests 1): each worker reports under its own pid, and the
    master's threads and open files stay flat from the 10th recycle to the 40th."""
    with gunicorn(tmp_path, "--preload", "--max-requests", "1", workers=1, threads=1) as (
        proc,
        base,
        reports,
    ):
        master = psutil.Process(proc.pid)

        def settled_master() -> tuple[int, int]:
            wait_until(lambda: len(master.children()) == 1, 20, "one live worker")
            return master.num_threads(), master.num_fds()

        with httpx.Client(base_url=base, timeout=20) as client:
            _recycle(client, 10)
            warm = settled_master()
            _recycle(client, 30)
            after = settled_master()
    assert after[0] == warm[0]
    assert after[1] <= warm[1] + 2
    by_pid = read_reports(reports)
    workers = {pid: snaps for pid, snaps in by_pid.items() if pid != proc.pid}
    # A gthread worker may accept a second connection before it notices its limit.
    assert len(workers) >= 15
    assert sum(snaps[-1].total for snaps in workers.values()) == 40


def test_eight_workers_share_one_log_through_a_rotation(tmp_path: Path) -> None:
    """8 workers append tagged reports to one log; an external rename-and-recreate loses no
    line and splits none: every line in both files parses, every worker writes after it."""
    with gunicorn(tmp_path, "--preload", workers=8, threads=2, sinks="logfile") as (
        proc,
        base,
        _,
    ):
        log = tmp_path / "concmon.log"
        pids = worker_pids(proc, 8)
        wait_until(lambda: log.exists() and log.stat().st_size > 20_000, 30, "reports written")
        rotated = tmp_path / "concmon.log.1"
        log.rename(rotated)
        with httpx.Client(base_url=base, timeout=20) as client:
            for _ in range(16):
                client.get("/")

        def all_moved() -> bool:
            if not log.exists():
                return False
            snaps, _ = parse_reports(log.read_text().splitlines())
            return {s.pid for s in snaps} >= set(pids)

        wait_until(all_moved, 30, "every worker writing to the new file")
    for path in (rotated, log):
        snaps, bad = parse_reports(path.read_text().splitlines())
        assert bad == 0
        assert snaps
        for snap in snaps:
            check_invariants(snap)
    finals, _ = parse_reports(log.read_text().splitlines())
    last: dict[int, Snapshot] = {}
    for snap in finals:
        last[snap.pid] = snap
    assert sum(last[pid].total for pid in pids) == 16
