"""The ``jsonl`` sink: one ``concmon.snapshot/2`` JSON object per line.

Each line carries the whole snapshot, distributions with every bucket count included, so a
reader adds workers up or takes percentiles exactly as from the live endpoint.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from concmon.hookspecs import hookimpl
from concmon.sinks.appendfile import AppendFile
from concmon.snapshot import Snapshot

if TYPE_CHECKING:
    from concmon.settings import Settings


def snapshot_line(snapshot: Snapshot) -> str:
    """The JSON line for ``snapshot``; ASCII-only so a line can never be split by a name."""
    return json.dumps(snapshot.to_dict(), ensure_ascii=True, separators=(",", ":")) + "\n"


class JsonLinesSink:
    """Appends each snapshot to ``CONCMON_JSONL_FILE`` with one write per line."""

    name = "jsonl"

    def __init__(self) -> None:
        self.file: AppendFile | None = None

    @hookimpl
    def concmon_configure(self, settings: Settings) -> None:
        self.file = AppendFile(
            settings.jsonl_file, settings.log_max_bytes, settings.log_backup_count
        )

    @hookimpl
    def concmon_report(self, snapshot: Snapshot) -> None:
        if self.file is not None:
            self.file.write(snapshot_line(snapshot))

    @hookimpl
    def concmon_shutdown(self, snapshot: Snapshot) -> None:
        if self.file is not None:
            try:
                self.file.write(snapshot_line(snapshot))
            finally:
                self.file.close()
