"""The ``logfile`` sink: the tagged, greppable report lines of docs/log-format.md."""

from __future__ import annotations

from typing import TYPE_CHECKING

from concmon.hookspecs import hookimpl
from concmon.logformat import format_report
from concmon.sinks.appendfile import AppendFile
from concmon.snapshot import Snapshot

if TYPE_CHECKING:
    from concmon.settings import Settings


class LogFileSink:
    """Appends three tagged lines per report to ``CONCMON_LOG_FILE``, rotating by size."""

    name = "logfile"

    def __init__(self) -> None:
        self.file: AppendFile | None = None

    @hookimpl
    def concmon_configure(self, settings: Settings) -> None:
        self.file = AppendFile(settings.log_file, settings.log_max_bytes, settings.log_backup_count)

    @hookimpl
    def concmon_report(self, snapshot: Snapshot) -> None:
        if self.file is not None:
            self.file.write(format_report(snapshot))

    @hookimpl
    def concmon_shutdown(self, snapshot: Snapshot) -> None:
        if self.file is not None:
            try:
                self.file.write(format_report(snapshot))
            finally:
                self.file.close()
