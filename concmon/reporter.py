"""The background reporter: one snapshot per interval, handed to every sink.

It runs on a daemon thread so that nothing slow (psutil, formatting, file or network I/O,
plugin code) ever happens on the request path. The first report is made as soon as the thread
starts, so a reader (``concmon-cli watch``) sees the app at once rather than one interval later;
the following ticks are on a fixed grid from that start, so the interval does not drift by the
time a report takes; a tick missed because a sink was slow is skipped, not made up in a burst.

Sinks are called on threads of their own (``concmon.delivery``): a report waits for a sink only
up to a bound, so a sink that blocks delays only itself, and :meth:`Reporter.stop` finishes
within ``CONCMON_SHUTDOWN_TIMEOUT`` with the other sinks' final reports written.

A ``fork()`` waits for the report in flight and every sink call in flight. Sinks write under
locks of their own (a thread lock, the log file's size-rotation ``flock``); a child forked in
the middle of a write would inherit them held by a thread that does not exist there, and the
inherited ``flock`` would stop every process sharing the file, the parent included.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING

from concmon import plugins as plugin_hosts
from concmon.monitor import ConcurrencyMonitor
from concmon.plugins import PluginHost
from concmon.snapshot import Snapshot, SystemStats

if TYPE_CHECKING:
    from concmon.system import SystemSampler

logger = logging.getLogger("concmon")

FORK_WAIT_S = 10.0
"""How long a fork waits for a report in flight; a sink stuck longer than this is not waited
for (the child still gets a fresh report lock)."""


def next_tick(due: float, now: float, interval: float) -> float:
    """When the report after the one that was ``due`` is due, read at ``now``.

    On the grid (``due + interval``) while the reports keep up; a report that ran past its
    successor's time skips that tick rather than making it up in a burst.
    """
    following = due + interval
    return following if following > now else now + interval


class Reporter:
    """Owns the reporting thread of one monitor."""

    def __init__(
        self,
        monitor: ConcurrencyMonitor,
        plugins: PluginHost,
        interval: float,
        sampler: SystemSampler | None = None,
        shutdown_timeout: float = 5.0,
    ) -> None:
        if interval <= 0:
            raise ValueError("the report interval must be greater than 0")
        if shutdown_timeout <= 0:
            raise ValueError("the shutdown timeout must be greater than 0")
        self.monitor = monitor
        self.plugins = plugins
        self.interval = interval
        self.sampler = sampler
        self.shutdown_timeout = shutdown_timeout
        self.reports = 0
        self.reported_at_start = threading.Event()
        """Set once the thread's first report (made as it starts) reached the sinks or failed."""
        self._stop = threading.Event()
        self._report_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        _REPORTERS.add(self)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="concmon-reporter", daemon=True)
        self._thread.start()

    def _system(self) -> SystemStats | None:
        return self.sampler.sample() if self.sampler is not None else None

    @property
    def sink_wait(self) -> float:
        """How long a report waits for a sink: within the interval, and short enough to leave
        a shutdown that lands meanwhile time for the final reports."""
        return min(self.interval, self.shutdown_timeout / 2)

    def report_now(self) -> Snapshot:
        """Close the current interval and hand its snapshot to every sink.

        Returns once every sink has written it, or after :attr:`sink_wait` for one that has
        not (that sink is then late: logged and counted under ``sink_errors``).
        """
        with self._report_lock:
            snapshot = self.monitor.report_snapshot(self._system())
            self.plugins.report(snapshot, self.sink_wait)
            self.reports += 1
            return snapshot

    def _run(self) -> None:
        next_at = time.monotonic()  # the start report: due at once
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            try:
                self.report_now()
            except Exception:
                logger.exception("concmon: a report failed; reporting goes on")
            self.reported_at_start.set()
            next_at = next_tick(next_at, time.monotonic(), self.interval)

    def stop(self, timeout: float | None = None) -> Snapshot:
        """Stop the thread, then give every sink the final snapshot (``concmon_shutdown``).

        Returns within ``timeout`` seconds (default :attr:`shutdown_timeout`) whatever the
        sinks do; a sink that has not finished by then is named in one error line.
        """
        limit = self.shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
        self._thread = None
        # The report in flight normally ends within sink_wait; past the deadline the final
        # snapshot is taken without it (the monitor's own lock keeps the snapshot consistent).
        locked = self._report_lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
        try:
            snapshot = self.monitor.report_snapshot(self._system())
        finally:
            if locked:
                self._report_lock.release()
        self.plugins.shutdown(snapshot, max(0.0, deadline - time.monotonic()))
        return snapshot

    def restart_after_fork(self) -> None:
        """In a forked child the thread object is stale; start a fresh one."""
        self._thread = None
        self.start()


_REPORTERS: weakref.WeakSet[Reporter] = weakref.WeakSet()
_held: list[threading.Lock] = []


def before_fork() -> None:
    """Wait for the reports in flight, so no sink lock is inherited held."""
    for reporter in list(_REPORTERS):
        if reporter._thread is threading.current_thread():
            continue  # a sink forking from inside a report: waiting would deadlock
        lock = reporter._report_lock
        if lock.acquire(timeout=FORK_WAIT_S):
            _held.append(lock)
    plugin_hosts.before_fork(time.monotonic() + FORK_WAIT_S)


def after_fork_in_parent() -> None:
    plugin_hosts.after_fork_in_parent()
    while _held:
        _held.pop().release()


def after_fork_in_child() -> None:
    plugin_hosts.after_fork_in_child()
    _held.clear()
    for reporter in list(_REPORTERS):
        reporter._report_lock = threading.Lock()
