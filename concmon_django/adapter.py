"""What every middleware instance of a process shares: options, monitor, gate, machine endpoints.

Django builds its middleware chain once per handler (the WSGI handler, the ASGI handler, every
test client), so nothing here may live on one middleware object: the admission gate must be one
per process, and so must the machine endpoints. The adapter is built from the settings once, at
``AppConfig.ready()`` or on the first middleware built, and built again when a test changes
``settings.CONCMON``. A bad option switches the adapter off with one error line (the
application serves on, uncounted); ``CONCMON_STRICT=1`` makes it fatal instead, as in the core.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from concmon import ConcurrencyMonitor, ConfigError, init_monitor
from concmon.adapter_options import core_options
from concmon.endpoints import MachineEndpoints
from concmon.runtime import STRICT_VARIABLE
from concmon_django.options import Options, from_settings

logger = logging.getLogger("concmon")


class Adapter:
    """The configured adapter of this process; ``gate`` is built on first use under ASGI."""

    def __init__(self, options: Options, values: dict[str, Any]) -> None:
        self.options = options
        self.core = core_options(values)
        self.endpoints = MachineEndpoints(options)
        self._gate: Any = None
        self._lock = threading.Lock()

    def start(self) -> ConcurrencyMonitor:
        """Start the process monitor (its reporter unless ``start_reporter`` is off)."""
        monitor = init_monitor(start_reporter=self.options.start_reporter, **self.core)
        if self.options.max_concurrency is not None:
            monitor.max_concurrency = self.options.max_concurrency
        self.endpoints.activate()
        return monitor

    def gate(self) -> Any:
        """The process's :class:`concmon.gate.AdmissionGate`, None without ``max_concurrency``.

        Imported here, not at the top: anyio is needed only by ASGI deployments that limit.
        """
        options = self.options
        if options.max_concurrency is None:
            return None
        with self._lock:
            if self._gate is None:
                from concmon.gate import AdmissionGate

                self._gate = AdmissionGate(
                    options.max_concurrency, options.max_queue, options.queue_timeout
                )
            return self._gate


_lock = threading.Lock()
_adapter: Adapter | None = None
_built = False
_reported: set[str] = set()
_TRUE = ("1", "true", "yes", "on")


def current() -> Adapter | None:
    """This process's adapter, built from ``settings.CONCMON`` on first use; None when its
    options are bad (the error was logged once)."""
    global _adapter, _built
    if _built:
        return _adapter
    from django.conf import settings

    with _lock:
        if not _built:
            try:
                values = from_settings(settings)
                _adapter = Adapter(Options.parse(values), values)
            except ConfigError as exc:
                if os.environ.get(STRICT_VARIABLE, "").strip().lower() in (
                    "1",
                    "true",
                    "yes",
                    "on",
                ):
                    raise
                _adapter = None
                if str(exc) not in _reported:
                    _reported.add(str(exc))
                    logger.error(
                        "concmon is switched off: %s (%s=1 makes this fatal)", exc, STRICT_VARIABLE
                    )
            _built = True
        return _adapter


def problem() -> str | None:
    """Why the adapter is switched off, for the system check; None when it is configured."""
    from django.conf import settings

    try:
        Options.parse(from_settings(settings))
    except ConfigError as exc:
        return str(exc)
    return None


def forget(**_: Any) -> None:
    """Drop the adapter so the next use reads the settings again (``setting_changed``)."""
    global _adapter, _built
    if _.get("setting") not in (None, "CONCMON"):
        return
    with _lock:
        _adapter = None
        _built = False


__all__ = ["Adapter", "current", "forget", "problem"]
