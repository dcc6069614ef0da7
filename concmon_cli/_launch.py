"""The import string uvicorn loads in every worker: the user's app, counted by concmon.

``uvicorn --workers N`` and ``--reload`` start fresh processes that import the application by
name, so an object built in the launching process cannot be handed over. ``concmon-cli run``
puts the target (``module:attribute``), its directory and the middleware's options in the
environment and points uvicorn at ``concmon_cli._launch:app``; each worker then imports the
target and decides here, by one rule, how it is served (:func:`serve_target`): as it is when
``ENABLE_CONCURRENCY_MONITOR`` is false or when the app already has concmon's middleware (its
own ``install()`` options win), wrapped in concmon's middleware otherwise. The user's code is
never changed.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from concmon.settings import ConfigError, load_settings
from concmon_cli.errors import CliError

if TYPE_CHECKING:
    from types import ModuleType

    from concmon_fastapi import InstallOptions

APP_ENV: Final = "CONCMON_LAUNCH_APP"
DIR_ENV: Final = "CONCMON_LAUNCH_DIR"
JSON_PATH_ENV: Final = "CONCMON_LAUNCH_JSON_PATH"
PROMETHEUS_ENV: Final = "CONCMON_LAUNCH_PROMETHEUS"
ALLOW_ENV: Final = "CONCMON_LAUNCH_METRICS_ALLOW"
TOKEN_ENV: Final = "CONCMON_METRICS_TOKEN"
"""The bearer token of run's middleware; ``run --metrics-token`` reads it from here too."""
DEFAULT_JSON_PATH: Final = "/concurrency"
CHECK_PREFIX: Final = "concmon-launch: "
"""Starts the line in which ``python -m concmon_cli._launch`` says how the app is served."""

CountedBy = Literal["app", "run", "nobody"]


@dataclass(frozen=True)
class Served:
    """How the target is served: who counts its requests and where its snapshot is."""

    application: Any
    counted_by: CountedBy
    json_path: str | None


def load_target(spec: str, app_dir: str | None = None) -> Any:
    """Import ``module:attribute`` (the attribute may be dotted); one-line CliError otherwise."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CliError(f"APP {spec!r} must look like module:attribute, for example main:app")
    if app_dir is not None and app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise CliError(
                f"APP {spec!r}: no module named {module_name!r} in {app_dir or os.getcwd()} "
                "(run from the app's directory or pass --app-dir)"
            ) from None
        raise CliError(f"APP {spec!r}: importing {module_name!r} failed: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - user code may raise anything at import
        raise CliError(
            f"APP {spec!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise CliError(f"APP {spec!r}: {module_name!r} has no attribute {attr!r}") from None
    if not callable(target):
        raise CliError(f"APP {spec!r} is not an ASGI application (a {type(target).__name__})")
    return target


def options_from_environment(environ: Mapping[str, str] | None = None) -> InstallOptions:
    """The options of the middleware ``run`` adds, as ``run`` put them in the environment."""
    env = os.environ if environ is None else environ
    options: InstallOptions = {"json_path": env.get(JSON_PATH_ENV, DEFAULT_JSON_PATH) or None}
    if env.get(PROMETHEUS_ENV, "").lower() == "true":
        options["prometheus"] = True
    if env.get(TOKEN_ENV):
        options["metrics_token"] = env[TOKEN_ENV]
    if env.get(ALLOW_ENV):
        options["metrics_allow"] = env[ALLOW_ENV]
    return options


def _adapter() -> ModuleType:
    """``concmon_fastapi``, imported here so the CLI's other commands never need it."""
    try:
        # By module name: the package's ``install`` attribute is the function, not the module.
        return importlib.import_module("concmon_fastapi.install")
    except ImportError as exc:
        message = f"the ASGI adapter cannot be imported ({exc}): pip install 'concmon[cli]'"
        raise CliError(message) from None


def check_options(options: InstallOptions) -> None:
    """A bad option of run's middleware (a token, an allow-list) as one-line CliError."""
    try:
        _adapter().Options.parse(dict(options))
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def serve_target(target: Any, options: InstallOptions, *, enabled: bool = True) -> Served:
    """The one rule: off (``enabled`` false) serves ``target`` as it is; an app with concmon's
    middleware of its own is served as it is, counted by its own options; any other app is
    wrapped in concmon's middleware with ``options``."""
    if not enabled:
        return Served(target, "nobody", None)
    adapter = _adapter()
    try:
        own = adapter.installed_options(target)
        if own is not None:
            return Served(target, "app", own.json_path)
        parsed = adapter.Options.parse(dict(options))
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    application = adapter.ConcMonMiddleware(target, state=adapter.MiddlewareState(parsed))
    return Served(application, "run", parsed.json_path)


def wrap(target: Any, json_path: str | None = DEFAULT_JSON_PATH) -> Any:
    """The target as ``run`` serves it, with run's snapshot at ``json_path``."""
    return serve_target(target, {"json_path": json_path or None}).application


def build_from_environment() -> Served:
    spec = os.environ.get(APP_ENV)
    if not spec:
        raise CliError(f"{APP_ENV} is not set: start the app with `concmon-cli run module:app`")
    try:
        enabled = load_settings().enabled
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    target = load_target(spec, os.environ.get(DIR_ENV))
    return serve_target(target, options_from_environment(), enabled=enabled)


def __getattr__(name: str) -> Any:
    # Built on first access, so importing this module for its helpers has no side effect.
    if name == "app":
        application = build_from_environment().application
        globals()["app"] = application
        return application
    raise AttributeError(name)


if __name__ == "__main__":
    # `python -m concmon_cli._launch`: check in a throw-away process that the target imports,
    # and say how it would be served.
    try:
        served = build_from_environment()
    except CliError as error:
        print(error, file=sys.stderr)
        sys.exit(2)
    described = {"counted_by": served.counted_by, "json_path": served.json_path}
    print(CHECK_PREFIX + json.dumps(described), flush=True)
