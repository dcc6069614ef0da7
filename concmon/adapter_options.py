"""The options both web adapters take, declared once and validated by pydantic.

``concmon_fastapi`` and ``concmon_flask`` each extend :class:`AdapterOptions` with the options
only they have (the ASGI admission gate, Flask's reporter switch) and nothing else, so an option
they share is parsed, checked and documented by the same code in both. A bad value raises
:class:`concmon.ConfigError` with one line naming the option, the value and what it accepts;
the docs' option tables are generated from the fields (:func:`options_table`).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Final, Self

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from concmon.request_start import DEFAULT_HEADER
from concmon.settings import ConfigError, Settings, split_commas

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_JSON_PATH: Final = "/concurrency"
"""The path ``json_path=True`` stands for."""

CORE_OPTIONS: Final = frozenset(Settings.model_fields)
"""The core's settings, which an adapter's configuration may hold beside its own options (the
Flask config, Django's ``CONCMON`` dict); they go to :func:`concmon.init_monitor`."""

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True, slots=True)
class FailedStatus:
    """Which returned responses count as failed: statuses from ``threshold`` up, or the answer
    of ``function``; neither means only exceptions fail."""

    threshold: int | None
    function: Callable[[int], bool] | None = None

    def __call__(self, status: int) -> bool:
        if self.threshold is not None:
            return status >= self.threshold
        return self.function is not None and bool(self.function(status))


def _invalid() -> ValueError:
    # The message shown is built from the field's ``accepts`` note, not from this error.
    return ValueError("invalid")


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _invalid()


Flag = Annotated[bool, PlainValidator(_flag)]
"""A yes/no option: a bool, or one of ``true/false``, ``1/0``, ``yes/no``, ``on/off`` (config
files and environment-fed configs hold strings)."""


def _path(value: Any) -> str:
    if isinstance(value, str) and value.startswith("/") and value.strip() == value:
        return value
    raise _invalid()


def _optional_path(value: Any) -> str | None:
    if value is None or value is False or value == "":
        return None
    return _path(value)


def _json_path(value: Any) -> str | None:
    return DEFAULT_JSON_PATH if value is True else _optional_path(value)


def _items(value: Any) -> list[Any]:
    """A comma-separated string or any other iterable (not a mapping), as a list."""
    value = split_commas(value)
    if isinstance(value, Mapping) or not isinstance(value, Iterable):
        raise _invalid()
    return list(value)


