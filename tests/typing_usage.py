"""Public-API usage that exists to be type-checked (tests/test_quality.py runs mypy on it).

If a change to the public surface breaks how users are expected to call it, mypy fails here.
"""

from __future__ import annotations

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
