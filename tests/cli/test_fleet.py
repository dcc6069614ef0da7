"""The fleet view: a real Prometheus scraping three app processes, read by the CLI."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from concmon.snapshot import Distribution
from concmon_cli.fleet import FleetSource, PrometheusClient
from concmon_cli.main import cli
from concmon_cli.promql import Queries, job_matcher
from tests.cli.fleet_app import SLEEP_S
from tests.exporters.conftest import PrometheusServer, prometheus_server
from tests.exporters.test_docs import dashboard_promql
from tests.servers import HOST, free_port, server_process

pytest.importorskip("concmon_fastapi", reason="the FastAPI adapter serves /metrics")

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
DEADLINE = 60.0


def _uvicorn(port: int) -> list[str]:
    return [
        "python", "-m", "uvicorn", "tests.cli.fleet_app:app",
        "--host", HOST, "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _wait(prom: PrometheusServer, promql: str, expected: dict[str, float]) -> None:
    """Until Prometheus answers ``expected`` (instance -> value) for ``promql``."""
    deadline = time.monotonic() + DEADLINE
    seen: dict[str, float] = {}
    while time.monotonic() < deadline:
        seen = {r["metric"]["instance"]: float(r["value"][1]) for r in prom.query(promql)}
        if seen == expected:
            return
        time.sleep(0.2)
    raise AssertionError(f"{promql}: {seen} != {expected}")


def _rows(text: str, instances: list[str]) -> dict[str, list[str]]:
    """The instance table's rows (instance -> cells after the name), and ``sum``."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        for name in [*instances, "sum"]:
            if line.startswith(name + " "):
                rows[name] = line[len(name) :].split()
    return rows


@contextlib.contextmanager
def _fleet(
    tmp_path: Path, count: int = 3
) -> Iterator[tuple[list[int], list[subprocess.Popen[str]], PrometheusServer]]:
    ports = [free_port() for _ in range(count)]
    env = {"PYTHONPATH": str(ROOT), "CONCMON_SINKS": ""}
    with contextlib.ExitStack() as stack:
        apps = [
            stack.enter_context(server_process(_uvicorn(p), p, env=env, cwd=ROOT)) for p in ports
        ]
        prom = stack.enter_context(prometheus_server([f"{HOST}:{p}" for p in ports], tmp_path))
        yield ports, apps, prom


