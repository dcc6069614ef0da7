"""``manage.py check``: warnings for a middleware missing or not first, and for bad options.

The middleware must come first in ``MIDDLEWARE`` to see every request from its start (another
middleware answering early, a redirect, an exception in one) and to count the time the others
take. An app missing from ``INSTALLED_APPS`` cannot be seen from here (Django loads nothing of
it before the checks run), so the middleware warns about that once, when it is built.
"""

from __future__ import annotations

from typing import Any, Final

from django.core import checks

MIDDLEWARE_PATH: Final = "concmon_django.middleware.ConcMonMiddleware"
TAG: Final = "concmon"


def middleware_problems(middleware: list[str] | tuple[str, ...]) -> list[checks.CheckMessage]:
    """The warnings ``settings.MIDDLEWARE`` deserves."""
    if MIDDLEWARE_PATH not in middleware:
        return [
            checks.Warning(
                f"{MIDDLEWARE_PATH} is not in MIDDLEWARE: no request is counted.",
                hint=f"Add {MIDDLEWARE_PATH!r} as the first entry of MIDDLEWARE.",
                id="concmon_django.W001",
            )
        ]
    if middleware[0] != MIDDLEWARE_PATH:
        return [
            checks.Warning(
                f"{MIDDLEWARE_PATH} is not the first entry of MIDDLEWARE: requests answered "
                f"by {middleware[0]} or by those before it are not counted, and their time is "
                "not in the latency.",
                hint="Move it to the top of MIDDLEWARE.",
                id="concmon_django.W002",
            )
        ]
    return []


def check_setup(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The registered check: the middleware's place and the ``CONCMON`` options."""
    from django.conf import settings

    from concmon_django.adapter import problem

    found = middleware_problems(list(getattr(settings, "MIDDLEWARE", None) or ()))
    trouble = problem()
    if trouble is not None:
        found.append(
            checks.Warning(
                f"concmon is switched off: {trouble}",
                hint="Fix settings.CONCMON (docs/django.md lists every option).",
                id="concmon_django.W003",
            )
        )
    return found


def register() -> None:
    """Register :func:`check_setup` (once, however often it is called)."""
    checks.register(check_setup, TAG)
