"""``install(app)``: one line that wires concmon into a FastAPI or Starlette application.

:func:`installed_options` answers the converse question for launchers (``concmon-cli run``):
does this application already count itself, and with which options?
"""

from __future__ import annotations

import logging
from typing import Any, Final, Unpack

from concmon import ConfigError
from concmon_fastapi.middleware import ConcMonMiddleware, InstallOptions, MiddlewareState
from concmon_fastapi.options import Options

logger = logging.getLogger("concmon")

_WRAPPERS_WALKED: Final = 16
"""How many ``.app`` links (middleware wrapping the application) ``installed_options`` follows."""


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


def installed_options(app: Any) -> Options | None:
    """The options of the concmon middleware ``app`` already has, None when it has none.

    ``app`` has it when it is a :class:`ConcMonMiddleware`, or lists one in its
    ``user_middleware`` (``install()`` or ``add_middleware``); middleware wrapping it by hand
    is looked through by its ``app`` attribute. Nothing is built or started.
    """
    node = app
    for _ in range(_WRAPPERS_WALKED):
        if isinstance(node, ConcMonMiddleware):
            return node._state.options
        user_middleware = getattr(node, "user_middleware", None)
        if isinstance(user_middleware, list):
            for entry in user_middleware:
                if getattr(entry, "cls", None) is ConcMonMiddleware:
                    kwargs = dict(getattr(entry, "kwargs", None) or {})
                    state = kwargs.pop("state", None)
                    if isinstance(state, MiddlewareState):
                        return state.options
                    return Options.parse(kwargs)
        node = getattr(node, "app", None)
        if node is None:
            return None
    return None