def test_fleet_table_shows_held_actives_per_instance_their_sum_and_exact_totals(
    tmp_path: Path,
) -> None:
    """Three replicas holding 1, 2 and 3 requests: the table's rows, sum and totals are exact."""
    with _fleet(tmp_path) as (ports, _apps, prom):
        names = [f"{HOST}:{p}" for p in ports]
        sent = dict.fromkeys(names, 0)
        for n, (name, port) in enumerate(zip(names, ports, strict=True)):
            with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=10) as client:
                for _ in range(10 * (n + 1)):
                    assert client.get("/work").status_code == 200
                    sent[name] += 1
        holders: list[threading.Thread] = []
        for n, port in enumerate(ports):
            for _ in range(n + 1):
                holder = threading.Thread(
                    target=httpx.get, args=(f"http://{HOST}:{port}/hold",), kwargs={"timeout": 90}
                )
                holder.start()
                holders.append(holder)
                sent[names[n]] += 1
        try:
            _wait(
                prom,
                "sum by (instance) (concmon_requests_active)",
                dict(zip(names, [1.0, 2.0, 3.0], strict=True)),
            )
            _wait(
                prom,
                "sum by (instance) (concmon_requests_total)",
                {k: float(v - i - 1) for i, (k, v) in enumerate(sent.items())},
            )
            shown = _run("show", "--prometheus", prom.url, "--job", "concmon", "--per-instance")
            assert shown.exit_code == 0, shown.output
            rows = _rows(shown.stdout, names)
            for n, name in enumerate(names):
                assert rows[name][0] == str(n + 1), shown.stdout  # active
                assert rows[name][3] == str(sent[name]), shown.stdout  # total
            assert rows["sum"][0] == "6"
            per_instance = dashboard_promql("concmon")["In flight per instance"][0]
            held = {r["metric"]["instance"]: r["value"][1] for r in prom.query(per_instance)}
            assert held == {name: rows[name][0] for name in names}  # the dashboard agrees
            assert rows["sum"][3] == str(sum(sent.values()))
            assert "Active 6 " in shown.stdout
            assert f"Total {sum(sent.values())} " in shown.stdout
            assert "Instances 3" in shown.stdout
            checked = _run(
                "check", "--prometheus", prom.url, "--job", "concmon", "--warn-active", "5"
            )
            assert checked.exit_code == 1, checked.output
            assert checked.stdout.startswith("WARNING - active 6 > 5 | active=6;5;;0 "), (
                checked.stdout
            )
            lines = shown.stdout.splitlines()
            hold = next(line for line in lines if line.startswith("/hold "))
            assert hold.split()[2] == "6"  # the endpoint's fleet-wide active
            assert hold.split()[-3:] == ["-", "-", "-"]  # nothing finished: no percentiles
            work = next(line for line in lines if line.startswith("/work ")).split()
            assert "-" not in work[-3:-1], shown.stdout  # p50 and p99 from the buckets
        finally:
            for port in ports:
                httpx.post(f"http://{HOST}:{port}/release", timeout=10)
            for holder in holders:
                holder.join(30)
        exported = _run("export", "json", "--prometheus", prom.url, "--job", "concmon")
        assert exported.exit_code == 0

        total = json.loads(exported.stdout)
        # every request sent, the releases included, once nothing is in flight
        _wait(prom, "sum by (instance) (concmon_requests_active)", dict.fromkeys(names, 0.0))
        expected = sum(sent.values()) + len(ports)
        deadline = time.monotonic() + DEADLINE
        while total["total"] != expected and time.monotonic() < deadline:
            time.sleep(0.2)
            exported = _run("export", "json", "--prometheus", prom.url, "--job", "concmon")
            total = json.loads(exported.stdout)
        assert total["total"] == total["completed"] == expected
        assert total["active"] == 0


def test_killed_instance_goes_stale_then_is_gone_with_its_totals_kept(tmp_path: Path) -> None:
    """watch --prometheus: a replica killed with SIGKILL is marked stale, then dropped."""
    with _fleet(tmp_path) as (ports, apps, prom):
        names = [f"{HOST}:{p}" for p in ports]
        for port in ports:
            with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=10) as client:
                for _ in range(5):
                    assert client.get("/work").status_code == 200
        _wait(prom, "sum by (instance) (concmon_requests_total)", dict.fromkeys(names, 5.0))
        watch = subprocess.Popen(
            [
                sys.executable, "-m", "concmon_cli.main", "watch", "--prometheus", prom.url,
                "--job", "concmon", "--per-instance", "--refresh", "1",
                "--stale-intervals", "5", "--count", "300", "--no-color",
            ],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        assert watch.stdout is not None
        frames: list[str] = []
        frame: list[str] = []
        deadline = time.monotonic() + DEADLINE
        victim = names[2]

        def next_frame() -> str:
            assert watch.stdout is not None
            while time.monotonic() < deadline:
                line = watch.stdout.readline()
                if not line:
                    raise AssertionError(
                        f"watch ended: {watch.stderr.read() if watch.stderr else ''}"
                    )
                frame.append(line)
                if line.startswith("source prometheus"):
                    text = "".join(frame)
                    frame.clear()
                    frames.append(text)
                    return text
            raise AssertionError("no frame in time:\n" + "".join(frames[-2:]))

        try:
            while set(_rows(next_frame(), names)) != {*names, "sum"}:
                pass
            os.killpg(apps[2].pid, signal.SIGKILL)
            while f"{victim} (stale)" not in (text := next_frame()):
                assert "gone" not in text, text
            rows = _rows(text, names)
            assert rows["sum"][3] == "15", text  # its totals are still in the sum
            while victim in (text := next_frame()):
                pass
            rows = _rows(text, names)
            assert set(rows) == {names[0], names[1], "sum"}, text
            assert "1 instance gone (their totals kept)" in text
            assert rows["sum"][3] == "15", text
            assert "Instances 2" in text
        finally:
            watch.send_signal(signal.SIGINT)
            watch.communicate(timeout=30)
        assert watch.returncode == 0, frames[-1:]
        shown = _run("show", "--prometheus", prom.url, "--job", "concmon", "--per-instance")
        assert shown.exit_code == 0, shown.output
        assert set(_rows(shown.stdout, names)) == {names[0], names[1], "sum"}
        assert f"stale (Prometheus cannot scrape them): {victim}" in shown.stdout


def mine_of(own: dict[str, Any], field: str) -> list[int]:
    """The bucket counts of ``field`` of ``/sleep`` in an app's own snapshot."""
    found: list[int] = own["endpoints"]["/sleep"][field]["buckets"]
    return found


def _sleep(port: int, n: int) -> None:
    with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=30) as client:
        for _ in range(n):
            assert client.get("/sleep").status_code == 200


