"""Starting to watch an app, and scripting the command: the log found and waited for, the
monitoring-plugin convention of ``check``, a reader that closes the pipe early, messages that
name the option typed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from concmon_cli.main import cli
from tests.cli.conftest import busy_snapshot, write
from tests.servers import free_port, server_process

CLI = [sys.executable, "-m", "concmon_cli.main"]
PERFDATA = re.compile(r"^[a-z_]+=(-?[0-9.]+|U)(ms|s|%|B|c)?(;[0-9.]*){0,4}$")
"""One perfdata item of the Nagios plugin guidelines: label=value[UOM];warn;crit;min;max."""


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, env=env)


def _lines_until(stream: object, want: str, limit: int = 500) -> list[str]:
    seen: list[str] = []
    for line in stream:  # type: ignore[attr-defined]
        seen.append(line)
        if want in line or len(seen) >= limit:
            break
    return seen


# -- Launch ------------------------------------------------------------------------------------

APP = """
from fastapi import FastAPI

app = FastAPI()

@app.get("/fast")
async def fast() -> dict[str, bool]:
    return {"ok": True}
"""


@pytest.mark.slow
def test_watch_started_beside_the_app_shows_it_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``run`` with an hour between reports, then a bare ``watch`` in the same directory: the
    report the app makes as it starts is found in logs/concmon.log and drawn."""
    (tmp_path / "userapp.py").write_text(APP)
    port = free_port()
    argv = [*CLI, "run", "userapp:app", "--port", str(port), "--interval", "3600"]
    monkeypatch.delenv("CONCMON_LOG_FILE")  # both find the default, relative to their directory
    with server_process(argv, port, cwd=tmp_path, timeout=60):
        proc = subprocess.Popen(
            [*CLI, "watch", "--refresh", "0.1"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            seen = _lines_until(proc.stdout, "source logs/concmon.log  report")
        finally:
            proc.kill()
            proc.communicate()
    assert any(line.startswith("Active 0  Peak this interval 0") for line in seen), seen
    assert any("source logs/concmon.log  report" in line for line in seen), seen


def test_watch_reads_the_log_concmon_log_file_names(tmp_path: Path) -> None:
    """With CONCMON_LOG_FILE set in the CLI's environment and no SOURCE, that file is read."""
    path = write(tmp_path / "elsewhere" / "app.log", [busy_snapshot(active=4)])
    result = run("watch", "--count", "1", env={"CONCMON_LOG_FILE": str(path)})
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("Active 4  ")
    assert f"source {path}" in result.stdout


def test_the_waiting_message_names_the_file_where_and_how_to_point_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bare ``watch`` before the app started: the relative path, the directory it is taken
    from, and the two ways to point it elsewhere (SOURCE, CONCMON_LOG_FILE)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CONCMON_LOG_FILE", raising=False)
    out = run("watch", "--count", "1").stdout
    assert f"waiting for logs/concmon.log to appear in {tmp_path}" in out
    assert "SOURCE" in out and "CONCMON_LOG_FILE" in out


def test_export_json_follow_says_once_on_stderr_that_it_waits(tmp_path: Path) -> None:
    """``export json --follow`` on a file not there yet: one stderr line naming it, then the
    report once it is written, and only JSON on stdout."""
    path = tmp_path / "later.log"
    proc = subprocess.Popen(
        [*CLI, "export", "json", str(path), "--follow", "--count", "1", "--poll", "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    said = proc.stderr.readline()  # the file is written only once it has said so
    assert said.startswith(f"concmon-cli: waiting for {path} to appear"), said
    write(path, [busy_snapshot(active=6)])
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert err == ""
    assert json.loads(out)["active"] == 6


# -- check: the monitoring-plugin convention ---------------------------------------------------


def _perfdata(line: str) -> list[str]:
    text, bar, perf = line.rstrip("\n").partition(" | ")
    assert bar, f"no perfdata in {line!r}"
    assert "|" not in text and "(" not in perf
    items = perf.split(" ")
    for item in items:
        assert PERFDATA.match(item), f"not perfdata: {item!r} in {line!r}"
    return items


@pytest.mark.parametrize(
    ("options", "code", "state"),
    [
        ((), 0, "OK"),
        (("--warn-active", "2", "--max-active", "10"), 1, "WARNING"),
        (("--warn-queue", "0", "--warn-failed-rate", "0.5"), 0, "OK"),
        (("--warn-failed-rate", "0.1", "--max-failed-rate", "0.2"), 2, "CRITICAL"),
        (("--warn-age", "1h", "--max-age", "2h"), 0, "OK"),
    ],
)
def test_check_states_exit_codes_and_perfdata(
    log_file: Path, options: tuple[str, ...], code: int, state: str
) -> None:
    """0 OK, 1 WARNING, 2 CRITICAL, each with perfdata a grapher parses, thresholds in it."""
    result = run("check", str(log_file), *options)
    assert result.exit_code == code, result.stdout
    assert result.stdout.startswith(f"{state} - ")
    items = _perfdata(result.stdout)
    labels = [item.split("=")[0] for item in items]
    assert labels == ["active", "queue", "failed_rate", "loop_lag", "age"]
    if options[:2] == ("--warn-active", "2"):
        assert items[0] == "active=3;2;10;0"


def test_check_names_warnings_beside_a_critical_and_keeps_the_rate_scope_in_the_text(
    log_file: Path,
) -> None:
    """Both levels crossed: CRITICAL, the warning marked as such, '(last interval)' in the text."""
    out = run("check", str(log_file), "--max-active", "2", "--warn-failed-rate", "0.1").stdout
    text = out.partition(" | ")[0]
    assert text == (
        "CRITICAL - active 3 > 2; failed rate 0.3333 > 0.1 (last interval) (warning)"
    ), out
    _perfdata(out)


@pytest.mark.parametrize(
    "case", ["missing", "url", "bad-age", "bad-option", "warn-above-max", "empty"]
)
def test_check_that_cannot_judge_is_unknown(tmp_path: Path, case: str) -> None:
    """An unreadable source or bad input: UNKNOWN (3), one status line on stdout."""
    good = str(write(tmp_path / "c.log", [busy_snapshot()]))
    args = {
        "missing": [str(tmp_path / "nope.log")],
        "url": [f"http://127.0.0.1:{free_port()}/concurrency"],
        "bad-age": [good, "--max-age", "soon"],
        "bad-option": [good, "--max-active", "many"],
        "warn-above-max": [good, "--warn-active", "9", "--max-active", "5"],
        "empty": [str(tmp_path / "empty.log")],
    }[case]
    (tmp_path / "empty.log").write_bytes(b"")
    result = CliRunner().invoke(cli, ["check", *args])
    assert result.exit_code == 3, (result.stdout, result.stderr, result.exception)
    assert result.stdout.startswith("UNKNOWN - ")
    assert len(result.stdout.splitlines()) == 1
    assert "Traceback" not in result.stdout + result.stderr


def test_check_as_a_process_exits_3_on_an_unreadable_source() -> None:
    """The exit code the monitoring system sees, from a real process."""
    done = subprocess.run(
        [*CLI, "check", "/nonexistent/concmon.log"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3
    assert done.stdout.startswith("UNKNOWN - /nonexistent/concmon.log does not exist")


# -- a reader that closes the pipe early -------------------------------------------------------


def _first_line_then_close(args: list[str], then: object = None) -> tuple[int, str]:
    """Run the command into a pipe, read one line, close the pipe as ``head -1`` does."""
    proc = subprocess.Popen(
        [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    assert first, "nothing was written"
    proc.stdout.close()
    if callable(then):
        then()
    try:
        proc.wait(timeout=60)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    return proc.returncode, err


@pytest.fixture
def long_log(tmp_path: Path) -> Path:
    """Far more output than a pipe holds (its buffer is 64 KiB)."""
    return write(
        tmp_path / "long.jsonl",
        [busy_snapshot(active=n % 7, seconds_ago=3000 - n) for n in range(3000)],
        jsonl=True,
    )


@pytest.mark.parametrize(
    "command", [["history", "--rows", "3000", "--no-color"], ["export", "json", "--since", "2h"]]
)
def test_a_reader_that_stops_early_ends_the_command_quietly(
    long_log: Path, command: list[str]
) -> None:
    """``history | head -1``, ``export json --since | head -1``: exit 0, nothing on stderr."""
    words = 2 if command[0] == "export" else 1
    code, err = _first_line_then_close([*command[:words], str(long_log), *command[words:]])
    assert (code, err) == (0, "")


def test_watch_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """``watch | head -1``: the next redraw finds the pipe closed; exit 0, nothing on stderr."""
    path = write(tmp_path / "c.log", [busy_snapshot(active=1)])

    def more_reports() -> None:
        for n in range(2, 200):  # each report is a redraw; one of them meets the closed pipe
            write(path, [busy_snapshot(active=n)])

    code, err = _first_line_then_close(
        ["watch", str(path), "--refresh", "0.05", "--count", "100000"], more_reports
    )
    assert (code, err) == (0, "")


# -- words -------------------------------------------------------------------------------------


def test_a_bad_max_age_is_named_as_max_age(log_file: Path) -> None:
    """``--max-age`` given a time: the message names --max-age, not --since."""
    out = run("check", str(log_file), "--max-age", "2026-01-31T12:00:00").stdout
    assert "--max-age '2026-01-31T12:00:00' is not a duration" in out
    assert "--since" not in out
    bad = CliRunner().invoke(cli, ["history", str(log_file), "--since", "soonish"])
    assert "--since 'soonish' is not a duration or a time" in bad.stderr


def test_one_skipped_line_is_said_in_the_singular(tmp_path: Path) -> None:
    """One unreadable line: '1 unreadable line skipped'; two: '2 unreadable lines skipped'."""
    path = tmp_path / "c.log"
    path.write_text("garbage\n")
    write(path, [busy_snapshot()])
    history = run("history", str(path)).stdout
    assert "1 unreadable line skipped" in history
    with path.open("a") as handle:
        handle.write("more garbage\n")
    write(path, [busy_snapshot()])
    assert "2 unreadable lines skipped" in run("history", str(path)).stdout
