"""Multi-process mode: one scrape of any worker reports the whole host."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import concmon
from concmon import ConcurrencyMonitor
from concmon.exporters import prometheus
from concmon.exporters.figures import live_figures
from concmon.exporters.multiprocess import ARCHIVE_NAME, FOLDED_KEPT, MultiProcessStore
from concmon.exporters.prometheus import exposition
from concmon.host import Figures
from concmon.testing import check_invariants
from tests.exporters.helpers import parse, total, value

ROOT = Path(__file__).resolve().parents[2]

WORKER = """
import sys
import concmon
from concmon.exporters import prometheus
finished, held = int(sys.argv[1]), int(sys.argv[2])
monitor = concmon.get_monitor()
assert prometheus.activate() == "multi-process"
for _ in range(finished):
    monitor.http.begin("/work").finish()
tickets = [monitor.http.begin("/work") for _ in range(held)]
prometheus._current_backend().publish()
print("ready", flush=True)
sys.stdin.readline()
for ticket in tickets:
    ticket.finish()
concmon.shutdown_monitor()
prometheus._close_backend()
print("done", flush=True)
"""


@pytest.fixture
def multiproc_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "multiproc"
    monkeypatch.setenv("CONCMON_PROMETHEUS_MULTIPROC_DIR", str(directory))
    return directory


@pytest.fixture
def spawn(multiproc_dir: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """Start worker processes that count, publish, and hold requests until told to finish."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def _start(procs: list[subprocess.Popen[str]], finished: int, held: int) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(finished), str(held)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    procs.append(proc)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _figures(finished: int, active: int) -> Figures:
    """What a worker publishes: a real monitor with ``finished`` requests done, ``active`` held."""
    monitor = ConcurrencyMonitor()
    for _ in range(finished):
        monitor.http.begin("/w").finish()
    held = [monitor.http.begin("/w") for _ in range(active)]
    figures = live_figures(monitor, process=False)
    for ticket in held:
        ticket.finish()
    return figures


def test_one_scrape_adds_up_live_workers_and_keeps_a_killed_workers_totals(
    spawn: list[subprocess.Popen[str]],
) -> None:
    """Two real workers: summed; one SIGKILLed: its actives finish as lost, its totals stay, in
    the exposition and in the host snapshot a JSON endpoint can serve."""
    a = _start(spawn, finished=7, held=2)
    _start(spawn, finished=5, held=3)
    assert prometheus.activate() == "multi-process"
    concmon.get_monitor().http.begin("/work").finish()
    samples = parse(exposition()[0])
    assert value(samples, "concmon_processes") == 3
    assert value(samples, "concmon_requests_active", endpoint="/work") == 5
    assert total(samples, "concmon_requests_total", endpoint="/work", outcome="ok") == 13
    a.send_signal(signal.SIGKILL)
    a.wait(10)
    samples = parse(exposition()[0])
    assert value(samples, "concmon_processes") == 2
    assert value(samples, "concmon_requests_active", endpoint="/work") == 3
    assert total(samples, "concmon_requests_total", endpoint="/work", outcome="ok") == 13
    assert total(samples, "concmon_requests_total", endpoint="/work", outcome="lost") == 2
    host = check_invariants(prometheus.host_snapshot())
    assert (host.pid, host.active, host.completed, host.lost) == (0, 3, 15, 2)
    assert host.endpoints["/work"].completed == 15


def test_a_worker_that_exits_cleanly_is_folded_with_its_final_figures(
    spawn: list[subprocess.Popen[str]], multiproc_dir: Path
) -> None:
    """A graceful exit publishes the finished held requests before the worker leaves the sum."""
    worker = _start(spawn, finished=4, held=2)
    prometheus.activate()
    assert value(parse(exposition()[0]), "concmon_requests_active", endpoint="/work") == 2
    out, _ = worker.communicate("go\n", timeout=20)
    assert "done" in out
    samples = parse(exposition()[0])
    assert value(samples, "concmon_requests_active", endpoint="/work") == 0
    assert total(samples, "concmon_requests_total", endpoint="/work", outcome="ok") == 6
    leftovers = sorted(p.name for p in multiproc_dir.iterdir() if str(worker.pid) in p.name)
    assert leftovers == []


def test_thousands_of_worker_recycles_leave_a_bounded_directory(multiproc_dir: Path) -> None:
    """2,000 finished workers: totals exact, one archive file, a bounded list of folded ids."""
    prometheus.activate()
    for batch in range(20):
        for _ in range(100):
            store = MultiProcessStore(multiproc_dir)
            store.write(_figures(finished=1, active=1))
            store.close()
        samples = parse(exposition()[0])
        assert total(samples, "concmon_requests_total", endpoint="/w", outcome="ok") == (
            (batch + 1) * 100
        )
        assert value(samples, "concmon_requests_active", endpoint="/w") == 0
    files = sorted(p.name for p in multiproc_dir.iterdir())
    assert len(files) <= 4, files  # archive, directory lock, this worker's state and lock
    assert ARCHIVE_NAME in files
    archive = (multiproc_dir / ARCHIVE_NAME).read_text()
    assert archive.count('"') < FOLDED_KEPT * 2 + 200


