"""Fixtures for the Flask adapter tests: an instrumented app and its threaded server."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from flask import Flask

from concmon import ConcurrencyMonitor, get_monitor
from tests.flask.apps import Gates, build_app
from tests.flask.serving import werkzeug_thread


@pytest.fixture
def instrumented() -> tuple[Flask, Gates, ConcurrencyMonitor]:
    app, gates = build_app(sinks=(), start_reporter=False)
    return app, gates, get_monitor()


@pytest.fixture
def served(
    instrumented: tuple[Flask, Gates, ConcurrencyMonitor],
) -> Iterator[tuple[httpx.Client, Gates, ConcurrencyMonitor]]:
    app, gates, monitor = instrumented
    with werkzeug_thread(app) as base, httpx.Client(base_url=base, timeout=20) as client:
        yield client, gates, monitor
        gates.release.set()
