"""Testing a Django project that counts with concmon: the reports, from inside ``django.test``.

``capture_reports()`` hands every report of the process monitor to a
:class:`concmon.testing.CapturingSink` while it is open; ``report()`` makes one now (no waiting
for the reporter's interval) and checks it against concmon's accounting rules::

    from concmon_django.testing import capture_reports

    class ItemTests(TestCase):
        def test_item_is_counted(self):
            with capture_reports() as reports:
                self.client.get("/api/items/7/")
                snapshot = reports.report()
            assert snapshot.endpoints["api/items/<int:pk>/"].completed == 1

A report closes the interval, like the reporter's own reports; the totals are the process's
since it started, so compare a report with one taken before the requests under test.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator

from concmon import Runtime, Snapshot, get_runtime, init_monitor
from concmon.testing import CapturingSink, check_invariants

_names = itertools.count(1)


class Reports:
    """The reports captured so far (``sink.reports``) and a way to make one now."""

    def __init__(self, runtime: Runtime, sink: CapturingSink) -> None:
        self._runtime = runtime
        self.sink = sink

    def report(self) -> Snapshot:
        """Report now; the snapshot, checked with :func:`concmon.testing.check_invariants`,
        once the sink has it."""
        count = len(self.sink.reports)
        snapshot = self._runtime.reporter.report_now()
        self.sink.wait_for(count + 1)
        return check_invariants(snapshot)


@contextlib.contextmanager
def capture_reports() -> Iterator[Reports]:
    """Capture the process monitor's reports while the block runs (the monitor is started,
    without its reporter thread, if nothing has started it)."""
    runtime = get_runtime()
    if runtime is None:
        init_monitor(start_reporter=False)
        runtime = get_runtime()
    assert runtime is not None
    sink = CapturingSink()
    name = f"concmon_django.testing.{next(_names)}"
    runtime.plugins.register(sink, name)
    try:
        yield Reports(runtime, sink)
    finally:
        runtime.plugins.unregister(name)


__all__ = ["Reports", "capture_reports"]
