"""``concmon-cli run``: serve an ASGI app with uvicorn, counted by concmon, code unchanged.

It sets the same environment variables the core reads (so the settings in force are exactly
the documented ones, ``ENABLE_CONCURRENCY_MONITOR`` included) and points uvicorn at
:mod:`concmon_cli._launch`, which every worker imports and which decides how the app is
served. With one process and no reload the app is imported here first, so a bad ``APP`` fails
with one line before anything listens; with ``--workers`` or ``--reload`` the same check runs
in a short-lived child process, so the supervising process never imports user code (and never
starts a monitor of its own that would report as an extra, idle worker). Before serving it
prints one short block: who counts, where reports go, where the snapshot is, how to watch.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from concmon.settings import ConfigError, Settings, load_settings
from concmon_cli import _launch
from concmon_cli.errors import CliError
from concmon_cli.extras import require

PROG = "concmon-cli run"


@dataclass(frozen=True)
class LaunchConfig:
    app: str
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    reload: bool = False
    debug: bool = False
    interval: float | None = None
    log_file: Path | None = None
    json_path: str = _launch.DEFAULT_JSON_PATH
    app_dir: Path = Path()
    prometheus: bool = False
    metrics_token: str | None = None
    metrics_allow: str | None = None


def environment(config: LaunchConfig) -> dict[str, str]:
    """The variables ``run`` sets, by the names the core and the launch module read.

    ``ENABLE_CONCURRENCY_MONITOR`` is left as the environment has it (on when unset), so
    ``false`` there serves the app uncounted.
    """
    env = {
        _launch.APP_ENV: config.app,
        _launch.DIR_ENV: str(config.app_dir.resolve()),
        _launch.JSON_PATH_ENV: config.json_path,
        _launch.PROMETHEUS_ENV: "true" if config.prometheus else "false",
        _launch.ALLOW_ENV: config.metrics_allow or "",
    }
    if config.metrics_token is not None:
        env[_launch.TOKEN_ENV] = config.metrics_token
    interval = config.interval if config.interval is not None else (1.0 if config.debug else None)
    if interval is not None:
        env["MONITOR_UPDATE_INTERVAL"] = repr(interval)
    if config.debug:
        env["DEBUG"] = "true"
    if config.log_file is not None:
        env["CONCMON_LOG_FILE"] = str(config.log_file)
    return env


def _check_in_child(config: LaunchConfig) -> tuple[_launch.CountedBy, str | None]:
    """Import the app in a throw-away process; who counts it and where its snapshot is."""
    try:
        probe = subprocess.run(
            [sys.executable, "-m", "concmon_cli._launch"],
            env=os.environ.copy(),
            cwd=config.app_dir,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CliError(f"APP {config.app!r}: could not check it imports: {exc}") from None
    if probe.returncode != 0:
        lines = probe.stderr.strip().splitlines()
        raise CliError(lines[-1] if lines else f"APP {config.app!r} could not be imported")
    for line in reversed(probe.stdout.splitlines()):
        if line.startswith(_launch.CHECK_PREFIX):
            described = json.loads(line.removeprefix(_launch.CHECK_PREFIX))
            return described["counted_by"], described["json_path"]
    raise CliError(f"APP {config.app!r}: the import check in a child process said nothing")


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):  # a wildcard bind is reached on loopback
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def start_block(
    config: LaunchConfig, settings: Settings, counted_by: _launch.CountedBy, json_path: str | None
) -> str:
    """What ``run`` prints before serving: who counts, reports, snapshot, how to watch."""
    if counted_by == "nobody":
        return (
            f"{PROG}: ENABLE_CONCURRENCY_MONITOR is false: serving {config.app} uncounted "
            "(no reports, no snapshot)"
        )
    if counted_by == "app":
        head = (
            f"{PROG}: {config.app} installs concmon itself: the app's own install() options apply"
        )
    else:
        head = f"{PROG}: counting {config.app}"
    if "logfile" in settings.sinks:
        report_file: Path | None = settings.log_file
    elif "jsonl" in settings.sinks:
        report_file = settings.jsonl_file
    else:
        report_file = None
    port = str(config.port) if config.port else "PORT"
    url = f"http://{_url_host(config.host)}:{port}{json_path}" if json_path else None
    lines = [
        head,
        f"  reports   {report_file if report_file is not None else 'no file (CONCMON_SINKS)'}",
        f"  snapshot  {url or 'not served (no json_path)'}",
    ]
    watched = str(report_file) if report_file is not None else url
    if watched is not None:
        lines.append(f"  watch     concmon-cli watch {shlex.quote(watched)}")
    return "\n".join(lines)


def serve(config: LaunchConfig) -> None:
    """Set the environment, check the app, say how it is served, run uvicorn until stopped."""
    require("concmon-cli run", "fastapi", "uvicorn", "starlette")
    import uvicorn

    if ":" not in config.app:
        raise CliError(f"APP {config.app!r} must look like module:attribute, for example main:app")
    if config.json_path and not config.json_path.startswith("/"):
        raise CliError(f"--json-path {config.json_path!r} must start with '/'")
    os.environ.update(environment(config))
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    _launch.check_options(_launch.options_from_environment())
    app_dir = str(config.app_dir.resolve())
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)  # spawned workers inherit the parent's sys.path
    level = "debug" if config.debug else "info"
    if config.workers > 1 or config.reload:
        counted_by, json_path = _check_in_child(config)
        click.echo(start_block(config, settings, counted_by, json_path), err=True)
        uvicorn.run(
            "concmon_cli._launch:app",
            host=config.host,
            port=config.port,
            workers=config.workers if not config.reload else None,
            reload=config.reload,
            reload_dirs=[app_dir] if config.reload else None,
            log_level=level,
        )
        return
    served = _launch.serve_target(
        _launch.load_target(config.app, app_dir),
        _launch.options_from_environment(),
        enabled=settings.enabled,
    )
    click.echo(start_block(config, settings, served.counted_by, served.json_path), err=True)
    uvicorn.run(served.application, host=config.host, port=config.port, log_level=level)
