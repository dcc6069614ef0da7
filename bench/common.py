"""Pieces every server benchmark needs: ports, pinned server processes, wrk, in-process drivers.

Kept framework-free so that an ASGI and a WSGI bench can share it: servers are started from an
argv, loaded over 127.0.0.1 only, and stopped by the context manager that started them. Every
load is bounded in time (``wrk -d`` plus a subprocess timeout) and in count (a per-connection
request cap enforced inside wrk's Lua script).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]


# -- arguments ------------------------------------------------------------------------------------


def positive_int(text: str) -> int:
    """argparse type for counts (rounds, requests, seconds): a zero would end in an empty
    median or a division by zero far from the option that caused it."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type for durations in seconds: a number greater than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


# -- processes and cores ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, proc: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with code {proc.returncode}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on {HOST}:{port} within {timeout:g}s")


@dataclass(frozen=True)
class CorePlan:
    """Which CPUs the server and the load generator run on (empty: not pinned)."""

    server: tuple[int, ...]
    load: tuple[int, ...]

    @property
    def pinned(self) -> bool:
        return bool(self.server)

    def describe(self) -> str:
        if not self.pinned:
            return "not pinned (one CPU available, or taskset missing)"
        return f"server on CPU {_cpus(self.server)}, wrk on CPU {_cpus(self.load)}"


def _cpus(cpus: tuple[int, ...]) -> str:
    return ",".join(map(str, cpus))


def core_plan() -> CorePlan:
    """Server on the last available CPU, load on the others, where there are at least two."""
    available = tuple(sorted(os.sched_getaffinity(0)))
    if len(available) < 2 or shutil.which("taskset") is None:
        return CorePlan((), ())
    return CorePlan(available[-1:], available[:-1])


def pinned(argv: Sequence[str], cpus: tuple[int, ...]) -> list[str]:
    return ["taskset", "-c", _cpus(cpus), *argv] if cpus else list(argv)


@dataclass
class Server:
    """A running server: its port and process (the process group leader)."""

    port: int
    proc: subprocess.Popen[bytes]

    def rss_mb(self) -> float:
        """Resident memory of the process that serves requests (a pre-fork worker if any)."""
        import psutil

        parent = psutil.Process(self.proc.pid)
        workers = parent.children(recursive=True)
        target = max(workers, key=lambda p: p.memory_info().rss) if workers else parent
        return float(target.memory_info().rss) / 2**20

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server and its workers so far.

        Per request, this is the fine figure over HTTP: unlike throughput, it does not move
        when the host steals the CPU or another process takes turns on it.
        """
        import psutil

        parent = psutil.Process(self.proc.pid)
        total = 0.0
        for proc in (parent, *parent.children(recursive=True)):
            times = proc.cpu_times()
            total += times.user + times.system
        return total


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server: its command, the port it will listen on, extra environment."""

    name: str
    argv: Sequence[str]
    port: int
    env: Mapping[str, str]


