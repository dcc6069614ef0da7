"""A pytest plugin that puts concmon into every app a framework's own test suite builds.

``CONCMON_EVERYWHERE=starlette`` (or ``fastapi``) installs the ASGI middleware into every
``Starlette`` and ``FastAPI`` application, ``CONCMON_EVERYWHERE=flask`` adds ``ConcMon`` to
every ``Flask`` application, with default options; unset, nothing is patched, so the same
plugin serves the run without concmon. The patch is made when the plugin is imported, before
the suite's conftest files build anything.

tests/frameworks/test_own_suites.py loads it as ``-p everywhere`` with this directory on
PYTHONPATH (Starlette's suite has a ``tests`` package of its own). At the end of the session the
process monitor's snapshot is written as JSON to ``CONCMON_EVERYWHERE_SNAPSHOT``, if set, so the
outer test can check that every request the suite made was counted and finished.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import tempfile
from collections.abc import Callable
from typing import Any

import pytest


def _report_to_a_temporary_directory() -> None:
    """The reporter's files never land in the framework's source tree."""
    if "CONCMON_LOG_FILE" in os.environ and "CONCMON_JSONL_FILE" in os.environ:
        return
    directory = tempfile.mkdtemp(prefix="concmon-everywhere-")
    os.environ.setdefault("CONCMON_LOG_FILE", os.path.join(directory, "concmon.log"))
    os.environ.setdefault("CONCMON_JSONL_FILE", os.path.join(directory, "concmon.jsonl"))


def _after_init(cls: Any, add: Callable[[Any], object]) -> None:
    """Make ``cls.__init__`` (and that of subclasses calling it) end with ``add(self)``."""
    original = cls.__init__

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        add(self)

    cls.__init__ = __init__


def _into_starlette() -> None:
    from starlette.applications import Starlette

    from concmon_fastapi import install

    _after_init(Starlette, install)
    try:  # FastAPI's own __init__ does not call Starlette's; install() twice changes nothing
        from fastapi import FastAPI
    except ImportError:
        return
    _after_init(FastAPI, install)


def _into_flask() -> None:
    from flask import Flask

    from concmon_flask import ConcMon

    _after_init(Flask, ConcMon)


_PATCHES = {"starlette": _into_starlette, "fastapi": _into_starlette, "flask": _into_flask}

_framework = os.environ.get("CONCMON_EVERYWHERE", "")
if _framework:
    if _framework not in _PATCHES:
        raise pytest.UsageError(
            f"CONCMON_EVERYWHERE must be one of {sorted(_PATCHES)}, not {_framework!r}"
        )
    _report_to_a_temporary_directory()
    _PATCHES[_framework]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the final snapshot; in the run without concmon it shows that nothing counted."""
    path = os.environ.get("CONCMON_EVERYWHERE_SNAPSHOT")
    if not path:
        return
    from concmon import get_monitor

    # Flask's test client never closes a response; concmon finishes one when it is freed. Error
    # responses sit in a reference cycle with their exception's traceback, so only the collector
    # frees them: without this the end depends on when it last ran (--junitxml moves that).
    gc.collect()

    with open(path, "w", encoding="utf-8") as file:
        json.dump(get_monitor().snapshot().to_dict(), file)
