"""Public-API usage that exists to be type-checked (tests/test_quality.py runs mypy on it).

If a change to the public surface breaks how users are expected to call it, mypy fails here.
"""

from __future__ import annotations

from typing import Any

import concmon
from concmon import ConcurrencyMonitor, Outcome, Snapshot, get_monitor, track_task
from concmon.snapshot import SnapshotDict


@track_task("/typed")
def typed_sync(x: int) -> int:
    return x + 1


@track_task("/typed-async")
async def typed_async(x: str) -> str:
    return x


def usage() -> None:
    monitor: ConcurrencyMonitor = get_monitor()
    ticket = monitor.begin("/x")
    finished: bool = ticket.finish(Outcome.FAILED)
    monitor.increment_task("/y")
    balanced: bool = monitor.decrement_task("/y", success=False)
    with monitor.track("/z"), monitor.queued("/z", source="gate"):
        pass
    snap: Snapshot = monitor.snapshot()
    data: SnapshotDict = snap.to_dict()
    again: Snapshot = Snapshot.from_dict(data)
    doubled: int = typed_sync(1)
    assert finished and balanced and again.active >= 0 and doubled == 2
    settings: concmon.Settings = concmon.load_settings(update_interval=1.0)
    assert settings.update_interval == 1.0


def adapters_usage(asgi_app: Any, quart_app: Any) -> None:
    """The ready-made resolvers, the Django test helper and the Django options, as documented."""
    from concmon_django import Options
    from concmon_django.testing import capture_reports
    from concmon_fastapi import ConcMonMiddleware
    from concmon_fastapi.resolvers import litestar_name, quart_name_for

    ConcMonMiddleware(asgi_app, name_for=litestar_name)
    ConcMonMiddleware(quart_app, name_for=quart_name_for(quart_app))
    options: Options = Options.parse({"naming": "view", "update_interval": 1.0})
    assert options.naming in ("route", "view")
    with capture_reports() as reports:
        report: Snapshot = reports.report()
        assert report.active >= 0
