"""``concmon-cli run``: serve an ASGI app with uvicorn, counted by concmon, code unchanged.

It sets the same environment variables the core reads (so the settings in force are exactly
the documented ones) and points uvicorn at :mod:`concmon_cli._launch`, which every worker
imports. With one process and no reload the app is imported here first, so a bad ``APP``
fails with one line before anything listens; with ``--workers`` or ``--reload`` the same check
runs in a short-lived child process, so the supervising process never imports user code (and
never starts a monitor of its own that would report as an extra, idle worker).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from concmon.settings import ConfigError, load_settings
from concmon_cli import _launch
from concmon_cli.errors import CliError


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


def environment(config: LaunchConfig) -> dict[str, str]:
    """The variables ``run`` sets, by the names the core and the launch module read."""
    env = {
        "ENABLE_CONCURRENCY_MONITOR": "true",
        _launch.APP_ENV: config.app,
        _launch.DIR_ENV: str(config.app_dir.resolve()),
        _launch.JSON_PATH_ENV: config.json_path,
    }
    interval = config.interval if config.interval is not None else (1.0 if config.debug else None)
    if interval is not None:
        env["MONITOR_UPDATE_INTERVAL"] = repr(interval)
    if config.debug:
        env["DEBUG"] = "true"
    if config.log_file is not None:
        env["CONCMON_LOG_FILE"] = str(config.log_file)
    return env


def _check_in_child(config: LaunchConfig) -> None:
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


def serve(config: LaunchConfig) -> None:
    """Set the environment, check the app, and run uvicorn until it is stopped."""
    import uvicorn

    if ":" not in config.app:
        raise CliError(f"APP {config.app!r} must look like module:attribute, for example main:app")
    if config.json_path and not config.json_path.startswith("/"):
        raise CliError(f"--json-path {config.json_path!r} must start with '/'")
    os.environ.update(environment(config))
    try:
        load_settings()
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    app_dir = str(config.app_dir.resolve())
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)  # spawned workers inherit the parent's sys.path
    level = "debug" if config.debug else "info"
    if config.workers > 1 or config.reload:
        _check_in_child(config)
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
    application = _launch.wrap(_launch.load_target(config.app, app_dir), config.json_path)
    uvicorn.run(application, host=config.host, port=config.port, log_level=level)
