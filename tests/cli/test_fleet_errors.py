"""The fleet view's answers to what can go wrong: one line and the command's exit code.

The server-side cases run against a real Prometheus behind TLS and basic auth (its own web
configuration), with a certificate made for 127.0.0.1 by openssl.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from concmon_cli.errors import CliError
from concmon_cli.fleet import authorization
from concmon_cli.main import cli
from concmon_cli.promql import Queries, job_matcher, parse_selector
from tests.exporters.conftest import _ensure_prometheus
from tests.servers import HOST, free_port, wait_for_port

USER = "admin"
PASSWORD = "monitoreo2021"
# bcrypt of PASSWORD: Prometheus's web configuration takes only hashed passwords.
HASH = "$2b$12$Kvf88U2IcARZwSqI7x0JTO22i763bOvDQl/C7ZGUM2bnAvLUDrEQy"
CLEAN = {
    "CONCMON_PROMETHEUS_TOKEN": "",
    "CONCMON_PROMETHEUS_USER": "",
    "CONCMON_PROMETHEUS_PASSWORD": "",
    "CONCMON_PROMETHEUS_CA": "",
}


def _run(*args: str, **env: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={**CLEAN, **env})


def _one_line(result: Result, code: int, *words: str) -> str:
    assert result.exit_code == code, result.output
    text = result.output.strip()
    assert len(text.splitlines()) == 1, text
    assert "Traceback" not in text
    for word in words:
        assert word in text, text
    return text


@pytest.mark.parametrize("command", [["show"], ["watch", "--count", "1"], ["export", "json"]])
def test_unreachable_server_is_one_line_and_exit_2(command: list[str]) -> None:
    """Nothing listens at the URL: one line naming it, exit 2, never a traceback."""
    url = f"http://{HOST}:{free_port()}"
    result = _run(*command, "--prometheus", url)
    _one_line(result, 2, "cannot reach Prometheus at", url)


def test_unreachable_server_in_check_is_unknown() -> None:
    """check answers UNKNOWN (3) on stdout, as a monitoring plugin does."""
    result = _run("check", "--prometheus", f"http://{HOST}:{free_port()}")
    assert _one_line(result, 3, "cannot reach Prometheus").startswith("UNKNOWN - ")


@pytest.mark.parametrize(
    ("selector", "problem"),
    [
        ("job=x", "is not a label selector"),
        ('{job="x" env="y"}', "expected a comma"),
        ("{job=x}", "cannot read a matcher"),
        ('{__name__="up"}', "metric name"),
    ],
)
def test_bad_selector_is_one_line(selector: str, problem: str) -> None:
    """A selector that is not label matchers is refused before anything is asked."""
    result = _run("show", "--prometheus", f"http://{HOST}:1", "--selector", selector)
    _one_line(result, 2, "--selector", problem)
    checked = _run("check", "--prometheus", f"http://{HOST}:1", "--selector", selector)
    assert _one_line(checked, 3, problem).startswith("UNKNOWN - ")


def test_selector_accepts_what_promql_accepts() -> None:
    """Every matcher operator, the three quotings, escapes and a trailing comma."""
    matchers = parse_selector(r"""{a="x\"y", b!='z', c=~`^p.*`, d!~"q|r",}""")
    assert [str(m) for m in matchers] == [r'a="x\"y"', "b!='z'", "c=~`^p.*`", 'd!~"q|r"']


def test_fleet_options_need_prometheus_and_exclude_a_source(tmp_path: Path) -> None:
    """--job without --prometheus, or SOURCE beside it, is a usage error naming the option."""
    _one_line(_run("show", "--job", "api"), 2, "--job needs --prometheus")
    assert _run("check", "--show-queries").exit_code == 3
    both = _run("show", str(tmp_path / "log"), "--prometheus", f"http://{HOST}:1")
    _one_line(both, 2, "not both")


def test_credentials_come_from_the_environment_only() -> None:
    """A token is a bearer header, a user and password basic auth; half or both is an error."""
    assert authorization({"CONCMON_PROMETHEUS_TOKEN": "t0k"}) == "Bearer t0k"
    assert authorization({"CONCMON_PROMETHEUS_USER": "u", "CONCMON_PROMETHEUS_PASSWORD": "p"}) == (
        "Basic dTpw"
    )
    assert authorization({}) is None
    with pytest.raises(CliError, match="not both"):
        authorization({"CONCMON_PROMETHEUS_TOKEN": "t", "CONCMON_PROMETHEUS_USER": "u"})
    with pytest.raises(CliError, match="CONCMON_PROMETHEUS_PASSWORD is empty"):
        authorization({"CONCMON_PROMETHEUS_USER": "u"})
    options = _run("show", "--help").output
    assert "--token" not in options and "--password" not in options


@contextlib.contextmanager
def _secure_prometheus(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real Prometheus serving its API over TLS with basic auth; yields its URL and CA."""
    reason = _ensure_prometheus()
    if reason is not None:
        pytest.skip(reason)
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={HOST}",
            "-addext", f"subjectAltName=IP:{HOST}",
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
        f"basic_auth_users:\n  {USER}: {HASH}\n"
    )
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\n")
    port = free_port()
    proc = subprocess.Popen(
        [
            "prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address={HOST}:{port}", f"--web.config.file={web}", "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"https://{HOST}:{port}"
    try:
        wait_for_port(port, 30, proc)
        context = ssl.create_default_context(cafile=str(cert))
        request = urllib.request.Request(f"{url}/-/ready")
        request.add_header("Authorization", authorization(
            {"CONCMON_PROMETHEUS_USER": USER, "CONCMON_PROMETHEUS_PASSWORD": PASSWORD}
        ) or "")  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(request, timeout=5, context=context) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("prometheus never became ready")
            time.sleep(0.2)
        yield url, cert
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=5)


@pytest.mark.slow
def test_tls_is_verified_and_basic_auth_is_sent_from_the_environment(tmp_path: Path) -> None:
    """An untrusted certificate, missing or wrong credentials, a rejected query and no concmon
    series: each one line (exit 2, check UNKNOWN); the CA file and the variables get through."""
    with _secure_prometheus(tmp_path) as (url, ca):
        creds = {"CONCMON_PROMETHEUS_USER": USER, "CONCMON_PROMETHEUS_PASSWORD": PASSWORD}
        _one_line(_run("show", "--prometheus", url, **creds), 2, "not trusted", "--prometheus-ca")
        _one_line(_run("show", "--prometheus", url, "--prometheus-ca", str(ca)), 2, "HTTP 401")
        wrong = {**creds, "CONCMON_PROMETHEUS_PASSWORD": "nope"}
        _one_line(_run("show", "--prometheus", url, "--prometheus-ca", str(ca), **wrong), 2, "401")
        through = _run(
            "show", "--prometheus", url, "--job", "api", **creds, CONCMON_PROMETHEUS_CA=str(ca)
        )
        _one_line(through, 2, "has no concmon series", '{job="api"}')
        rejected = _run(
            "show", "--prometheus", url, "--prometheus-ca", str(ca), "--selector", '{env=~"("}',
            **creds,
        )  # fmt: skip
        _one_line(rejected, 2, "rejected the query", "bad_data")
        checked = _run("check", "--prometheus", url, "--prometheus-ca", str(ca), **creds)
        assert _one_line(checked, 3, "no concmon series").startswith("UNKNOWN - ")


@pytest.fixture
def promtool() -> str:
    reason = _ensure_prometheus()
    if reason is not None:
        pytest.skip(reason)
    path = shutil.which("promtool")
    assert path is not None
    return path


def test_show_queries_prints_valid_promql_with_the_selector_and_window(
    promtool: str, tmp_path: Path
) -> None:
    """--show-queries prints each query once, selector and window in it; promtool parses all."""
    result = _run(
        "watch", "--prometheus", f"http://{HOST}:1", "--job", "api", "--selector",
        '{env="prod"}', "--refresh", "5", "--show-queries",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    names = [line[2:] for line in lines if line.startswith("# ")]
    exprs = [line for line in lines if not line.startswith("#")]
    assert len(names) == len(exprs)
    assert {"up", "active", "finished", "duration_buckets", "duration_buckets_before"} <= set(names)
    assert not any("histogram_quantile" in expr for expr in exprs)  # the table is from buckets
    for expr in exprs:
        assert '{job="api", env="prod"}' in expr, expr
    assert any("[5s]" in expr for expr in exprs)
    rules = {
        "groups": [
            {
                "name": "fleet",
                "rules": [
                    {"record": f"fleet:{n}", "expr": e} for n, e in zip(names, exprs, strict=True)
                ],
            }
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps(rules))
    proc = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


FLEET_DOC = Path(__file__).resolve().parents[2] / "docs" / "fleet.md"


def test_fleet_doc_scrape_configs_pass_promtool(promtool: str, tmp_path: Path) -> None:
    """The static and the Kubernetes pods scrape configs of docs/fleet.md pass promtool."""
    blocks = re.findall(r"```yaml\n# prometheus.yml\n(.*?)```", FLEET_DOC.read_text(), re.S)
    assert len(blocks) == 2 and "kubernetes_sd_configs" in blocks[1]

    def check(n: int, text: str) -> subprocess.CompletedProcess[str]:
        path = tmp_path / f"prometheus-{n}.yml"
        path.write_text(text)
        return subprocess.run(
            [promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=30
        )

    for n, block in enumerate(blocks):
        proc = check(n, block)
        if "kubernetes_sd_configs not found" in proc.stdout + proc.stderr:
            # Debian builds Prometheus without Kubernetes discovery: the relabelling rules are
            # still checked, behind a static target in place of the discovery block.
            sd = re.compile(r"    kubernetes_sd_configs:\n(?:      .*\n)+")
            assert sd.search(block) is not None
            static = '    static_configs:\n      - targets: ["127.0.0.1:8000"]\n'
            proc = check(n, sd.sub(static, block))
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_fleet_doc_queries_are_the_views_and_valid(promtool: str, tmp_path: Path) -> None:
    """docs/fleet.md's PromQL parses, and its per-instance queries are those the view runs."""
    block = re.search(r"```promql\n(.*?)```", FLEET_DOC.read_text(), re.S)
    assert block is not None
    exprs: list[str] = []
    for line in block.group(1).splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith(" ") and exprs:
            exprs[-1] += " " + line.strip()
        else:
            exprs.append(line.strip())
    asked = {q.name: q.promql for q in Queries((job_matcher("myapp"),), 30).every()}
    for name in ("active", "interval_peak", "finished", "duration_buckets", "up"):
        assert any(e.startswith(asked[name]) for e in exprs), asked[name]
    rules = {
        "groups": [
            {
                "name": "doc",
                "rules": [{"record": f"doc:{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps(rules))
    proc = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
