"""Finding, loading and calling plugins: the one place that talks to pluggy.

Built-in sinks are listed in :data:`DEFAULT_PLUGINS` and loaded exactly like third-party plugins
from the ``concmon`` entry-point group: by name, only when ``CONCMON_SINKS`` asks for them, never
when ``CONCMON_BLOCKED_PLUGINS`` names them. The rest of concmon calls hooks through
:class:`PluginHost`, which calls them the ordinary pluggy way with every implementation wrapped
at registration, so that one failing sink can neither silence the others nor stop the reporter.
A plugin with a hook concmon does not define (a misspelling) or with a hook wrapper is refused
with one error line naming it.
"""

from __future__ import annotations

import functools
import importlib
import logging
import threading
import time
from collections.abc import Callable
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


class _StandIn:
    """What pluggy registers for a plugin: its hook implementations, each one isolated."""

    def __init__(self, hooks: dict[str, Callable[..., Any]]) -> None:
        vars(self).update(hooks)


_FAILED = object()
"""What an isolated implementation returns when it raised (pluggy collects non-None results)."""


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
        self._plugins: dict[str, Any] = {}
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
        """Register ``plugin`` under ``name`` and configure it; False if refused or present."""
        with self._lock:
            if self.pm.is_blocked(name) or self.pm.has_plugin(name):
                return False
            problem = self._add(plugin, name)
        if problem is not None:
            logger.error("concmon: plugin %r is not loaded: %s", name, problem)
            return False
        others = [p for n, p in self.pm.list_name_plugin() if n != name]
        configure = self.pm.subset_hook_caller("concmon_configure", remove_plugins=others)
        if _FAILED in configure(settings=self.settings, monitor=self.monitor):
            self.unregister(name)
            return False
        return True

    def _add(self, plugin: Any, name: str) -> str | None:
        """Register ``plugin``'s hooks, each isolated; the reason it was refused, if it was.

        What pluggy registers is a stand-in holding the plugin's hook implementations, each
        wrapped so that an exception is logged and counted instead of ending the hook call.
        """
        hooks = {}
        for attr in dir(plugin):
            opts = self.pm.parse_hookimpl_opts(plugin, attr)
            if opts is None:
                continue
            if opts.get("wrapper") or opts.get("hookwrapper"):
                return f"{attr} is a hook wrapper, which concmon does not support"
            hooks[attr] = self._isolated(name, getattr(plugin, attr))
        try:
            self.pm.register(_StandIn(hooks), name=name)
            self.pm.check_pending()
            self._plugins[name] = plugin
        except pluggy.PluginValidationError as exc:
            if self.pm.has_plugin(name):
                self.pm.unregister(name=name)
            return f"{exc} (the hooks concmon defines: {', '.join(_hook_names())})"
        return None

    def _isolated(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        # pluggy stops a hook call at the first exception; concmon must not. The wrapper keeps
        # the function's hook marker and signature (functools.wraps), which pluggy reads.
        @functools.wraps(function)
        def call(*args: Any) -> Any:
            try:
                return function(*args)
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt):
                    raise
                self._failed(name, exc)
                return _FAILED

        return call

    def unregister(self, name: str) -> None:
        with self._lock:
            if self.pm.has_plugin(name):
                self.pm.unregister(name=name)
            self._plugins.pop(name, None)

    def get(self, name: str) -> Any:
        """The plugin registered under ``name`` (None if there is none)."""
        return self._plugins.get(name)

    def names(self) -> list[str]:
        return [name for name, plugin in self.pm.list_name_plugin() if plugin is not None]

    def report(self, snapshot: Snapshot) -> None:
        self.pm.hook.concmon_report(snapshot=snapshot)

    def shutdown(self, snapshot: Snapshot) -> None:
        self.pm.hook.concmon_shutdown(snapshot=snapshot)

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


def _hook_names() -> list[str]:
    return sorted(name for name in vars(hookspecs) if name.startswith("concmon_"))
