"""Shared fixtures: every test starts from a clean environment and no process-wide monitor."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from concmon import ConcurrencyMonitor
from concmon.runtime import _reset_for_tests

_OURS = ("ENABLE_CONCURRENCY_MONITOR", "MONITOR_UPDATE_INTERVAL", "DEBUG", "LOG_LEVEL")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]) -> Iterator[None]:
    """No concmon variable leaks in from the machine; files go to the test's own directory."""
    for name in list(os.environ):
        if name.startswith("CONCMON_") or name in _OURS:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONCMON_PLUGIN_AUTOLOAD", "false")
    monkeypatch.setenv("CONCMON_LOG_FILE", os.path.join(tmp_path, "logs", "concmon.log"))
    monkeypatch.setenv("CONCMON_JSONL_FILE", os.path.join(tmp_path, "logs", "concmon.jsonl"))
    _reset_for_tests()
    yield
    _reset_for_tests()


@pytest.fixture
def monitor() -> ConcurrencyMonitor:
    return ConcurrencyMonitor()
