"""Fixtures for the Django adapter tests: the test project set up once, served fresh per test.

Django is set up once per test process (``tests.django.project.settings``); each test builds
its own handler, so its middleware chain counts into the fresh process monitor the shared
fixtures give every test. ``served_wsgi`` runs the project under werkzeug's threaded server,
``served_asgi`` under uvicorn, both on 127.0.0.1.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import django
import httpx
import pytest

from concmon import Snapshot, get_monitor
from concmon.testing import check_balanced, check_invariants
from tests.flask.serving import wait_until as wait_for
from tests.servers import uvicorn_thread

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django.project.settings")
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

from tests.django.project import views  # noqa: E402


@pytest.fixture(autouse=True)
def gates() -> Iterator[None]:
    """The held views start closed in every test and are let go at its end."""
    views.release.clear()
    views.streaming.clear()
    views.rest.clear()
    yield
    views.release.set()
    views.rest.set()


def snap() -> Snapshot:
    return check_invariants(get_monitor().snapshot())


def settled(timeout: float = 15.0) -> Snapshot:
    """The snapshot once nothing is active (a server ends a request just after its client)."""
    wait_for(lambda: get_monitor().snapshot().active == 0, timeout, "all requests finished")
    return check_balanced(get_monitor().snapshot())


@pytest.fixture
def served_wsgi() -> Iterator[httpx.Client]:
    from tests.flask.serving import werkzeug_thread

    with werkzeug_thread(get_wsgi_application()) as base:
        with httpx.Client(base_url=base, timeout=30) as client:
            yield client
        views.release.set()


@pytest.fixture
def served_asgi() -> Iterator[httpx.Client]:
    with uvicorn_thread(get_asgi_application(), lifespan="off") as base:
        with httpx.Client(base_url=base, timeout=30) as client:
            yield client
        views.release.set()


def served(kind: str) -> Any:
    """A context manager serving the project in ``kind`` mode ("wsgi" or "asgi")."""
    from tests.flask.serving import werkzeug_thread

    if kind == "wsgi":
        return werkzeug_thread(get_wsgi_application())
    return uvicorn_thread(get_asgi_application(), lifespan="off")
