"""Each benchmark still runs end to end with tiny counts and prints its ratio lines.

No timing is asserted: the lines' shape is, and the scripts' own checks run (every response a
200, every stream whole, every instrumentation recording exactly the requests it was sent).
Peers are measured where the `bench` extra is installed, and wrk loads the servers where it is.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.harness import VARIANTS, missing_bench_extra
from tests.bench import run_bench

INSTALL_EXTRA = (
    "install it with: .venv/bin/pip install -e '.[bench]' (or bash scripts/bench-setup.sh)"
)
INSTALL_WRK = "install it as root with: apt-get install wrk (or bash scripts/bench-setup.sh)"


def _ratio_rows(text: str, unit: str) -> list[str]:
    """The variant of every line that gives a figure in ``unit`` and a ratio against bare."""
    pattern = rf"^  (\S+) +[\d,.]+ {re.escape(unit)}\b.* x bare"
    return re.findall(pattern, text, re.MULTILINE)


def _sections(text: str) -> dict[str, str]:
    """The output of each framework, by name (the line ``fastapi (...)``, ``flask on ...``)."""
    parts = re.split(r"^(fastapi|flask|django)\b.*$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _completed(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _require_bench_extra() -> None:
    missing = missing_bench_extra()
    if missing:
        pytest.skip(
            f"the `bench` extra is not installed (no {', '.join(missing)}); {INSTALL_EXTRA}"
        )


def test_core_prints_pair_and_snapshot_ratios() -> None:
    """core.py prints bare, concmon and prometheus_client per pair and per snapshot."""
    out = _completed(
        run_bench(
            "core.py", "--pairs", "200", "--snapshots", "3", "--endpoints", "4", "--rounds", "2"
        )
    )
    assert _ratio_rows(out, "ns/pair") == ["bare", "concmon", "prometheus_client"], out
    assert _ratio_rows(out, "us/snapshot") == ["bare", "concmon", "prometheus_client"], out
    assert "one snapshot of 4 endpoints" in out


def test_scrape_prints_the_ratio_to_prometheus_client() -> None:
    """scrape.py renders both bodies (checked to hold the endpoints) and prints the ratio."""
    out = _completed(run_bench("scrape.py", "--endpoints", "3", "--rounds", "2", "--scrapes", "2"))
    rows = re.findall(r"^  (\S+) +[\d.]+ ms/scrape +[\d.]+ x prometheus_client", out, re.MULTILINE)
    assert rows == ["prometheus_client", "concmon"], out


@pytest.fixture(scope="module")
def inprocess_output() -> str:
    args = ("--rounds", "2", "--batch", "3", "--stream-batch", "1")
    return _completed(run_bench("inprocess.py", *args, timeout=240))


@pytest.mark.timeout(300)
def test_inprocess_prints_every_workload_for_bare_and_concmon(inprocess_output: str) -> None:
    """Every framework, the repeated path, fresh ids and the stream, whose lines give us per
    chunk; bare and concmon always, whatever else is installed."""
    sections = _sections(inprocess_output)
    assert set(sections) == {"fastapi", "flask", "django"}
    for framework, text in sections.items():
        blocks = re.split(r"^ GET ", text, flags=re.MULTILINE)[1:]
        assert [b.split(",", 1)[0] for b in blocks] == ["/items/42", "/items/{id}", "/stream"]
        for block in blocks:
            assert _ratio_rows(block, "us/request")[:2] == ["bare", "concmon"], (framework, block)
        stream_rows = _ratio_rows(blocks[2], "us/request")
        per_chunk = re.findall(r"us/request +[\d.]+ us/chunk", blocks[2])
        assert len(per_chunk) == len(stream_rows), blocks[2]


@pytest.mark.timeout(300)
def test_inprocess_measures_every_peer(inprocess_output: str) -> None:
    """With the `bench` extra, every peer of each framework has its line in every workload."""
    _require_bench_extra()
    for framework, text in _sections(inprocess_output).items():
        rows = _ratio_rows(text, "us/request")
        assert rows == list(VARIANTS[framework]) * 3, (framework, text)
        peer_lines = [
            line
            for line in text.splitlines()
            if " x bare" in line and not re.match(r"^  (bare|concmon) ", line)
        ]
        assert peer_lines and all(" x concmon" in line for line in peer_lines), text


@pytest.fixture(scope="module")
def peers_output() -> str:
    if shutil.which("wrk") is None:
        pytest.skip(f"wrk is not installed; {INSTALL_WRK}")
    args = ("--rounds", "1", "--seconds", "1", "--connections", "2", "--no-warmup")
    return _completed(run_bench("peers.py", *args, timeout=420))


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_peers_prints_requests_per_second_on_both_endpoints(peers_output: str) -> None:
    """Real servers loaded by wrk: a req/s line with its ratio for bare and concmon on the
    trivial and the streaming endpoint of each framework."""
    sections = _sections(peers_output)
    assert set(sections) == {"fastapi", "flask", "django"}
    for framework, text in sections.items():
        blocks = re.split(r"^ GET ", text, flags=re.MULTILINE)[1:]
        assert [b.split(",", 1)[0] for b in blocks] == ["/items/{id}", "/stream"]
        for block in blocks:
            assert _ratio_rows(block, "req/s")[:2] == ["bare", "concmon"], (framework, block)
            assert "CPU x bare" in block


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_peers_loads_every_peer(peers_output: str) -> None:
    """With the `bench` extra, every peer's server is started, checked and loaded too."""
    _require_bench_extra()
    for framework, text in _sections(peers_output).items():
        assert _ratio_rows(text, "req/s") == list(VARIANTS[framework]) * 2, (framework, text)


def test_peers_without_wrk_says_how_to_install_it(tmp_path: Path) -> None:
    """With no wrk on PATH, peers.py names the package to install and exits 2."""
    done = run_bench("peers.py", env={**os.environ, "PATH": str(tmp_path)})
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == (
        "peers.py: wrk is not installed; install wrk as root with: apt-get install wrk "
        "(or bash scripts/bench-setup.sh)"
    )