def test_totals_never_decrease_while_workers_come_and_go_under_concurrent_scrapes(
    multiproc_dir: Path,
) -> None:
    """Two scraping threads racing worker recycles see monotonic totals and exact actives."""
    prometheus.activate()
    stop = threading.Event()
    problems: list[str] = []
    live = MultiProcessStore(multiproc_dir)
    live.write(_figures(finished=0, active=2))

    def recycle() -> None:
        for _ in range(300):
            store = MultiProcessStore(multiproc_dir)
            store.write(_figures(finished=1, active=1))
            store.close()
        stop.set()

    def scrape() -> None:
        last = 0.0
        while not stop.is_set():
            samples = parse(exposition()[0])
            seen = total(samples, "concmon_requests_total")
            active = value(samples, "concmon_requests_active", endpoint="/w") or 0
            if seen < last:
                problems.append(f"total went back {last} -> {seen}")
            if active < 2:
                problems.append(f"active {active} lost the live worker")
            last = seen

    threads = [
        threading.Thread(target=recycle),
        *(threading.Thread(target=scrape) for _ in range(2)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert problems == []
    samples = parse(exposition()[0])
    assert total(samples, "concmon_requests_total", outcome="ok") == 300
    assert total(samples, "concmon_requests_total", outcome="lost") == 300
    assert value(samples, "concmon_requests_active", endpoint="/w") == 2
    live.close()


def test_a_state_file_that_vanishes_or_is_garbage_is_skipped(multiproc_dir: Path) -> None:
    """Unreadable or disappearing files of other workers never break a scrape."""
    prometheus.activate()
    other = MultiProcessStore(multiproc_dir)
    other.write(_figures(finished=3, active=1))
    (multiproc_dir / "concmon-999-garbage.json").write_text("{not json")
    samples = parse(exposition()[0])
    assert total(samples, "concmon_requests_total", endpoint="/w", outcome="ok") == 3
    other.state_path.unlink()
    samples = parse(exposition()[0])
    assert value(samples, "concmon_requests_active", endpoint="/w") is None
    other.close()


def test_unusable_multiprocess_directory_is_reported_once_and_scrapes_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A directory that cannot be created: one clear line; /metrics serves this worker alone."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("CONCMON_PROMETHEUS_MULTIPROC_DIR", str(blocker / "multiproc"))
    monitor = concmon.get_monitor()
    with caplog.at_level(logging.ERROR, logger="concmon"):
        assert prometheus.activate() == "single-process"
        monitor.http.begin("/w").finish()
        for _ in range(3):
            samples = parse(exposition()[0])
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None
    message = errors[0].getMessage()
    assert str(blocker / "multiproc") in message and "CONCMON_PROMETHEUS_MULTIPROC_DIR" in message
    assert "\n" not in message
    assert total(samples, "concmon_requests_total", endpoint="/w", outcome="ok") == 1


def test_prometheus_multiproc_dir_of_prometheus_client_switches_it_on_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PROMETHEUS_MULTIPROC_DIR, as prometheus_client documents it, is honoured."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "pc"))
    assert prometheus.activate() == "multi-process"
    assert any(p.suffix == ".json" for p in (tmp_path / "pc").iterdir())


def test_forked_child_publishes_under_its_own_pid(multiproc_dir: Path) -> None:
    """After fork the child is a worker of its own: the parent's scrape counts it separately."""
    prometheus.activate()
    concmon.get_monitor().http.begin("/parent").finish()
    read_end, write_end = os.pipe()
    go_read, go_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            os.close(read_end)
            os.close(go_write)
            monitor = concmon.get_monitor()
            monitor.http.begin("/child").finish()
            monitor.http.begin("/child")
            prometheus._current_backend().publish()
            os.write(write_end, b"ok")
            os.read(go_read, 1)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    os.close(go_read)
    try:
        assert os.read(read_end, 2) == b"ok"
        samples = parse(exposition()[0])
        assert total(samples, "concmon_requests_total", endpoint="/child", outcome="ok") == 1
        assert value(samples, "concmon_requests_active", endpoint="/child") == 1
        assert total(samples, "concmon_requests_total", endpoint="/parent", outcome="ok") == 1
        assert value(samples, "concmon_processes") == 2
    finally:
        os.write(go_write, b"x")
        os.close(go_write)
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        samples = parse(exposition()[0])
        if value(samples, "concmon_processes") == 1:
            break
        time.sleep(0.05)
    assert value(samples, "concmon_requests_active", endpoint="/child") == 0
    assert total(samples, "concmon_requests_total", endpoint="/child", outcome="ok") == 1
