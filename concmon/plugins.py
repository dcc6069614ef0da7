"""Finding, loading and calling plugins: the one place that talks to pluggy.

Built-in sinks are listed in :data:`DEFAULT_PLUGINS` and loaded exactly like third-party plugins
from the ``concmon`` entry-point group: by name, only when ``CONCMON_SINKS`` asks for them, never
when ``CONCMON_BLOCKED_PLUGINS`` names them. The rest of concmon calls hooks through
:class:`PluginHost`, which calls each implementation on its own so that one failing sink can
neither silence the others nor stop the reporter.
"""

from __future__ import annotations

import functools
import importlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Any

import pluggy

from concmon import hookspecs
from concmon.monitor import ConcurrencyMonitor
from concmon.settings import Settings
from concmon.snapshot import Snapshot

logger = logging.getLogger("concmon")

ENTRY_POINT_GROUP = "concmon"

DEFAULT_PLUGINS: tuple[tuple[str, str], ...] = (
    ("logfile", "concmon.sinks.logfile:LogFileSink"),
    ("jsonl", "concmon.sinks.jsonl:JsonLinesSink"),
    ("stdout", "concmon.sinks.stdout:StdoutSink"),
)
"""Built-in plugins as (name, ``module:attribute``), resolved only when switched on."""

ERROR_LOG_INTERVAL = 60.0
"""Seconds between two log messages about the same failing plugin."""


def _load_reference(reference: str) -> Any:
    module_name, _, attribute = reference.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in filter(None, attribute.split(".")):
        obj = getattr(obj, part)
    return obj


def available_plugins(autoload: bool = True) -> dict[str, Callable[[], Any]]:
    """Every plugin name that can be switched on, mapped to a loader that imports it."""
    found: dict[str, Callable[[], Any]] = {}
    for name, reference in DEFAULT_PLUGINS:
        found[name] = functools.partial(_load_reference, reference)
    if autoload:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            found.setdefault(ep.name, ep.load)
    return found


def instantiate(obj: Any) -> Any:
    """A class becomes an instance (sinks keep state); a module or object is used as it is."""
    return obj() if isinstance(obj, type) else obj


class PluginHost:
    """Typed façade over the plugin manager: load, register, and call hooks in isolation."""

    def __init__(self, settings: Settings, monitor: ConcurrencyMonitor) -> None:
        self.settings = settings
        self.monitor = monitor
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        for name in settings.blocked_plugins:
            self.pm.set_blocked(name)
        self._lock = threading.Lock()
        self._last_error_log: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def load_configured(self) -> list[str]:
        """Register the plugins named by ``CONCMON_SINKS``; returns the names now registered."""
        wanted = self.settings.sinks
        if not wanted:
            return self.names()
        found = available_plugins(self.settings.plugin_autoload)
        for name in wanted:
            if self.pm.is_blocked(name):
                logger.warning("concmon: plugin %r is blocked (CONCMON_BLOCKED_PLUGINS)", name)
                continue
            if self.pm.has_plugin(name):
                continue
            loader = found.get(name)
            if loader is None:
                logger.error(
                    "concmon: unknown sink %r in CONCMON_SINKS; available: %s. "
                    "Counting goes on without it.",
                    name,
                    ", ".join(sorted(found)) or "(none)",
                )
                continue
            try:
                plugin = instantiate(loader())
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop the app
                logger.warning(
                    "concmon: plugin %r could not be loaded and is skipped: %s: %s",
                    name,
                    type(exc).__name__,
                    exc,
                )
                continue
            self.register(plugin, name)
        return self.names()

    def register(self, plugin: Any, name: str) -> bool:
        """Register ``plugin`` under ``name`` and configure it; False if blocked or present."""
        with self._lock:
            if self.pm.is_blocked(name) or self.pm.has_plugin(name):
                return False
            self.pm.register(plugin, name=name)
        configure_args = {"settings": self.settings, "monitor": self.monitor}
        for impl in self.pm.hook.concmon_configure.get_hookimpls():
            if impl.plugin_name == name and not self._call(impl, configure_args):
                self.pm.unregister(name=name)
                return False
        return True

    def unregister(self, name: str) -> None:
        with self._lock:
            if self.pm.has_plugin(name):
                self.pm.unregister(name=name)

    def names(self) -> list[str]:
        return [name for name, plugin in self.pm.list_name_plugin() if plugin is not None]

    def report(self, snapshot: Snapshot) -> None:
        self._call_all(self.pm.hook.concmon_report.get_hookimpls(), {"snapshot": snapshot})

    def shutdown(self, snapshot: Snapshot) -> None:
        self._call_all(self.pm.hook.concmon_shutdown.get_hookimpls(), {"snapshot": snapshot})

    def _call_all(self, impls: Iterable[pluggy.HookImpl], kwargs: dict[str, Any]) -> None:
        # pluggy stops a hook call at the first exception; concmon must not, so each
        # implementation is called on its own.
        for impl in impls:
            self._call(impl, kwargs)

    def _call(self, impl: pluggy.HookImpl, kwargs: dict[str, Any]) -> bool:
        try:
            impl.function(*[kwargs[arg] for arg in impl.argnames])
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            self._failed(impl.plugin_name, exc)
            return False
        return True

    def _failed(self, name: str, exc: BaseException) -> None:
        self.monitor.count_sink_error(name)
        now = time.monotonic()
        last = self._last_error_log.get(name)
        if last is not None and now - last < ERROR_LOG_INTERVAL:
            self._suppressed[name] = self._suppressed.get(name, 0) + 1
            return
        self._last_error_log[name] = now
        suppressed = self._suppressed.pop(name, 0)
        more = f" ({suppressed} more failures since the last message)" if suppressed else ""
        logger.error(
            "concmon: plugin %r failed: %s: %s%s; the other sinks and counting go on",
            name,
            type(exc).__name__,
            exc,
            more,
            exc_info=last is None,
        )
