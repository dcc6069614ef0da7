"""The background reporter: one snapshot per interval, handed to every sink.

It runs on a daemon thread so that nothing slow (psutil, formatting, file or network I/O,
plugin code) ever happens on the request path. Ticks are scheduled on a fixed grid from the
start time, so the interval does not drift by the time a report takes; a tick missed because a
sink was slow is skipped, not made up in a burst.
"""

from __future__ import annotations

import logging
import threading
import time

from concmon.monitor import ConcurrencyMonitor
from concmon.plugins import PluginHost
from concmon.snapshot import Snapshot, SystemStats
from concmon.system import SystemSampler

logger = logging.getLogger("concmon")


class Reporter:
    """Owns the reporting thread of one monitor."""

    def __init__(
        self,
        monitor: ConcurrencyMonitor,
        plugins: PluginHost,
        interval: float,
        sampler: SystemSampler | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("the report interval must be greater than 0")
        self.monitor = monitor
        self.plugins = plugins
        self.interval = interval
        self.sampler = sampler
        self.reports = 0
        self._stop = threading.Event()
        self._report_lock = threading.Lock()
        self._thread: threading.Thread | None = None

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

    def report_now(self) -> Snapshot:
        """Close the current interval and hand its snapshot to every sink."""
        with self._report_lock:
            snapshot = self.monitor.report_snapshot(self._system())
            self.plugins.report(snapshot)
            self.reports += 1
            return snapshot

    def _run(self) -> None:
        next_at = time.monotonic() + self.interval
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            try:
                self.report_now()
            except Exception:
                logger.exception("concmon: a report failed; reporting goes on")
            next_at += self.interval
            now = time.monotonic()
            if next_at <= now:
                next_at = now + self.interval

    def stop(self, timeout: float | None = None) -> Snapshot:
        """Stop the thread, then give every sink the final snapshot (``concmon_shutdown``)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.interval + 5.0 if timeout is None else timeout)
        self._thread = None
        with self._report_lock:
            snapshot = self.monitor.report_snapshot(self._system())
            self.plugins.shutdown(snapshot)
        return snapshot

    def restart_after_fork(self) -> None:
        """In a forked child the thread object is stale; start a fresh one."""
        self._thread = None
        self._report_lock = threading.Lock()
        self.start()
