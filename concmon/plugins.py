"""Finding, loading and calling plugins: the one place that talks to pluggy.

Built-in sinks are listed in :data:`DEFAULT_PLUGINS` and loaded exactly like third-party plugins
from the ``concmon`` entry-point group: by name, only when ``CONCMON_SINKS`` asks for them, never
when ``CONCMON_BLOCKED_PLUGINS`` names them. The rest of concmon calls hooks through
:class:`PluginHost`, which calls them the ordinary pluggy way with every implementation wrapped
at registration, so that one failing sink can neither silence the others nor stop the reporter.
A plugin with a hook concmon does not define (a misspelling) or with a hook wrapper is refused
with one error line naming it.

Sinks are isolated in time as well as in errors: each plugin with a report or shutdown hook is
called on its own :class:`concmon.delivery.SinkWorker`, and the host waits for a sink only up to
a bound, so a sink that blocks delays only itself; it is logged and counted under
``sink_errors`` for every report it is too late for.
"""

from __future__ import annotations

import functools
import importlib
import logging
import threading
import time
import weakref
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import pluggy

from concmon import hookspecs
from concmon.delivery import Delivery, SinkWorker
from concmon.monitor import ConcurrencyMonitor
from concmon.snapshot import Snapshot

if TYPE_CHECKING:
    from concmon.settings import Settings

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


_DELIVERED_HOOKS = ("concmon_report", "concmon_shutdown")
"""The hooks called on a plugin's own worker thread, with the snapshot."""

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
        self._workers: dict[str, SinkWorker] = {}
        _HOSTS.add(self)

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
            if any(hook in hooks for hook in _DELIVERED_HOOKS):
                self._workers[name] = SinkWorker(name, functools.partial(self._deliver, name))
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
            worker = self._workers.pop(name, None)
        if worker is not None:
            worker.close()

    def get(self, name: str) -> Any:
        """The plugin registered under ``name`` (None if there is none)."""
        return self._plugins.get(name)

    def worker(self, name: str) -> SinkWorker | None:
        """The thread and backlog that deliver snapshots to ``name`` (None if it has none)."""
        return self._workers.get(name)

    def names(self) -> list[str]:
        return [name for name, plugin in self.pm.list_name_plugin() if plugin is not None]

    def _deliver(self, name: str, hook: str, snapshot: Snapshot) -> None:
        """Call ``name``'s implementation of ``hook`` (on that plugin's worker thread)."""
        arguments = {"snapshot": snapshot}
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            if impl.plugin_name == name:
                impl.function(*(arguments[arg] for arg in impl.argnames))

    def _worker_list(self) -> list[SinkWorker]:
        with self._lock:
            return list(self._workers.values())

    def report(self, snapshot: Snapshot, wait: float | None = None) -> None:
        """Hand ``snapshot`` to every sink; wait up to ``wait`` seconds for those that were
        free to take it (None: as long as they take). A sink still inside an earlier call is not
        waited for: it is late for this report, which is logged and counted."""
        deadline = None if wait is None else time.monotonic() + wait
        started: list[tuple[SinkWorker, Delivery]] = []
        for worker in self._worker_list():
            offer = worker.offer("concmon_report", snapshot)
            if offer.idle:
                started.append((worker, offer.delivery))
            else:
                self._late(worker)
        for worker, delivery in started:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not delivery.done.wait(remaining):
                self._late(worker)

    def shutdown(self, snapshot: Snapshot, timeout: float | None = None) -> list[str]:
        """Hand the final snapshot to every sink and wait, up to ``timeout`` seconds in all,
        for each to finish its backlog and its shutdown; returns the sinks that did not."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pending: list[tuple[SinkWorker, Delivery]] = []
        for worker in self._worker_list():
            pending.append((worker, worker.offer("concmon_shutdown", snapshot).delivery))
            worker.close()
        unfinished = []
        for worker, delivery in pending:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not delivery.done.wait(remaining) or delivery.dropped:
                unfinished.append(worker.name)
        if unfinished:
            logger.error(
                "concmon: sink(s) %s did not finish their final report within %.3gs "
                "(CONCMON_SHUTDOWN_TIMEOUT); shutdown goes on without them",
                ", ".join(repr(name) for name in unfinished),
                timeout,
            )
        return unfinished

    def _late(self, worker: SinkWorker) -> None:
        busy = worker.busy_for()
        inside = f"inside one call for {busy:.3g}s" if busy is not None else "behind"
        self._complain(
            worker.name,
            f"is {inside} and late for a report; its reports wait (up to {worker.backlog}), "
            f"{worker.dropped} dropped so far",
            None,
        )

    def _failed(self, name: str, exc: BaseException) -> None:
        self._complain(name, f"failed: {type(exc).__name__}: {exc}", exc)

    def _complain(self, name: str, what: str, exc: BaseException | None) -> None:
        """Count an error of plugin ``name`` and log it, at most once a minute per plugin."""
        self.monitor.count_sink_error(name)
        now = time.monotonic()
        last = self._last_error_log.get(name)
        if last is not None and now - last < ERROR_LOG_INTERVAL:
            self._suppressed[name] = self._suppressed.get(name, 0) + 1
            return
        self._last_error_log[name] = now
        suppressed = self._suppressed.pop(name, 0)
        more = f" ({suppressed} more errors since the last message)" if suppressed else ""
        logger.error(
            "concmon: plugin %r %s%s; the other sinks and counting go on",
            name,
            what,
            more,
            exc_info=exc is not None and last is None,
        )


_HOSTS: weakref.WeakSet[PluginHost] = weakref.WeakSet()
_fork_held: list[threading.Lock | threading.Condition] = []


def before_fork(deadline: float) -> None:
    """Wait (until ``deadline``) for every sink call in flight, so no sink lock is inherited
    held; a sink stuck past it is not waited for."""
    for host in list(_HOSTS):
        for worker in host._worker_list():
            if worker.runs_here():
                continue  # a sink forking from inside its own call: waiting would deadlock
            _fork_held.extend(worker.hold_for_fork(deadline))


def after_fork_in_parent() -> None:
    while _fork_held:
        _fork_held.pop().release()


def after_fork_in_child() -> None:
    _fork_held.clear()
    for host in list(_HOSTS):
        host._lock = threading.Lock()
        for worker in host._workers.values():
            worker.after_fork_in_child()


def _hook_names() -> list[str]:
    return sorted(name for name in vars(hookspecs) if name.startswith("concmon_"))
