"""CPU percent from real psutil readings: never above 100 x the CPUs, None over a short window.

CPU time is counted in clock ticks, so a report a few milliseconds after the previous one
once showed 538.6 % for a process on two cores; such a window now says "unavailable".
"""

from __future__ import annotations

import time

import psutil
import pytest

from concmon.system import MIN_CPU_WINDOW, SystemSampler
from concmon.testing import FakeClock

CPUS = psutil.cpu_count() or 1
BURN_LIMIT = 20.0  # wall seconds any CPU burn below may take, whatever the machine's load


def _cpu_seconds() -> float:
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


def _burn_cpu(seconds: float) -> None:
    """Spend ``seconds`` of this process's CPU time (bounded in wall time)."""
    start = _cpu_seconds()
    deadline = time.monotonic() + BURN_LIMIT
    while _cpu_seconds() - start < seconds:
        sum(i * i for i in range(20_000))
        if time.monotonic() > deadline:
            pytest.skip("the machine gave this process too little CPU to test with")


def test_a_sample_right_after_another_gives_no_cpu_figure() -> None:
    """Two samples milliseconds apart: the second's CPU percent is None, not a figure made
    from a tick or two, and the other figures are still read."""
    clock = FakeClock()  # the window is what the clock says, however slow the machine is
    sampler = SystemSampler(clock)
    sampler.sample()
    _burn_cpu(0.02)  # a tick or two of real CPU time...
    clock.advance(MIN_CPU_WINDOW / 10)  # ...inside a window far shorter than MIN_CPU_WINDOW
    quick = sampler.sample()
    assert quick.cpu_percent is None
    assert quick.memory_mb is not None and quick.threads is not None


def test_a_short_window_stays_open_for_the_next_sample() -> None:
    """A window too short for a figure is not thrown away: the next sample covers it, and
    gives a figure once the window is long enough."""
    clock = FakeClock()
    sampler = SystemSampler(clock)
    sampler.sample()
    clock.advance(MIN_CPU_WINDOW / 2)
    assert sampler.sample().cpu_percent is None
    clock.advance(MIN_CPU_WINDOW)
    later = sampler.sample().cpu_percent
    assert later is not None and 0.0 <= later <= 100.0 * CPUS


@pytest.mark.skipif(CPUS > 8, reason="filling the window's CPU bound would take too long")
def test_cpu_percent_is_never_above_100_times_the_cpus() -> None:
    """More CPU time than the window and the CPUs allow (a coarse clock's rounding): the
    figure is capped at 100 x the number of CPUs."""
    clock = FakeClock()
    sampler = SystemSampler(clock)
    sampler.sample()
    _burn_cpu(MIN_CPU_WINDOW * CPUS * 1.5)
    clock.advance(MIN_CPU_WINDOW)
    assert sampler.sample().cpu_percent == 100.0 * CPUS


def test_a_long_enough_window_gives_a_real_figure() -> None:
    """With the real clock, a window past MIN_CPU_WINDOW spent busy gives a figure between
    0 and 100 x the CPUs."""
    sampler = SystemSampler()
    sampler.sample()
    deadline = time.monotonic() + MIN_CPU_WINDOW * 1.5
    while time.monotonic() < deadline:
        sum(i * i for i in range(20_000))
    busy = sampler.sample().cpu_percent
    assert busy is not None and 0.0 <= busy <= 100.0 * CPUS
