"""The adapter's options, checked once, with a one-line message for every bad value.

``install()`` validates eagerly, so a typo fails when the application is assembled rather
than on its first request (Starlette builds the middleware stack lazily).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from concmon import ConfigError

Scope = MutableMapping[str, Any]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Options:
    """Validated adapter options (see docs/fastapi.md for what each one does)."""

    exclude_paths: frozenset[str]
    exclude_prefixes: tuple[str, ...]
    names: Mapping[str, str]
    name_for: Callable[[Scope], str] | None
    failed_status: Callable[[int], bool]
    failed_threshold: int
    max_concurrency: int | None
    max_queue: int | None
    queue_timeout: float | None
    retry_after: int
    json_path: str | None
    prometheus: ModuleType | None
    metrics_path: str | None
    metrics_token: str | None
    metrics_allow: tuple[IPNetwork, ...] | None
    loop_lag_interval: float | None

    @property
    def own_paths(self) -> frozenset[str]:
        """Paths the middleware answers itself (never counted)."""
        return frozenset(p for p in (self.json_path, self.metrics_path) if p is not None)


def _fail(message: str) -> ConfigError:
    return ConfigError(f"concmon_fastapi: {message}")


def _positive_int(name: str, value: object, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(f"{name} must be a whole number of at least {minimum}, got {value!r}")
    return value


def _seconds(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(f"{name} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise _fail(f"{name} must be a number of seconds greater than 0, got {value!r}")
    return seconds


def _path(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("/"):
        raise _fail(f"{name} must be a path starting with '/', got {value!r}")
    return value


def _status_rule(value: object) -> Callable[[int], bool]:
    if callable(value):
        return value
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 600:
        raise _fail(
            "failed_status must be a status code from 100 to 600 (responses at or above it "
            f"count as failed) or a function of the status code, got {value!r}"
        )
    threshold = value
    return lambda status: status >= threshold


def _allow_list(value: object) -> tuple[IPNetwork, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Iterable):
        raise _fail(f"metrics_allow must be a list of addresses or networks, got {value!r}")
    networks = []
    for item in value:
        try:
            networks.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            raise _fail(
                f"metrics_allow entry {item!r} is not an IP address or network "
                "(such as 127.0.0.1 or 10.0.0.0/8)"
            ) from None
    return tuple(networks)


def load_prometheus() -> ModuleType:
    """The Prometheus exporter module, or a ConfigError saying which extra to install."""
    import importlib

    try:
        return importlib.import_module("concmon.exporters.prometheus")
    except ImportError as exc:
        raise _fail(
            "prometheus=True needs the Prometheus exporter: pip install 'concmon[prometheus]' "
            f"({exc})"
        ) from None


def make_options(
    *,
    exclude_paths: Iterable[str] = (),
    names: Mapping[str, str] | None = None,
    name_for: Callable[[Scope], str] | None = None,
    failed_status: int | Callable[[int], bool] = 500,
    max_concurrency: int | None = None,
    max_queue: int | None = None,
    queue_timeout: float | None = None,
    retry_after: int | None = None,
    json_path: str | None = None,
    prometheus: bool = False,
    metrics_path: str | None = "/metrics",
    metrics_token: str | None = None,
    metrics_allow: Iterable[str] | str | None = None,
    loop_lag_interval: float | None = 0.25,
) -> Options:
    """Check every option; raises :class:`concmon.ConfigError` with one line on a bad value."""
    if isinstance(exclude_paths, str) or not isinstance(exclude_paths, Iterable):
        raise _fail(f"exclude_paths must be a list of paths, got {exclude_paths!r}")
    exact: set[str] = set()
    prefixes: list[str] = []
    for item in exclude_paths:
        checked = _path("exclude_paths entry", item)
        assert checked is not None
        if checked.endswith("*"):
            prefixes.append(checked[:-1])
        else:
            exact.add(checked)
    if names is not None and (
        not isinstance(names, Mapping)
        or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in names.items())
    ):
        raise _fail("names must map route templates to non-empty endpoint names")
    if name_for is not None and not callable(name_for):
        raise _fail(f"name_for must be a function of the ASGI scope, got {name_for!r}")
    limit = _positive_int("max_concurrency", max_concurrency, 1)
    queue = _positive_int("max_queue", max_queue, 0)
    timeout = _seconds("queue_timeout", queue_timeout)
    if limit is None and (queue is not None or timeout is not None):
        raise _fail("max_queue and queue_timeout need max_concurrency (the limit they queue for)")
    retry = _positive_int("retry_after", retry_after, 0)
    if retry is None:
        retry = max(1, math.ceil(timeout)) if timeout is not None else 1
    if not isinstance(prometheus, bool):
        raise _fail(f"prometheus must be True or False, got {prometheus!r}")
    json = _path("json_path", json_path)
    metrics = _path("metrics_path", metrics_path) if prometheus else None
    if json is not None and json == metrics:
        raise _fail(f"json_path and metrics_path are both {json!r}")
    if metrics_token is not None and (not isinstance(metrics_token, str) or not metrics_token):
        raise _fail("metrics_token must be a non-empty string")
    return Options(
        exclude_paths=frozenset(exact),
        exclude_prefixes=tuple(prefixes),
        names=dict(names or {}),
        name_for=name_for,
        failed_status=_status_rule(failed_status),
        failed_threshold=-1 if callable(failed_status) else int(failed_status),
        max_concurrency=limit,
        max_queue=queue,
        queue_timeout=timeout,
        retry_after=retry,
        json_path=json,
        prometheus=load_prometheus() if prometheus else None,
        metrics_path=metrics,
        metrics_token=metrics_token,
        metrics_allow=_allow_list(metrics_allow),
        loop_lag_interval=_seconds("loop_lag_interval", loop_lag_interval),
    )