@contextmanager
def servers(specs: Sequence[ServerSpec], cpus: tuple[int, ...] = ()) -> Iterator[list[Server]]:
    """Start every server at once (each in its own session, pinned to ``cpus``), wait for all
    their ports, and stop them all afterwards, whatever happened in between.

    Server output goes to a temporary file, never to a pipe nobody reads (a chatty server
    would block on a full pipe in the middle of a measurement); it is shown if a server fails
    to start.
    """
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="concmon-bench-") as logs:
        try:
            for spec in specs:
                with open(Path(logs) / f"{spec.name}.log", "wb") as out:
                    procs.append(
                        subprocess.Popen(
                            pinned(spec.argv, cpus),
                            cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **spec.env},
                            stdout=out,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
            for spec, proc in zip(specs, procs, strict=True):
                try:
                    wait_for_port(spec.port, proc)
                except (RuntimeError, TimeoutError) as exc:
                    _stop(proc)
                    output = (Path(logs) / f"{spec.name}.log").read_text(errors="replace")
                    raise RuntimeError(
                        f"{spec.name}: {exc}; its last output:\n{output[-2000:]}"
                    ) from None
            yield [Server(spec.port, proc) for spec, proc in zip(specs, procs, strict=True)]
        finally:
            for proc in procs:
                _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        except ProcessLookupError:
            pass


# -- wrk ------------------------------------------------------------------------------------------

WRK_INSTALL_HINT = "install wrk with `apt-get install wrk` (or run scripts/bench-setup.sh as root)"

# Varied path parameters (``prefix`` followed by 1..1000), a request cap (wrk runs one thread,
# and each thread has its own Lua state, so the cap is the run's), and a machine-readable
# summary. Latency percentiles from ``done`` are in microseconds.
_WRK_SCRIPT = """
local prefix, cap, sent = "/", 0, 0
function init(args)
  prefix = args[1]
  cap = tonumber(args[2])
end
function request()
  return wrk.format(nil, prefix .. math.random(1, 1000))
end
-- RESPONSE --
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nWRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"errors": %d, "non2xx": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""

_WRK_CAP = """
function response(status, headers, body)
  sent = sent + 1
  if sent >= cap then wrk.thread:stop() end
end
"""


@dataclass(frozen=True)
class LoadResult:
    """One wrk run: requests per second, latency percentiles, and whether the cap was hit."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    capped: bool
    load_average: float
    """The machine's 1-minute load average when the run ended: how quiet the run was."""
    server_cpu_us: float = 0.0
    """Server CPU microseconds per request, when the caller measured it."""


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    port: int,
    prefix: str,
    *,
    seconds: int,
    connections: int,
    cpus: tuple[int, ...] = (),
    max_requests: int = 1_000_000,
) -> LoadResult:
    """Load ``http://127.0.0.1:port{prefix}N`` (varied N) with one wrk thread for ``seconds``,
    or until ``max_requests`` responses (plus at most one per other connection: responses
    read in the same poll still complete), whichever comes first. ``max_requests=0`` sets no
    cap, and spares wrk the Lua call per response that counting them costs."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT.replace("-- RESPONSE --", _WRK_CAP if max_requests else ""))
    try:
        argv = [
            "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
            "-s", script.name, f"http://{HOST}:{port}", "--", prefix, str(max_requests),
        ]  # fmt: skip
        done = subprocess.run(
            pinned(argv, cpus), capture_output=True, text=True, timeout=seconds + 60, check=False
        )
    finally:
        os.unlink(script.name)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}".strip())
    data = json.loads(line.removeprefix("WRKJSON "))
    return LoadResult(
        rps=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        requests=data["requests"],
        errors=data["errors"] + data["non2xx"],
        capped=bool(max_requests) and data["requests"] >= max_requests,
        load_average=os.getloadavg()[0],
    )


# -- in-process drivers ---------------------------------------------------------------------------


def asgi_scope(path: str) -> dict[str, Any]:
    """A GET scope as uvicorn builds it."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench"), (b"accept", b"*/*")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


class _Collect:
    """The ASGI ``send`` of the in-process driver: keeps the last status, checks nothing else."""

    __slots__ = ("status",)

    def __init__(self) -> None:
        self.status = 0

    async def __call__(self, message: Mapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]


ASGICallable = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


async def drive_asgi(app: ASGICallable, paths: Sequence[str]) -> int:
    """Call ``app`` once per path, sequentially; thread CPU nanoseconds per request.

    CPU time of this thread, not wall time: CPU stolen by the host or taken by other processes
    does not count, and neither do background threads (a reporter, a metric exporter).
    """
    send = _Collect()
    start = time.thread_time_ns()
    for path in paths:
        await app(asgi_scope(path), _receive, send)
    elapsed = time.thread_time_ns() - start
    if send.status != 200:
        raise RuntimeError(f"the app answered {send.status} in-process")
    return elapsed // len(paths)


def wsgi_environ(path: str) -> dict[str, Any]:
    """A GET environ as a WSGI server builds it."""
    import io

    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "50000",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "bench",
        "HTTP_ACCEPT": "*/*",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def drive_wsgi(app: Callable[..., Any], paths: Sequence[str]) -> int:
    """Call ``app`` once per path (iterate and close the body); thread CPU ns per request."""
    status = [""]

    def start_response(code: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], None]:
        status[0] = code
        return _discard

    start = time.thread_time_ns()
    for path in paths:
        body = app(wsgi_environ(path), start_response)
        for _ in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
    elapsed = time.thread_time_ns() - start
    if not status[0].startswith("200"):
        raise RuntimeError(f"the app answered {status[0]!r} in-process")
    return elapsed // len(paths)


def _discard(data: bytes) -> None:
    return None


# -- statistics -----------------------------------------------------------------------------------


def bracketed(values: Sequence[float], before: Sequence[float], after: Sequence[float]) -> float:
    """Median over rounds of each value against the mean of the two bare runs around it."""
    return statistics.median(
        v / ((b + a) / 2) for v, b, a in zip(values, before, after, strict=True)
    )
