"""``install(app)``: one line that wires concmon into a FastAPI or Starlette application."""

from __future__ import annotations

import logging
from typing import Any, Unpack

from concmon import ConfigError
from concmon_fastapi.middleware import ConcMonMiddleware, InstallOptions, MiddlewareState
from concmon_fastapi.options import Options

logger = logging.getLogger("concmon")


def install(app: Any, **options: Unpack[InstallOptions]) -> None:
    """Add :class:`ConcMonMiddleware` to ``app`` (a FastAPI or Starlette application).

    The options are checked here, so a bad value fails while the application is assembled,
    with one line naming it. Calling ``install`` again on the same application changes
    nothing: the middleware is registered once and counts each request once.
    """
    user_middleware = getattr(app, "user_middleware", None)
    if not isinstance(user_middleware, list) or not hasattr(app, "add_middleware"):
        raise ConfigError(
            "concmon_fastapi: install() takes a FastAPI or Starlette application; wrap any "
            f"other ASGI application as ConcMonMiddleware(app) instead (got {type(app).__name__})"
        )
    state = MiddlewareState(Options.parse(options))
    if any(getattr(m, "cls", None) is ConcMonMiddleware for m in user_middleware):
        logger.debug("concmon: install() called again on the same application; nothing to do")
        return
    try:
        app.add_middleware(ConcMonMiddleware, state=state)
    except RuntimeError as exc:
        raise ConfigError(
            f"concmon_fastapi: install() must run before the application starts serving ({exc})"
        ) from None
