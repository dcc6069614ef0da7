"""This process's CPU, memory, threads and open files: the one place concmon reads psutil.

The reporter asks for :class:`SystemStats` (CPU as a percentage of the report interval); the
exporters ask for :class:`ProcessStats` (CPU as seconds since start, memory in bytes), which
their counters and gauges need. Both come from one :class:`SystemSampler`. Each figure is read on
its own: where the platform or a permission refuses one, that field is ``None`` and the others
are still reported. Nothing here runs on the request path.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import psutil

from concmon.snapshot import SystemStats

T = TypeVar("T")

MIB = 1024 * 1024


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
    """Reads this process's figures; safe from several threads, and follows ``fork()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = -1
        self._process: psutil.Process | None = None

    def _current(self) -> psutil.Process | None:
        pid = os.getpid()
        with self._lock:
            if pid != self._pid:  # a forked child must not report its parent's figures
                self._pid = pid
                process = self._process = _read(lambda: psutil.Process(pid))
                if process is not None:
                    _read(lambda: process.cpu_percent(None))  # starts the percentage's interval
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
        """The snapshot's figures; CPU percent covers the time since the previous sample."""
        process = self._current()
        if process is None:
            return SystemStats()
        cpu = _read(lambda: process.cpu_percent(None))
        stats = self.read()
        return SystemStats(
            cpu_percent=round(cpu, 1) if cpu is not None else None,
            memory_mb=round(stats.memory_bytes / MIB, 1)
            if stats.memory_bytes is not None
            else None,
            threads=stats.threads,
            open_fds=stats.open_fds,
        )