def _exclude_paths(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = _items(value)
    if not all(isinstance(item, str) for item in items):
        raise _invalid()
    return tuple(_path(item.strip()) for item in items)


def _failed_status(value: Any) -> FailedStatus:
    if isinstance(value, FailedStatus):
        return value
    if value is None or value is False:
        return FailedStatus(None)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 600:
        return FailedStatus(value)
    if callable(value):
        return FailedStatus(None, value)
    raise _invalid()


_HEADER_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")


def _header_name(value: Any) -> str | None:
    if value is None or value is False or value == "":
        return None
    if isinstance(value, str) and _HEADER_NAME.fullmatch(value):
        return value.lower()
    raise _invalid()


def _token(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip() and value.strip() == value:
        return value
    raise _invalid()


def _networks(value: Any) -> tuple[IPNetwork, ...] | None:
    if value is None:
        return None
    items = _items(value)
    if not items:
        raise _invalid()
    try:
        return tuple(ipaddress.ip_network(str(item).strip(), strict=False) for item in items)
    except ValueError:
        raise _invalid() from None


def option(
    default: Any, accepts: str, meaning: str, *, shown: str | None = None, secret: bool = False
) -> Any:
    """A field of an options model: ``accepts`` goes into error messages and the docs' table,
    ``shown`` replaces the default there, ``secret`` keeps the value out of messages."""
    extra: dict[str, Any] = {"accepts": accepts, "secret": secret}
    if shown is not None:
        extra["shown"] = shown
    return Field(default, description=meaning, json_schema_extra=extra)


class AdapterOptions(BaseModel):
    """The options every adapter has; see docs/fastapi.md and docs/flask.md for their use."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    adapter: ClassVar[str] = "concmon"
    """The package the options belong to; every message starts with it."""
    beside_core: ClassVar[bool] = False
    """Whether the options come in one mapping with the core's settings (Flask's config,
    Django's ``CONCMON``): the core's names are then accepted and left to ``init_monitor``."""

    exclude_paths: Annotated[tuple[str, ...], PlainValidator(_exclude_paths)] = option(
        (),
        "paths starting with /, as a list or comma-separated; a trailing * matches a prefix",
        "Paths never counted: exact paths, or prefixes ending in `*` (`/static/*`).",
    )
    failed_status: Annotated[FailedStatus, PlainValidator(_failed_status)] = option(
        FailedStatus(500),
        "a status code from 100 to 600, a function of the status code returning True for a "
        "failure, or None",
        "Returned responses with this status or above count as failed; a function decides per "
        "status instead; `None`: only exceptions fail.",
        shown="`500`",
    )
    json_path: Annotated[str | None, PlainValidator(_json_path)] = option(
        None,
        "a path starting with /, True for /concurrency, or None",
        "Serve the live snapshot as JSON (docs/snapshot.md) at this path.",
    )
    prometheus: Flag = option(
        False,
        "true or false",
        "Serve Prometheus metrics at `metrics_path`; needs `pip install 'concmon[prometheus]'` "
        "(checked at start-up).",
    )
    metrics_path: Annotated[str | None, PlainValidator(_optional_path)] = option(
        "/metrics",
        "a path starting with /, or None",
        "Where the Prometheus metrics are served (only with `prometheus`; the application's "
        "own route there is untouched otherwise).",
    )
    metrics_token: Annotated[str | None, PlainValidator(_token)] = option(
        None,
        "a non-empty string without surrounding spaces, or None",
        "Require `Authorization: Bearer <token>` on the JSON and metrics paths (401 otherwise).",
        secret=True,
    )
    metrics_allow: Annotated[tuple[IPNetwork, ...] | None, PlainValidator(_networks)] = option(
        None,
        "client addresses or networks such as 127.0.0.1, ::1 or 10.0.0.0/8, as a list or "
        "comma-separated",
        "Client addresses allowed on the JSON and metrics paths (403 otherwise); an IPv4 "
        "client seen as `::ffff:a.b.c.d` is matched as `a.b.c.d`. A request carrying "
        "`Forwarded`, `X-Forwarded-For` or `X-Real-IP` is refused unless "
        "`metrics_allow_forwarded`.",
    )
    metrics_allow_forwarded: Flag = option(
        False,
        "true or false",
        "Behind a proxy: judge `metrics_allow` by the client address the server took from the "
        "proxy's forwarding header (uvicorn's `--forwarded-allow-ips`, werkzeug's `ProxyFix`), "
        "trusting it. Off: any request with a forwarding header is refused, since the server "
        "may have taken its address from a header the client forged.",
    )

    request_start_header: Annotated[str | None, PlainValidator(_header_name)] = option(
        DEFAULT_HEADER,
        "a header name (letters, digits and -), or None to read none",
        "The header a proxy stamps with the moment it took the request (`t=` and Unix "
        "seconds, milliseconds or microseconds); the wait from it to admission is the time "
        "queued before the application (docs/queue-time.md).",
    )

    @property
    def excluded(self) -> frozenset[str]:
        """The exact paths of ``exclude_paths``."""
        return frozenset(path for path in self.exclude_paths if not path.endswith("*"))

    @property
    def excluded_prefixes(self) -> tuple[str, ...]:
        """The prefixes of ``exclude_paths`` (the entries ending in ``*``, without it)."""
        return tuple(path[:-1] for path in self.exclude_paths if path.endswith("*"))

    @model_validator(mode="after")
    def _paths_differ(self) -> Self:
        if self.prometheus and self.json_path is not None and self.json_path == self.metrics_path:
            raise PydanticCustomError(
                "paths_conflict",
                "json_path and metrics_path are both '{path}'",
                {"path": self.json_path},
            )
        return self

    @classmethod
    def option_names(cls) -> frozenset[str]:
        """Every name ``parse`` accepts."""
        names = frozenset(cls.model_fields)
        return names | CORE_OPTIONS if cls.beside_core else names

    @classmethod
    def parse(cls, values: Mapping[str, Any]) -> Self:
        """Check ``values`` (option name -> value); raises :class:`ConfigError` on bad ones."""
        if cls.beside_core:
            values = {k: v for k, v in values.items() if k not in CORE_OPTIONS}
        try:
            return cls.model_validate(dict(values))
        except ValidationError as exc:
            raise ConfigError(f"{cls.adapter}: {cls._problems(exc, values)}") from None

    @classmethod
    def _problems(cls, exc: ValidationError, values: Mapping[str, Any]) -> str:
        problems: list[str] = []
        for error in exc.errors():
            loc = error["loc"]
            if not loc:  # a rule across options (model validator): its message says it all
                problems.append(error["msg"])
                continue
            name = str(loc[0])
            if error["type"] == "extra_forbidden":
                known = ", ".join(sorted(cls.option_names()))
                problems.append(f"unknown option {name!r}; expected one of {known}")
                continue
            extra = _extra(cls, name)
            shown = "'***'" if extra.get("secret") else repr(values.get(name))
            problem = f"{name}={shown} is not valid: expected {extra.get('accepts')}"
            if problem not in problems:  # one line per option, however many items are bad
                problems.append(problem)
        return "; ".join(problems)


def _names(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()
    ):
        return dict(value)
    raise ValueError("invalid")


Names = Annotated[dict[str, str], PlainValidator(_names)]
"""A renaming option: endpoint name to the name shown (non-empty strings; None for none)."""

Seconds = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
"""A duration option: a number of seconds greater than 0."""


class GateOptions(AdapterOptions):
    """The admission gate's options (:mod:`concmon.gate`), for the adapters that have one."""

    max_concurrency: Annotated[int, Field(strict=True, ge=1)] | None = option(
        None,
        "a whole number of at least 1, or None",
        "Admission limit: at most this many requests inside the application at once.",
    )
    max_queue: Annotated[int, Field(strict=True, ge=0)] | None = option(
        None,
        "a whole number, 0 or more, or None (unbounded)",
        "With `max_concurrency`: how many may wait; past it, 503 at once.",
    )
    queue_timeout: Seconds | None = option(
        None,
        "a number of seconds greater than 0, or None (wait forever)",
        "With `max_concurrency`: seconds a request may wait before it gets a 503.",
    )
    retry_after: Annotated[int, Field(strict=True, ge=0)] | None = option(
        None,
        "a whole number of seconds, 0 or more",
        "Seconds in the `Retry-After` header of a 503 from the gate.",
        shown="`ceil(queue_timeout)` or 1",
    )

    @model_validator(mode="after")
    def _gate_has_a_limit(self) -> Self:
        if self.max_concurrency is None and (
            self.max_queue is not None or self.queue_timeout is not None
        ):
            raise PydanticCustomError(
                "needs_limit",
                "max_queue and queue_timeout need max_concurrency (the limit they queue for)",
            )
        return self

    @property
    def retry_seconds(self) -> int:
        """The ``Retry-After`` of a 503 from the gate: ``retry_after``, else the queue timeout
        rounded up, else 1."""
        if self.retry_after is not None:
            return self.retry_after
        return max(1, math.ceil(self.queue_timeout)) if self.queue_timeout is not None else 1


def core_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """The core's settings among ``values``, for :func:`concmon.init_monitor`."""
    return {k: v for k, v in values.items() if k in CORE_OPTIONS}


def _extra(model: type[BaseModel], name: str) -> dict[str, Any]:
    extra = model.model_fields[name].json_schema_extra
    return extra if isinstance(extra, dict) else {}


def _shown_default(model: type[BaseModel], name: str) -> str:
    shown = _extra(model, name).get("shown")
    if isinstance(shown, str):
        return shown
    default = model.model_fields[name].default
    if default in (None, (), {}):
        return "(none)"
    return f'`"{default}"`' if isinstance(default, str) else f"`{default}`"


def options_table(model: type[AdapterOptions]) -> str:
    """The Markdown table of every option of ``model``, for the adapter's docs page."""
    rows = ["| option | default | accepts | meaning |", "| --- | --- | --- | --- |"]
    for name, info in model.model_fields.items():
        rows.append(
            f"| `{name}` | {_shown_default(model, name)} | {_extra(model, name).get('accepts')} "
            f"| {info.description} |"
        )
    return "\n".join(rows)


__all__ = [
    "CORE_OPTIONS",
    "DEFAULT_JSON_PATH",
    "AdapterOptions",
    "FailedStatus",
    "Flag",
    "GateOptions",
    "IPNetwork",
    "Names",
    "Seconds",
    "core_options",
    "option",
    "options_table",
]
