"""This process's CPU, memory, threads and open files: the one place concmon reads psutil.

The reporter asks for :class:`SystemStats` (CPU as a percentage of the report interval); the
exporters ask for :class:`ProcessStats` (CPU as seconds since start, memory in bytes), which
their counters and gauges need. Both come from one :class:`SystemSampler`. Each figure is read on
its own: where the platform or a permission refuses one, that field is ``None`` and the others
are still reported. Nothing here runs on the request path.

The CPU percentage is CPU time over wall time, and the kernel counts CPU time in clock ticks:
over a window of a few ticks one tick more or less is tens of percent, so a window shorter than
:data:`MIN_CPU_WINDOW` gives ``None`` (unavailable) rather than a figure no process can reach,
and no figure is ever above 100 times the number of CPUs.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import psutil

from concmon.snapshot import SystemStats

T = TypeVar("T")

MIB = 1024 * 1024

MIN_CPU_WINDOW = 0.1
"""The shortest window, in seconds, a CPU percentage is given for (ten ticks of a 100 Hz clock)."""


def _read(fn: Callable[[], T]) -> T | None:
    try:
        return fn()
    except (psutil.Error, OSError, AttributeError, NotImplementedError):
        return None


@dataclass(frozen=True, slots=True)
class ProcessStats:
    """Lifetime CPU time and the current size of this process; ``None`` where unreadable."""

    cpu_seconds: float | None = None
    memory_bytes: int | None = None
    threads: int | None = None
    open_fds: int | None = None


class SystemSampler:
    """Reads this process's figures; safe from several threads, and follows ``fork()``.

    ``clock`` gives the wall time the CPU percentage is measured against (monotonic seconds).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._pid = -1
        self._process: psutil.Process | None = None
        # Where the current CPU window starts: (wall time, CPU seconds), None before a reading.
        self._cpu_start: tuple[float, float] | None = None
        self._cpus = psutil.cpu_count() or os.cpu_count() or 1

    def _current(self) -> psutil.Process | None:
        pid = os.getpid()
        with self._lock:
            if pid != self._pid:  # a forked child must not report its parent's figures
                self._pid = pid
                process = self._process = _read(lambda: psutil.Process(pid))
                times = _read(process.cpu_times) if process is not None else None
                # The first window starts here.
                self._cpu_start = (
                    (self._clock(), times.user + times.system) if times is not None else None
                )
            return self._process

    def read(self) -> ProcessStats:
        """CPU seconds (user + system), resident memory, threads and descriptors, now."""
        process = self._current()
        if process is None:
            return ProcessStats()
        with process.oneshot():
            times = _read(process.cpu_times)
            return ProcessStats(
                cpu_seconds=times.user + times.system if times is not None else None,
                memory_bytes=_read(lambda: process.memory_info().rss),
                threads=_read(process.num_threads),
                open_fds=_read(process.num_fds) if hasattr(process, "num_fds") else None,
            )

    def sample(self) -> SystemStats:
        """The snapshot's figures; CPU percent covers the time since the previous sample, and
        is ``None`` for the first sample and for a window shorter than :data:`MIN_CPU_WINDOW`
        (which then stays open: the next sample covers it)."""
        process = self._current()
        if process is None:
            return SystemStats()
        stats = self.read()
        return SystemStats(
            cpu_percent=self._cpu_percent(stats.cpu_seconds),
            memory_mb=round(stats.memory_bytes / MIB, 1)
            if stats.memory_bytes is not None
            else None,
            threads=stats.threads,
            open_fds=stats.open_fds,
        )

    def _cpu_percent(self, cpu_seconds: float | None) -> float | None:
        if cpu_seconds is None:
            return None
        now = self._clock()
        with self._lock:
            start = self._cpu_start
            if start is None or now < start[0] or cpu_seconds < start[1]:
                self._cpu_start = (now, cpu_seconds)
                return None
            window = now - start[0]
            if window < MIN_CPU_WINDOW:
                return None
            self._cpu_start = (now, cpu_seconds)
        percent = (cpu_seconds - start[1]) / window * 100.0
        return round(min(percent, 100.0 * self._cpus), 1)
