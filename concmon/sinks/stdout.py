"""The ``stdout`` sink: the tagged report lines on standard output, for containers."""

from __future__ import annotations

import sys

from concmon.hookspecs import hookimpl
from concmon.logformat import format_report
from concmon.snapshot import Snapshot


class StdoutSink:
    """Writes each report to ``sys.stdout`` and flushes, so log collectors see it at once."""

    name = "stdout"

    @hookimpl
    def concmon_report(self, snapshot: Snapshot) -> None:
        sys.stdout.write(format_report(snapshot))
        sys.stdout.flush()

    @hookimpl
    def concmon_shutdown(self, snapshot: Snapshot) -> None:
        self.concmon_report(snapshot)
