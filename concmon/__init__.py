"""concmon: live, exact per-endpoint concurrency monitoring for Python web services.

The core is framework-agnostic; ``concmon_fastapi`` and ``concmon_flask`` wire it into apps.
Importing it is cheap: the settings (pydantic-settings) load when they are first read, by
``get_monitor()``/``init_monitor()`` or by touching ``concmon.Settings``, ``ConfigError`` or
``load_settings``, so a command that only reads reports never pays for them.
"""

from typing import TYPE_CHECKING, Any

from concmon import forking as _forking  # noqa: F401 - registers the fork handlers
from concmon.hookspecs import hookimpl
from concmon.monitor import (
    OVERFLOW_NAME,
    UNMATCHED,
    ConcurrencyMonitor,
    EndpointGroup,
    Outcome,
    QueueWait,
    Ticket,
    Tracked,
    outcome_for,
)
from concmon.runtime import (
    Runtime,
    get_monitor,
    get_runtime,
    hold_monitor,
    init_monitor,
    release_monitor,
    shutdown_monitor,
    track_task,
)
from concmon.snapshot import (
    SCHEMA,
    EndpointStats,
    QueueStats,
    Snapshot,
    SnapshotFormatError,
    SystemStats,
)

if TYPE_CHECKING:
    from concmon.settings import ConfigError, Settings, load_settings

__version__ = "0.1.0"

_FROM_SETTINGS = frozenset({"ConfigError", "Settings", "load_settings"})


def __getattr__(name: str) -> Any:
    if name in _FROM_SETTINGS:
        from concmon import settings

        return getattr(settings, name)
    raise AttributeError(f"module 'concmon' has no attribute {name!r}")


__all__ = [
    "OVERFLOW_NAME",
    "SCHEMA",
    "UNMATCHED",
    "ConcurrencyMonitor",
    "ConfigError",
    "EndpointGroup",
    "EndpointStats",
    "Outcome",
    "QueueStats",
    "QueueWait",
    "Runtime",
    "Settings",
    "Snapshot",
    "SnapshotFormatError",
    "SystemStats",
    "Ticket",
    "Tracked",
    "__version__",
    "get_monitor",
    "get_runtime",
    "hold_monitor",
    "hookimpl",
    "init_monitor",
    "load_settings",
    "outcome_for",
    "release_monitor",
    "shutdown_monitor",
    "track_task",
]
