"""Background tasks counted on their own, by function name, in the snapshot's ``background``.

Starlette (and FastAPI, whose ``BackgroundTasks`` runs each task through Starlette's
``BackgroundTask``) runs background tasks after the response's last byte has been sent, in the
same ASGI call. The middleware ends the request at that last byte, so a slow job never inflates
the request's figures; this module makes the job itself visible: ``BackgroundTask.__call__`` is
wrapped once per process so every task is active in ``background[<function name>]`` while it
runs, and failed or cancelled like a request when it raises.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from concmon import get_monitor, outcome_for

_MARK = "__concmon_counted__"


def task_name(func: Any) -> str:
    """A bounded name for a task: its function's qualified name (one series per function)."""
    target = func.func if isinstance(func, functools.partial) else func
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    return str(name)


def count_background_tasks() -> bool:
    """Wrap Starlette's ``BackgroundTask`` once; returns False when Starlette is absent."""
    try:
        from starlette.background import BackgroundTask
    except ImportError:
        return False
    original: Callable[[Any], Awaitable[None]] = BackgroundTask.__call__
    if getattr(original, _MARK, False):
        return True

    @functools.wraps(original)
    async def counted(self: Any) -> None:
        ticket = get_monitor().background.begin(task_name(self.func))
        try:
            await original(self)
        except BaseException as exc:
            ticket.finish(outcome_for(type(exc)))
            raise
        ticket.finish()

    setattr(counted, _MARK, True)
    BackgroundTask.__call__ = counted  # type: ignore[method-assign]
    return True
