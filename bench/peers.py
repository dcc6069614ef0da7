"""Over HTTP: concmon against the bare app and the peers, on real servers loaded by wrk.

uvicorn serves the FastAPI variants and gunicorn (gthread, 1 worker, 8 threads) the Flask and
Django ones,
each variant in a server process of its own on 127.0.0.1. All the servers of a framework run at
once, pinned to the last CPU where there are two or more, and ``wrk`` (one thread, pinned to the
other CPUs) loads one of them at a time for a fixed number of seconds. Two endpoints:
``GET /items/{id}`` with a new id on every request, and ``GET /stream`` (200 server-sent
events). Each round loads every variant once, in an order that turns every round; requests per
second and the server's CPU time per request are medians over the rounds, ratios the medians of
the per-round ratios. Before any load every server must answer both endpoints in full.

    .venv/bin/python bench/peers.py [--frameworks fastapi,flask,django] [--rounds 6] [--seconds 3]

Every server started here is stopped here; every load is bounded by wrk's duration and a
timeout around it.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    BENCH_EXTRA_HINT,
    CHUNK,
    STREAM_CHUNKS,
    available,
    median_ratio,
    missing_modules,
    name_list,
    positive_int,
    ratio_columns,
)

HOST = "127.0.0.1"
FRAMEWORKS = ("fastapi", "flask", "django")
ENDPOINTS = {
    "items": ("/items/", "GET /items/{id}, a new id on every request"),
    "stream": ("/stream", f"GET /stream, {STREAM_CHUNKS} server-sent events per response"),
}
WRK_HINT = "install wrk as root with: apt-get install wrk (or bash scripts/bench-setup.sh)"

# A new id on every request; wrk runs one thread here, so one counter covers the run.
_ITEMS_SCRIPT = """
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "/items/" .. n)
end
"""


def _argv(framework: str, port: int) -> list[str]:
    if framework == "fastapi":
        return [
            sys.executable, "-m", "uvicorn", "--factory", "bench.harness:fastapi_from_env",
            "--host", HOST, "--port", str(port), "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
    return [
        sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", "1", "--threads", "8",
        "-b", f"{HOST}:{port}", "--log-level", "warning", f"bench.harness:{framework}_from_env()",
    ]  # fmt: skip


SERVERS = {"fastapi": "uvicorn", "flask": "gunicorn", "django": "gunicorn"}
_GTHREAD = "gunicorn gthread, 1 worker, 8 threads"
SERVER_NAMES = {"fastapi": "uvicorn, 1 worker", "flask": _GTHREAD, "django": _GTHREAD}


# -- CPUs and servers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Cpus:
    """Where the servers and wrk run: on CPUs of their own where there are two or more."""

    server: str
    load: str

    @classmethod
    def plan(cls) -> Cpus:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2 or shutil.which("taskset") is None:
            return cls("", "")
        return cls(str(cpus[-1]), ",".join(map(str, cpus[:-1])))

    def describe(self) -> str:
        if not self.server:
            return "servers and wrk share the CPUs (one CPU, or no taskset)"
        return f"servers on CPU {self.server}, wrk on CPU {self.load}"


def _pinned(argv: list[str], cpus: str) -> list[str]:
    return ["taskset", "-c", cpus, *argv] if cpus else argv


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Server:
    variant: str
    port: int
    proc: subprocess.Popen[bytes]

    def cpu_seconds(self) -> float:
        """User + system CPU time so far of the server and its workers."""
        parent = psutil.Process(self.proc.pid)
        times = [p.cpu_times() for p in (parent, *parent.children(recursive=True))]
        return sum(t.user + t.system for t in times)


def _wait_for(server: Server, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            break
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((HOST, server.port)) == 0:
                return
        time.sleep(0.05)
    output = log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"the {server.variant} server did not start; its last output:\n{output}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    except ProcessLookupError:
        pass


@contextmanager
def serving(framework: str, variants: Sequence[str], cpus: Cpus) -> Iterator[list[Server]]:
    """One server process per variant, all started at once, each checked to answer both
    endpoints in full, and all stopped afterwards whatever happened in between.

    Server output goes to a file (a pipe nobody reads would block a chatty server mid-run).
    """
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="concmon-bench-") as tmp:
        try:
            running = []
            for variant in variants:
                port = _free_port()
                env = {
                    **os.environ,
                    "PYTHONPATH": str(ROOT),
                    "BENCH_VARIANT": variant,
                    "CONCMON_LOG_FILE": str(Path(tmp) / f"{variant}.log"),
                }
                with open(Path(tmp) / f"{variant}.out", "wb") as out:
                    proc = subprocess.Popen(
                        _pinned(_argv(framework, port), cpus.server),
                        cwd=ROOT,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                procs.append(proc)
                running.append(Server(variant, port, proc))
            for server in running:
                _wait_for(server, Path(tmp) / f"{server.variant}.out")
                _check_answers(server)
            yield running
        finally:
            for proc in procs:
                _stop(proc)


def _check_answers(server: Server) -> None:
    """Both endpoints answer 200 with their whole body, so a broken variant fails up front."""
    expected = {"/items/7": b'"id":7', "/stream": CHUNK * STREAM_CHUNKS}
    for path, body_part in expected.items():
        conn = http.client.HTTPConnection(HOST, server.port, timeout=10)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        if response.status != 200 or body_part not in body:
            raise RuntimeError(
                f"the {server.variant} server answered {response.status} {body[:120]!r} on {path}"
            )


# -- wrk ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """One wrk run against one server: requests per second and server CPU per request."""

    rps: float
    cpu_us: float


def run_wrk(server: Server, endpoint: str, *, seconds: int, connections: int, cpus: Cpus) -> Load:
    """Load ``server`` on ``endpoint`` for ``seconds`` with one wrk thread; fail on any error."""
    path, _ = ENDPOINTS[endpoint]
    url = f"http://{HOST}:{server.port}{path}"
    with tempfile.TemporaryDirectory(prefix="concmon-wrk-") as tmp:
        argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", url]
        if endpoint == "items":
            script = Path(tmp) / "items.lua"
            script.write_text(_ITEMS_SCRIPT)
            argv[1:1] = ["-s", str(script)]
        cpu = server.cpu_seconds()
        done = subprocess.run(
            _pinned(argv, cpus.load),
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=False,
        )
    spent = server.cpu_seconds() - cpu
    out = done.stdout
    rps = re.search(r"Requests/sec:\s*([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if done.returncode != 0 or rps is None or total is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {out}{done.stderr}".strip())
    problems = re.findall(r"(Socket errors:.*|Non-2xx or 3xx responses:.*)", out)
    if problems:
        raise RuntimeError(f"the {server.variant} server under load: {'; '.join(problems)}")
    requests = int(total.group(1))
    return Load(float(rps.group(1)), spent / max(requests, 1) * 1e6)


# -- the rounds -----------------------------------------------------------------------------------


def measure(
    servers: Sequence[Server],
    endpoint: str,
    *,
    rounds: int,
    seconds: int,
    connections: int,
    cpus: Cpus,
) -> dict[str, list[Load]]:
    """Every server loaded once per round, in an order that turns every round."""
    loads: dict[str, list[Load]] = {s.variant: [] for s in servers}
    for index in range(rounds):
        turn = index % len(servers)
        for server in [*servers[turn:], *servers[:turn]]:
            loads[server.variant].append(
                run_wrk(server, endpoint, seconds=seconds, connections=connections, cpus=cpus)
            )
    return loads


def report(loads: dict[str, list[Load]]) -> None:
    rps = {name: [run.rps for run in runs] for name, runs in loads.items()}
    cpu = {name: [run.cpu_us for run in runs] for name, runs in loads.items()}
    for name in loads:
        print(
            f"  {name:26} {statistics.median(rps[name]):8,.0f} req/s  {ratio_columns(name, rps)}"
            f"  {statistics.median(cpu[name]):6.0f} us CPU/request  "
            f"{median_ratio(cpu[name], cpu['bare']):6.3f} CPU x bare"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/peers.py", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument(
        "--frameworks", type=name_list(FRAMEWORKS), default=list(FRAMEWORKS), help="comma list"
    )
    parser.add_argument(
        "--endpoints", type=name_list(list(ENDPOINTS)), default=list(ENDPOINTS), help="comma list"
    )
    parser.add_argument("--rounds", type=positive_int, default=6)
    parser.add_argument("--seconds", type=positive_int, default=3, help="seconds per wrk run")
    parser.add_argument("--connections", type=positive_int, default=32)
    parser.add_argument(
        "--no-warmup", action="store_true", help="skip the 1 s warm-up of every server"
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print(f"peers.py: wrk is not installed; {WRK_HINT}", file=sys.stderr)
        return 2
    servers_missing = missing_modules(
        [m for framework in args.frameworks for m in (framework, SERVERS[framework])]
    )
    if servers_missing:
        print(
            f"peers.py: {', '.join(servers_missing)} not installed; {BENCH_EXTRA_HINT}",
            file=sys.stderr,
        )
        return 2

    cpus = Cpus.plan()
    print(
        f"over HTTP on {HOST}: wrk with 1 thread and {args.connections} connections, {args.rounds} "
        f"rounds of {args.seconds} s per variant and endpoint; {cpus.describe()}; req/s ratios "
        f"are of throughput, higher is better; 1-minute load average {os.getloadavg()[0]:.2f}"
    )
    for framework in args.frameworks:
        variants, missing = available(framework)
        print(f"\n{framework} on {SERVER_NAMES[framework]}")
        if missing:
            print(f"  (peers not installed, left out: {', '.join(missing)}; {BENCH_EXTRA_HINT})")
        with serving(framework, variants, cpus) as servers:
            for server in [] if args.no_warmup else servers:  # every server, every endpoint
                for endpoint in args.endpoints:
                    run_wrk(server, endpoint, seconds=1, connections=args.connections, cpus=cpus)
            for endpoint in args.endpoints:
                loads = measure(
                    servers,
                    endpoint,
                    rounds=args.rounds,
                    seconds=args.seconds,
                    connections=args.connections,
                    cpus=cpus,
                )
                print(f" {ENDPOINTS[endpoint][1]}")
                report(loads)
    print(f"\n1-minute load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as exc:  # a variant that failed its check: say which, no traceback
        sys.exit(f"peers.py: {exc}")
