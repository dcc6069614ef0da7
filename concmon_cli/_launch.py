"""The import string uvicorn loads in every worker: the user's app, wrapped by concmon.

``uvicorn --workers N`` and ``--reload`` start fresh processes that import the application by
name, so an object built in the launching process cannot be handed over. ``concmon-cli run``
puts the target (``module:attribute``) and its directory in the environment and points uvicorn
at ``concmon_cli._launch:app``; each worker then imports the target and wraps it here, and the
user's code is never changed.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Final

from concmon_cli.errors import CliError

APP_ENV: Final = "CONCMON_LAUNCH_APP"
DIR_ENV: Final = "CONCMON_LAUNCH_DIR"
JSON_PATH_ENV: Final = "CONCMON_LAUNCH_JSON_PATH"
DEFAULT_JSON_PATH: Final = "/concurrency"


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


def wrap(target: Any, json_path: str | None = DEFAULT_JSON_PATH) -> Any:
    """The target inside concmon's ASGI middleware, serving the snapshot at ``json_path``."""
    try:
        from concmon_fastapi import ConcMonMiddleware
    except ImportError as exc:
        message = f"the ASGI adapter cannot be imported ({exc}): pip install 'concmon[cli]'"
        raise CliError(message) from None
    return ConcMonMiddleware(target, json_path=json_path or None)


def build_from_environment() -> Any:
    spec = os.environ.get(APP_ENV)
    if not spec:
        raise CliError(f"{APP_ENV} is not set: start the app with `concmon-cli run module:app`")
    json_path = os.environ.get(JSON_PATH_ENV, DEFAULT_JSON_PATH)
    return wrap(load_target(spec, os.environ.get(DIR_ENV)), json_path)


def __getattr__(name: str) -> Any:
    # Built on first access, so importing this module for its helpers has no side effect.
    if name == "app":
        application = build_from_environment()
        globals()["app"] = application
        return application
    raise AttributeError(name)


if __name__ == "__main__":
    # `python -m concmon_cli._launch`: check in a throw-away process that the target imports.
    try:
        build_from_environment()
    except CliError as error:
        print(error, file=sys.stderr)
        sys.exit(2)
