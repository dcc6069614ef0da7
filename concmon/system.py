"""Process figures (CPU, memory, threads, open files) read with psutil on the reporter thread.

Each figure is read on its own: where the platform or a permission refuses one, that field is
``None`` and the others are still reported.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import psutil

from concmon.snapshot import SystemStats

T = TypeVar("T")


def _read(fn: Callable[[], T]) -> T | None:
    try:
        return fn()
    except (psutil.Error, OSError, AttributeError, NotImplementedError):
        return None


class SystemSampler:
    """Reads this process's figures; CPU percent covers the time since the previous reading."""

    def __init__(self) -> None:
        self._pid = -1
        self._process: psutil.Process | None = None

    def _current(self) -> psutil.Process | None:
        pid = os.getpid()
        if pid != self._pid:  # a forked child must not report its parent's figures
            self._pid = pid
            self._process = _read(lambda: psutil.Process(pid))
            if self._process is not None:
                _read(lambda: self._process.cpu_percent(None) if self._process else None)
        return self._process

    def sample(self) -> SystemStats:
        process = self._current()
        if process is None:
            return SystemStats()
        cpu = _read(lambda: process.cpu_percent(None))
        rss = _read(lambda: process.memory_info().rss)
        return SystemStats(
            cpu_percent=round(cpu, 1) if cpu is not None else None,
            memory_mb=round(rss / (1024 * 1024), 1) if rss is not None else None,
            threads=_read(process.num_threads),
            open_fds=_read(process.num_fds) if hasattr(process, "num_fds") else None,
        )
