"""The contract between concmon and its plugins: every hook a plugin may implement.

Hooks are called off the request path (reports on a thread of the plugin's own, configuration
at start-up), so an implementation may do I/O. Each implementation is called on its own: one
that raises is logged (rate limited), counted under ``sink_errors`` in the next snapshots, and
the others still run. Implement a hook by decorating a method or module function with
``concmon.hookimpl`` and giving it the hook's name; arguments may be omitted from the signature.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from concmon.monitor import ConcurrencyMonitor
    from concmon.settings import Settings
    from concmon.snapshot import Snapshot

PROJECT_NAME = "concmon"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def concmon_configure(settings: Settings, monitor: ConcurrencyMonitor) -> None:
    """Called once, when the plugin is registered by :func:`concmon.init_monitor`.

    :param settings: the validated settings; a sink reads its file path and rotation from here.
    :param monitor: the process's monitor, for plugins that read live state on demand (an
        exporter scraped between two reports). Keep a reference; do not count from a plugin.

    Raising here disables the plugin for this process, with a logged error; counting goes on.
    """


@hookspec
def concmon_report(snapshot: Snapshot) -> None:
    """Called once per interval with the snapshot that closed the interval.

    :param snapshot: immutable; its interval figures (``interval_peak``, ``avg_active``,
        ``avg_ms``, queue waits) describe the interval that just ended.

    The return value is ignored. Called on the plugin's own thread: a slow implementation
    delays only its own reports (a report it is late for is counted under ``sink_errors``).
    """


@hookspec
def concmon_shutdown(snapshot: Snapshot) -> None:
    """Called once when the monitor shuts down, with the final snapshot.

    Write the final report, flush and close files here. ``concmon_report`` is not called for
    this snapshot.
    """
