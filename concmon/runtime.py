"""The process-wide monitor: creating it, starting its reporter, shutting it down.

``init_monitor()`` and ``get_monitor()`` are idempotent and safe from any thread, so an adapter,
the application and a library can all call them without coordinating. What a ``fork()`` does to
them is in ``concmon.forking``.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast, overload

from concmon.monitor import ConcurrencyMonitor, outcome_for
from concmon.plugins import PluginHost
from concmon.reporter import FORK_WAIT_S, Reporter
from concmon.snapshot import Snapshot

if TYPE_CHECKING:
    # pydantic-settings is imported when settings are first read, not by `import concmon`.
    from concmon.settings import Settings
    from concmon.system import SystemSampler

logger = logging.getLogger("concmon")

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class Runtime:
    """What ``init_monitor`` set up: the settings in force, the plugins and the reporter."""

    settings: Settings
    monitor: ConcurrencyMonitor
    plugins: PluginHost
    reporter: Reporter


_lock = threading.RLock()
_monitor: ConcurrencyMonitor | None = None
_runtime: Runtime | None = None
_atexit_registered = False
_holders = 0


STRICT_VARIABLE = "CONCMON_STRICT"
"""Set to 1 to make a bad setting fatal at start-up instead of switching concmon off."""

_reported_errors: set[str] = set()


def _settings(**overrides: Any) -> Settings:
    """The settings in force; with a bad value, concmon switched off after one error line.

    A misconfigured monitor must never take the service down: the application keeps serving,
    uncounted, and the line names the variable and what it accepts. ``CONCMON_STRICT=1``
    raises the :class:`ConfigError` instead.
    """
    from concmon.settings import ConfigError, Settings, load_settings

    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        if os.environ.get(STRICT_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on"):
            raise
        message = str(exc)
        if message not in _reported_errors:
            _reported_errors.add(message)
            logger.error(
                "concmon is switched off: %s (%s=1 makes this fatal)", message, STRICT_VARIABLE
            )
        return Settings.model_construct(enabled=False)


def _new_monitor(settings: Settings) -> ConcurrencyMonitor:
    return ConcurrencyMonitor(
        enabled=settings.enabled,
        max_endpoints=settings.max_endpoints,
        buckets=settings.latency_buckets,
    )


def get_monitor() -> ConcurrencyMonitor:
    """The process's monitor, created from the environment on first use.

    Counting works without :func:`init_monitor`; reporting (sinks, the reporter thread) starts
    only once ``init_monitor`` has been called.
    """
    global _monitor
    monitor = _monitor
    if monitor is None:
        with _lock:
            if _monitor is None:
                _monitor = _new_monitor(_settings())
            monitor = _monitor
    return monitor


def get_runtime() -> Runtime | None:
    """The running set-up, or ``None`` before :func:`init_monitor` / after shutdown."""
    return _runtime


def _system_sampler() -> SystemSampler:
    from concmon.system import SystemSampler

    return SystemSampler()


def _configure_logging(settings: Settings) -> None:
    level = getattr(logging, settings.effective_log_level.upper())
    logger.setLevel(level)
    if settings.debug and not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)


def init_monitor(
    settings: Settings | None = None,
    *,
    start_reporter: bool = True,
    **overrides: Any,
) -> ConcurrencyMonitor:
    """Read the settings, load the sinks and start the reporter; returns the monitor.

    Calling it again returns the same monitor and changes nothing. ``overrides`` take setting
    field names (``update_interval=1.0``, ``sinks=("jsonl",)``) ahead of the environment. A bad
    value switches counting off with one error line naming the variable (the application goes
    on uncounted); with ``CONCMON_STRICT=1`` it raises :class:`concmon.ConfigError` instead.
    """
    global _monitor, _runtime, _atexit_registered
    with _lock:
        if _runtime is not None:
            return _runtime.monitor
        if settings is None:
            settings = _settings(**overrides)
        elif overrides:
            settings = settings.model_copy(update=overrides)
        _configure_logging(settings)
        monitor = _monitor
        if (
            monitor is None
            or monitor.max_endpoints != settings.max_endpoints
            or monitor.buckets != settings.latency_buckets
        ):
            monitor = _monitor = _new_monitor(settings)
        monitor.enabled = settings.enabled
        plugins = PluginHost(settings, monitor)
        sampler = _system_sampler() if settings.system_metrics else None
        reporter = Reporter(
            monitor, plugins, settings.update_interval, sampler, settings.shutdown_timeout
        )
        if settings.enabled:
            try:
                plugins.load_configured()
            except Exception as exc:  # noqa: BLE001 - a broken install must not stop reporting
                logger.error(
                    "concmon: the plugins could not be looked up (%s: %s); reporting goes on "
                    "without them",
                    type(exc).__name__,
                    exc,
                )
            if start_reporter:
                reporter.start()
        _runtime = Runtime(settings, monitor, plugins, reporter)
        logger.debug(
            "concmon: monitor started (interval %.3gs, sinks: %s)",
            settings.update_interval,
            ", ".join(plugins.names()) or "none",
        )
        if not _atexit_registered:
            atexit.register(shutdown_monitor)
            _atexit_registered = True
        return monitor


def shutdown_monitor(timeout: float | None = None) -> Snapshot | None:
    """Stop the reporter and hand the final snapshot to every sink; returns it.

    Returns within ``timeout`` seconds (default ``CONCMON_SHUTDOWN_TIMEOUT``) even when a sink
    blocks: the other sinks' final reports are written, the stuck one is named in a log line.
    Safe to call more than once (later calls return ``None``). Counting keeps working after
    shutdown; only reporting stops. ``init_monitor`` may start it again.
    """
    global _runtime
    with _lock:
        runtime = _runtime
        _runtime = None
    if runtime is None:
        return None
    if not runtime.settings.enabled:
        return runtime.monitor.snapshot()
    return runtime.reporter.stop(timeout)


def hold_monitor() -> ConcurrencyMonitor:
    """:func:`init_monitor` for one of several users of the process's monitor.

    Two applications in one process (each with its own lifespan) share the monitor; the one
    that stops first must not stop the other's reports. Each holder calls
    :func:`release_monitor` when it stops, and the last one shuts the monitor down.
    """
    global _holders
    with _lock:
        monitor = init_monitor()
        _holders += 1
        return monitor


def release_monitor(timeout: float | None = None) -> Snapshot | None:
    """Let go of a :func:`hold_monitor`; the last holder's release shuts the monitor down and
    returns its final snapshot (None while others still hold it)."""
    global _holders
    with _lock:
        if _holders > 1:
            _holders -= 1
            return None
        _holders = 0
    return shutdown_monitor(timeout)


def _reset_for_tests() -> None:
    """Forget the process-wide monitor (tests only: counts and plugins are dropped)."""
    global _monitor
    global _holders
    shutdown_monitor()
    with _lock:
        _monitor = None
        _holders = 0


_fork_held = False


def before_fork() -> None:
    """Wait for an ``init_monitor()`` in progress on another thread.

    A fork in the middle of it would give the child a half-made runtime (set, but its reporter
    not yet started, so never restarted there). It waits as long as a fork waits for a report.
    """
    global _fork_held
    _fork_held = _lock.acquire(timeout=FORK_WAIT_S)


def after_fork_in_parent() -> None:
    global _fork_held
    if _fork_held:
        _fork_held = False
        _lock.release()


def after_fork_in_child() -> None:
    """Threads do not survive a fork: a reporting parent's child starts a reporter of its own.

    The parent's holders are not the child's: what runs there holds the monitor anew."""
    global _lock, _fork_held, _holders
    _lock = threading.RLock()
    _fork_held = False
    _holders = 0
    runtime = _runtime
    if runtime is not None and runtime.settings.enabled and runtime.reporter._thread is not None:
        runtime.reporter.restart_after_fork()


@overload
def track_task(endpoint: Callable[P, R]) -> Callable[P, R]: ...


@overload
def track_task(endpoint: str | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def track_task(endpoint: str | Callable[..., Any] | None = None) -> Any:
    """Decorator counting every call of a function as one request to ``endpoint``.

    Works on plain and ``async`` functions; without a name the function's qualified name is
    used. Exceptions count as failed and cancellation as cancelled; both propagate unchanged.
    The process monitor is looked up at call time, so disabling the monitor disables this too.
    """
    if callable(endpoint):
        return track_task(None)(endpoint)

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        name = endpoint if endpoint is not None else fn.__qualname__
        if inspect.iscoroutinefunction(fn):
            afn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                ticket = get_monitor().http.begin(name)
                try:
                    result = await afn(*args, **kwargs)
                except BaseException as exc:
                    ticket.finish(outcome_for(type(exc)))
                    raise
                ticket.finish()
                return result

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            ticket = get_monitor().http.begin(name)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                ticket.finish(outcome_for(type(exc)))
                raise
            ticket.finish()
            return result

        return wrapper

    return decorate
