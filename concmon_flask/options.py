"""The adapter's options: read from keyword arguments and ``app.config``, checked once.

Every option can be given as a keyword argument of :class:`concmon_flask.ConcMon` or as an
``app.config["CONCMON_<NAME>"]`` key (keywords win). The core's settings (``update_interval``,
``sinks``, ``log_file``, ...) are accepted the same way and handed to
:func:`concmon.init_monitor`; where neither gives a value, the core's environment variables
apply. A value the adapter cannot use raises :class:`concmon.ConfigError` with one line naming
the option and what it accepts, at start-up rather than on the first request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from concmon import ConfigError, Settings

StatusRule = Callable[[int], bool]
"""Decides from the HTTP status code whether a request that returned normally failed."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

CONFIG_PREFIX: Final = "CONCMON_"
DEFAULT_JSON_PATH: Final = "/concurrency"
DEFAULT_METRICS_PATH: Final = "/metrics"
DEFAULT_FAILED_STATUS: Final = 500

ADAPTER_OPTIONS: Final = frozenset(
    {
        "exclude_paths",
        "failed_status",
        "json_path",
        "prometheus",
        "metrics_path",
        "metrics_token",
        "metrics_allow",
        "start_reporter",
    }
)
CORE_OPTIONS: Final = frozenset(Settings.model_fields)

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def _problem(name: str, value: object, accepts: str) -> ConfigError:
    return ConfigError(f"concmon_flask: {name}={value!r} is not valid: expected {accepts}")


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _problem(name, value, "true or false")


def _names(value: Any) -> list[str] | None:
    """A comma-separated string or an iterable of strings, as a list; None if neither."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, Iterable):
        items = list(value)
        if all(isinstance(item, str) for item in items):
            return [item.strip() for item in items]
    return None


def _path(name: str, value: Any, optional: bool) -> str | None:
    if optional and (value is None or value is False or value == ""):
        return None
    if isinstance(value, str) and value.startswith("/") and value.strip() == value:
        return value
    accepts = "a path starting with /"
    raise _problem(name, value, accepts + (" (or None to switch it off)" if optional else ""))


def _exclude_paths(value: Any) -> tuple[frozenset[str], tuple[str, ...]]:
    accepts = "paths starting with / (a trailing * matches a prefix), as a list or comma-separated"
    if value is None:
        return frozenset(), ()
    items = _names(value)
    if items is None or any(not item.startswith("/") for item in items):
        raise _problem("exclude_paths", value, accepts)
    exact = frozenset(item for item in items if not item.endswith("*"))
    prefixes = tuple(item[:-1] for item in items if item.endswith("*"))
    return exact, prefixes


def _at_least(threshold: int) -> StatusRule:
    def rule(status: int) -> bool:
        return status >= threshold

    rule.threshold = threshold  # type: ignore[attr-defined]
    return rule


def _never(status: int) -> bool:
    return False


def _failed_status(value: Any) -> StatusRule:
    accepts = (
        "a status code from 100 to 599 (that code and above count as failed), "
        "a function of the status code returning True for a failure, or None"
    )
    if value is None or value is False:
        return _never
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool):
        if 100 <= value <= 599:
            return _at_least(value)
        raise _problem("failed_status", value, accepts)
    if callable(value):
        return value  # type: ignore[no-any-return]
    raise _problem("failed_status", value, accepts)


def _networks(value: Any) -> tuple[Network, ...] | None:
    accepts = "client addresses or networks such as 127.0.0.1, ::1 or 10.0.0.0/8"
    if value is None:
        return None
    items = _names(value)
    if not items:
        raise _problem("metrics_allow", value, accepts)
    try:
        return tuple(ipaddress.ip_network(item, strict=False) for item in items)
    except ValueError:
        raise _problem("metrics_allow", value, accepts) from None


def _token(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip() and value.strip() == value:
        return value
    raise _problem("metrics_token", "***", "a non-empty string without surrounding spaces, or None")


@dataclass(frozen=True, slots=True)
class Options:
    """The checked adapter options; see docs/flask.md for what each one does."""

    excluded: frozenset[str] = frozenset()
    excluded_prefixes: tuple[str, ...] = ()
    failed_status: StatusRule = field(default_factory=lambda: _at_least(DEFAULT_FAILED_STATUS))
    json_path: str | None = None
    prometheus: bool = False
    metrics_path: str = DEFAULT_METRICS_PATH
    metrics_token: str | None = None
    metrics_allow: tuple[Network, ...] | None = None
    start_reporter: bool = True
    core: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, values: Mapping[str, Any]) -> Options:
        """Check ``values`` (option name -> value); raises ConfigError on the first bad one."""
        unknown = sorted(set(values) - ADAPTER_OPTIONS - CORE_OPTIONS)
        if unknown:
            raise ConfigError(
                f"concmon_flask: unknown option {unknown[0]!r}; expected one of "
                + ", ".join(sorted(ADAPTER_OPTIONS | CORE_OPTIONS))
            )
        excluded, prefixes = _exclude_paths(values.get("exclude_paths"))
        json_path = values.get("json_path")
        if json_path is True:
            json_path = DEFAULT_JSON_PATH
        return cls(
            excluded=excluded,
            excluded_prefixes=prefixes,
            failed_status=_failed_status(values.get("failed_status", DEFAULT_FAILED_STATUS)),
            json_path=_path("json_path", json_path, optional=True),
            prometheus=_bool("prometheus", values.get("prometheus", False)),
            metrics_path=_path(  # type: ignore[arg-type]
                "metrics_path", values.get("metrics_path", DEFAULT_METRICS_PATH), optional=False
            ),
            metrics_token=_token(values.get("metrics_token")),
            metrics_allow=_networks(values.get("metrics_allow")),
            start_reporter=_bool("start_reporter", values.get("start_reporter", True)),
            core={k: v for k, v in values.items() if k in CORE_OPTIONS},
        )


def from_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The options found in a Flask config as ``CONCMON_<NAME>`` keys, by option name."""
    found: dict[str, Any] = {}
    known = ADAPTER_OPTIONS | CORE_OPTIONS
    for key, value in config.items():
        if isinstance(key, str) and key.startswith(CONFIG_PREFIX):
            name = key[len(CONFIG_PREFIX) :].lower()
            if name not in known:
                raise ConfigError(
                    f"concmon_flask: unknown config key {key!r}; expected one of "
                    + ", ".join(CONFIG_PREFIX + n.upper() for n in sorted(known))
                )
            found[name] = value
    return found
