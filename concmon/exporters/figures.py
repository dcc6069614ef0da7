"""This process's figures now, as the pull exporters read them at scrape or collection time.

A scrape reads the monitor live, never a copy of the last report: its snapshot, its lifetime
queue waits and limit, and the process figures from :mod:`concmon.system`. Several processes'
figures are added up by :func:`concmon.host.combine`, never here.
"""

from __future__ import annotations

from concmon.host import Figures
from concmon.monitor import ConcurrencyMonitor
from concmon.snapshot import SystemStats
from concmon.system import MIB, SystemSampler

_sampler = SystemSampler()


def live_figures(monitor: ConcurrencyMonitor, *, process: bool = True) -> Figures:
    """This process's figures, read from ``monitor`` (and with psutil when ``process``)."""
    stats = _sampler.read() if process else None
    system = None
    if stats is not None:
        system = SystemStats(
            # Not rounded: exact bytes for the exporters (a power-of-two division is exact).
            memory_mb=stats.memory_bytes / MIB if stats.memory_bytes is not None else None,
            threads=stats.threads,
            open_fds=stats.open_fds,
        )
    return Figures(
        monitor.snapshot(system),
        queue_waits=monitor.queue_wait_totals(),
        cpu_seconds=stats.cpu_seconds if stats is not None else None,
        limit=monitor.max_concurrency,
    )