def test_fleet_distributions_are_the_apps_buckets_and_the_windows_differences(
    tmp_path: Path,
) -> None:
    """Two replicas serving requests that sleep a known time, in two phases: each instance's
    lifetime buckets are its app's own, the window's are the second phase's, and the table's
    percentiles are those of the summed buckets, inside the buckets the sleep allows."""
    with _fleet(tmp_path, 2) as (ports, _apps, prom):
        names = [f"{HOST}:{p}" for p in ports]
        first, second = [3, 5], [4, 2]
        count = 'sum by (instance) (concmon_request_duration_seconds_count{endpoint="/sleep"})'
        for port, n in zip(ports, first, strict=True):
            _sleep(port, n)
        _wait(prom, count, {k: float(n) for k, n in zip(names, first, strict=True)})
        middle = time.time()  # every sample up to now has the first phase only
        for port, n in zip(ports, second, strict=True):
            _sleep(port, n)
        sent = [a + b for a, b in zip(first, second, strict=True)]
        _wait(prom, count, {k: float(n) for k, n in zip(names, sent, strict=True)})
        window = math.ceil(time.time() - middle) + 1
        queries = Queries((job_matcher("concmon"),), window)
        scan = FleetSource(PrometheusClient(prom.url), queries).scan(middle + window)

        summed = Distribution()
        for name, port, n, later in zip(names, ports, sent, second, strict=True):
            own = httpx.get(f"http://{HOST}:{port}/concurrency", timeout=10).json()
            bounds = tuple(own["buckets_s"])
            mine = own["endpoints"]["/sleep"]["duration_all"]
            assert mine["count"] == n
            snapshot = scan.instances[name]
            stats = snapshot.endpoints["/sleep"]
            assert snapshot.buckets_s == bounds
            lifetime, interval = stats.duration_all, stats.duration
            assert lifetime is not None and interval is not None
            assert lifetime.bounds == interval.bounds == bounds
            assert list(lifetime.counts) == mine["buckets"] and lifetime.count == n
            assert lifetime.sum_s == pytest.approx(mine["sum_s"])
            assert interval.count == later  # the window holds the second phase only
            assert all(c <= a for c, a in zip(interval.counts, lifetime.counts, strict=True))
            too_fast = [c for b, c in zip(bounds, lifetime.counts, strict=False) if b < SLEEP_S]
            assert sum(too_fast) == 0, lifetime.counts  # no request shorter than its sleep
            assert stats.rate == round(later / window, 3)
            assert stats.responses == own["endpoints"]["/sleep"].get("responses", {})
            for field in ("ttfb_all", "head_all"):  # as many as the app itself recorded
                found = getattr(stats, field)
                assert found is not None and list(found.counts) == mine_of(own, field)
            summed = summed.plus(Distribution(bounds, tuple(mine["buckets"]), mine["sum_s"]))

        # Prometheus is younger than the window: the window's buckets are the lifetime's
        shown = _run("show", "--prometheus", prom.url, "--job", "concmon", "--window", "1h")
        assert shown.exit_code == 0, shown.output
        row = next(line for line in shown.stdout.splitlines() if line.startswith("/sleep "))
        p50, p99 = row.split()[-3:-1]
        assert [p50, p99] == [f"{summed.p50_ms:.1f}", f"{summed.p99_ms:.1f}"], shown.stdout
        floor = max(b for b in summed.bounds if b < SLEEP_S) * 1000.0
        assert float(p50) >= floor and float(p99) >= floor, shown.stdout
