"""Real gunicorn workers that recycle or get killed: one scrape still adds up every request."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.exporters.helpers import Samples, parse, total
from tests.servers import HOST, free_port, server_process

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 60.0


def _gunicorn(port: int, workers: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-k",
        "uvicorn.workers.UvicornWorker",
        "-w",
        str(workers),
        "-b",
        f"{HOST}:{port}",
        "--graceful-timeout",
        "2",
        *extra,
        "tests.exporters.prom_app:app",
    ]


def _env(directory: Path, write_interval: str = "1") -> dict[str, str]:
    return {
        "CONCMON_PROMETHEUS_MULTIPROC_DIR": str(directory),
        "CONCMON_PROMETHEUS_WRITE_INTERVAL": write_interval,
        "PYTHONWARNINGS": "ignore",
    }


def _scrape(base: str) -> Samples:
    """One scrape; a worker retiring just as it takes the scrape resets it, so ask again."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            return parse(
                httpx.get(f"{base}/metrics", timeout=10, headers={"Connection": "close"}).text
            )
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _wait_for(check: Callable[[], bool], what: str) -> None:
    """Bounded wait for a condition the servers reach on their own (a recycle, a fold)."""
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "multiproc"
    path.mkdir()
    yield path


def test_recycled_workers_hand_every_request_to_the_next_scrape(directory: Path) -> None:
    """gunicorn --max-requests recycles workers again and again: the scrape counts each request
    they served, exactly, and the directory keeps only the live workers' files and the archive."""
    port, sent = free_port(), 120
    argv = _gunicorn(port, 2, "--max-requests", "10", "--max-requests-jitter", "3")
    with server_process(argv, port, env=_env(directory), cwd=ROOT) as proc:
        base = f"http://{HOST}:{port}"
        pids = set()
        served = 0
        deadline = time.monotonic() + WAIT_S
        while served < sent and time.monotonic() < deadline:
            # A new connection each time, so a worker that retires takes no keep-alive with it.
            try:
                response = httpx.get(f"{base}/work", timeout=10, headers={"Connection": "close"})
            except httpx.TransportError:
                continue  # taken by a worker on its way out, before the application saw it
            pids.add(response.json()["pid"])
            served += 1
        assert served == sent
        assert len(pids) > 4, "the workers did not recycle"
        seen: list[float] = []

        def counted() -> bool:
            seen.append(total(_scrape(base), "concmon_requests_total", endpoint="/work"))
            return seen[-1] >= sent

        _wait_for(counted, f"{sent} requests in the scrape")
        assert seen == sorted(seen), "the host's total went down"
        samples = _scrape(base)
        assert total(samples, "concmon_requests_total", endpoint="/work") == sent
        assert total(samples, "concmon_requests_total", endpoint="/work", outcome="ok") == sent
        assert total(samples, "concmon_requests_total", endpoint="/work", outcome="lost") == 0
        files = sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))
        # Two live workers (a state file and a lock each), the archive and the directory lock;
        # a worker being replaced at this instant may add its pair.
        assert len(files) <= 8, files
        assert proc.poll() is None


def _held_by_worker(directory: Path) -> dict[int, int]:
    """Active requests per worker pid, as their state files say."""
    held: dict[int, int] = {}
    for path in directory.glob("concmon-*-*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        pid = int(path.name.split("-")[1])
        held[pid] = data["figures"]["snapshot"]["active"]
    return held


def test_requests_in_flight_in_a_killed_worker_are_counted_lost(directory: Path) -> None:
    """Requests held in two gunicorn workers, one SIGKILLed: its held requests show as lost in
    the next scrape, and started = finished + active still holds for the host."""
    port, held = free_port(), 6
    with server_process(_gunicorn(port, 2), port, env=_env(directory, "0.1"), cwd=ROOT):
        base = f"http://{HOST}:{port}"
        errors: list[BaseException] = []

        def hold() -> None:
            try:
                httpx.get(f"{base}/hold", timeout=WAIT_S, headers={"Connection": "close"})
            except httpx.HTTPError as exc:
                errors.append(exc)  # the killed worker's clients lose their connection

        clients = [threading.Thread(target=hold, daemon=True) for _ in range(held)]
        for client in clients:
            client.start()
        _wait_for(lambda: sum(_held_by_worker(directory).values()) == held, "held requests")
        victim, in_victim = max(_held_by_worker(directory).items(), key=lambda kv: kv[1])
        assert in_victim > 0
        os.kill(victim, signal.SIGKILL)

        def noticed() -> bool:
            samples = _scrape(base)
            return total(samples, "concmon_requests_total", endpoint="/hold", outcome="lost") == (
                in_victim
            )

        _wait_for(noticed, "the killed worker's requests counted as lost")
        samples = _scrape(base)
        active = total(samples, "concmon_requests_active", endpoint="/hold")
        finished = total(samples, "concmon_requests_total", endpoint="/hold")
        assert active == held - in_victim
        assert finished + active == held
