"""MONITOR_UPDATE_INTERVAL accepts only what the reporter can sleep: more than 0, at most a day.

An infinite interval used to kill the reporter thread with a traceback, and 1e9 seconds meant
no report for decades; both are refused by name, with the one error line of a bad setting.
"""

from __future__ import annotations

import logging
import threading

import pytest

from concmon import ConfigError, get_runtime, init_monitor
from concmon.settings import MAX_UPDATE_INTERVAL

UNUSABLE = ["inf", "-inf", "nan", "1e9", "86400.5"]


def _reporter_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "concmon" in t.name and t.is_alive()]


@pytest.mark.parametrize("value", UNUSABLE)
def test_an_interval_the_reporter_cannot_use_switches_concmon_off_with_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    """inf, NaN or more than a day: one error line naming the variable and its range, no
    reporter thread started, no traceback."""
    monkeypatch.setenv("MONITOR_UPDATE_INTERVAL", value)
    before = set(_reporter_threads())
    with caplog.at_level(logging.WARNING, logger="concmon"):
        monitor = init_monitor(sinks=())
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    message = errors[0].getMessage()
    assert f"MONITOR_UPDATE_INTERVAL='{value}'" in message
    assert "at most 86400" in message and "switched off" in message
    assert errors[0].exc_info is None
    assert not monitor.enabled
    runtime = get_runtime()
    assert runtime is not None and not runtime.reporter.running
    assert set(_reporter_threads()) <= before


@pytest.mark.parametrize("value", [float("inf"), float("nan"), MAX_UPDATE_INTERVAL * 2])
def test_an_unusable_interval_given_in_code_is_refused_when_strict(
    monkeypatch: pytest.MonkeyPatch, value: float
) -> None:
    """init_monitor(update_interval=inf) under CONCMON_STRICT=1: a ConfigError naming the
    field, before anything starts."""
    monkeypatch.setenv("CONCMON_STRICT", "1")
    with pytest.raises(ConfigError, match=r"update_interval|MONITOR_UPDATE_INTERVAL"):
        init_monitor(sinks=(), update_interval=value)
    assert get_runtime() is None


def test_a_day_is_the_longest_interval_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """MONITOR_UPDATE_INTERVAL=86400 is accepted and the reporter runs with it."""
    monkeypatch.setenv("MONITOR_UPDATE_INTERVAL", "86400")
    monitor = init_monitor(sinks=())
    runtime = get_runtime()
    assert runtime is not None and runtime.settings.update_interval == MAX_UPDATE_INTERVAL
    assert monitor.enabled and runtime.reporter.running
