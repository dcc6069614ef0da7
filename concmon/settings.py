"""Settings, read from the environment with pydantic-settings.

The variables the first deployments used (``ENABLE_CONCURRENCY_MONITOR``,
``MONITOR_UPDATE_INTERVAL``, ``DEBUG``, ``LOG_LEVEL``) keep their exact, unprefixed names so that
existing launch scripts keep working; everything added since is ``CONCMON_*``. A bad value fails
:func:`load_settings` with one :class:`ConfigError` that names the variable and what it accepts,
never a validation traceback.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from concmon.monitor import DEFAULT_BUCKETS
from concmon.snapshot import check_bounds

LogLevel = Literal["debug", "info", "warning", "error"]


def split_commas(value: Any) -> Any:
    """``"a, b,,c"`` -> ``("a", "b", "c")``: list variables are comma-separated, not JSON."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


_LEVELS: Final = {
    "trace": "debug",
    "debug": "debug",
    "info": "info",
    "warn": "warning",
    "warning": "warning",
    "error": "error",
    "critical": "error",
    "fatal": "error",
}
"""Levels of other tools' LOG_LEVEL (uvicorn's, logging's) -> the nearest of concmon's."""

MAX_UPDATE_INTERVAL: Final = 86400.0
"""The longest report interval accepted, in seconds (a day)."""

_YES: Final = frozenset({"1", "true", "yes", "on", "y", "t"})
_NO: Final = frozenset({"", "0", "false", "no", "off", "n", "f"})
_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logging.getLogger("concmon").warning("concmon: %s", message)


class ConfigError(ValueError):
    """A setting has a value concmon cannot use; the message names the variable."""


def _env(name: str, *extra: str) -> AliasChoices:
    # The environment variable first; the Python field name is accepted too (populate_by_name).
    return AliasChoices(name, *extra)


class _OwnVariables(PydanticBaseSettingsSource):
    """The environment, read under concmon's own variable names only.

    Fields may be set by name in code (``init_monitor(update_interval=1)``), but a variable that
    happens to share a field's name (``ENABLED``, ``SINKS``, ``LOG_FILE``) belongs to someone
    else and never configures concmon.
    """

    def __init__(self, settings_cls: type[BaseSettings], env: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._env = env

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything is read by __call__

    def __call__(self) -> dict[str, Any]:
        fields = self.settings_cls.model_fields
        return {key: value for key, value in self._env().items() if key not in fields}


class OwnEnvironment(BaseSettings):
    """Settings read from the environment under their variables' names, never their fields'."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _OwnVariables(settings_cls, env_settings))


class Settings(OwnEnvironment):
    """Every knob concmon reads, with its environment variable and what it accepts.

    docs/configuration.md is generated from this model (``python -m concmon.settings``), so the
    documentation cannot drift from the code.
    """

    model_config = SettingsConfigDict(
        env_prefix="",
        case_sensitive=False,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
    )

    enabled: bool = Field(
        True,
        validation_alias=_env("ENABLE_CONCURRENCY_MONITOR", "enabled"),
        description="Turn counting on or off. Off makes every tracking call a no-op.",
        json_schema_extra={"accepts": "true or false"},
    )
    update_interval: float = Field(
        5.0,
        gt=0,
        # The reporter sleeps this long: inf or NaN cannot be slept, and more than a day is
        # a typo that would silence the reports for good.
        le=MAX_UPDATE_INTERVAL,
        allow_inf_nan=False,
        validation_alias=_env("MONITOR_UPDATE_INTERVAL", "update_interval"),
        description="Seconds between two reports.",
        json_schema_extra={
            "accepts": "a number of seconds greater than 0 and at most 86400 (a day), such as 5"
        },
    )
    debug: bool = Field(
        False,
        validation_alias=_env("DEBUG", "debug"),
        description="Development mode: debug logging unless LOG_LEVEL says otherwise.",
        json_schema_extra={"accepts": "true or false (a positive number is true)"},
    )
    log_level: LogLevel | None = Field(
        None,
        validation_alias=_env("LOG_LEVEL", "log_level"),
        description="Level of concmon's own log messages (default: info, or debug with DEBUG).",
        json_schema_extra={
            "accepts": "debug, info, warning or error (trace and critical read as the nearest)"
        },
    )
    log_file: Path = Field(
        Path("logs/concmon.log"),
        validation_alias=_env("CONCMON_LOG_FILE", "log_file"),
        description="Where the `logfile` sink writes the tagged report lines.",
        json_schema_extra={"accepts": "a file path"},
    )
    jsonl_file: Path = Field(
        Path("logs/concmon.jsonl"),
        validation_alias=_env("CONCMON_JSONL_FILE", "jsonl_file"),
        description="Where the `jsonl` sink writes one snapshot per line.",
        json_schema_extra={"accepts": "a file path"},
    )
    sinks: Annotated[tuple[str, ...], NoDecode] = Field(
        ("logfile",),
        validation_alias=_env("CONCMON_SINKS", "sinks"),
        description="Comma-separated names of the sinks that receive reports.",
        json_schema_extra={"accepts": "names such as logfile,jsonl,stdout (empty for none)"},
    )
    system_metrics: bool = Field(
        True,
        validation_alias=_env("CONCMON_SYSTEM_METRICS", "system_metrics"),
        description="Read process CPU, memory, threads and open files with psutil each report.",
        json_schema_extra={"accepts": "true or false"},
    )
    max_endpoints: int = Field(
        500,
        ge=1,
        validation_alias=_env("CONCMON_MAX_ENDPOINTS", "max_endpoints"),
        description="Distinct endpoint names kept; later names are counted under `<overflow>`.",
        json_schema_extra={"accepts": "a whole number of at least 1"},
    )
    log_max_bytes: int = Field(
        10 * 1024 * 1024,
        ge=0,
        validation_alias=_env("CONCMON_LOG_MAX_BYTES", "log_max_bytes"),
        description="Rotate the log and JSON-lines files past this size (0: never rotate).",
        json_schema_extra={"accepts": "a whole number of bytes, 0 or more"},
    )
    log_backup_count: int = Field(
        5,
        ge=0,
        validation_alias=_env("CONCMON_LOG_BACKUP_COUNT", "log_backup_count"),
        description="Rotated files kept (`concmon.log.1` ... `.N`).",
        json_schema_extra={"accepts": "a whole number, 0 or more"},
    )
    shutdown_timeout: float = Field(
        5.0,
        gt=0,
        allow_inf_nan=False,
        validation_alias=_env("CONCMON_SHUTDOWN_TIMEOUT", "shutdown_timeout"),
        description=(
            "Seconds shutdown waits for the sinks' final reports; a sink still busy then is "
            "named in one error line and left behind."
        ),
        json_schema_extra={"accepts": "a number of seconds greater than 0, such as 5 or 0.5"},
    )
    latency_buckets: Annotated[tuple[float, ...], NoDecode] = Field(
        DEFAULT_BUCKETS,
        validation_alias=_env("CONCMON_LATENCY_BUCKETS", "latency_buckets"),
        description=(
            "Upper bounds of the buckets of every distribution (durations, time to first byte, "
            "time queued), as the Prometheus histograms and the percentiles use them."
        ),
        json_schema_extra={
            "accepts": (
                "comma-separated seconds, above 0 and increasing, at most 64, such as 0.01,0.1,1,10"
            )
        },
    )
    plugin_autoload: bool = Field(
        True,
        validation_alias=_env("CONCMON_PLUGIN_AUTOLOAD", "plugin_autoload"),
        description="Load third-party plugins from the `concmon` entry-point group.",
        json_schema_extra={"accepts": "true or false"},
    )
    blocked_plugins: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        validation_alias=_env("CONCMON_BLOCKED_PLUGINS", "blocked_plugins"),
        description="Comma-separated plugin names never to import or register.",
        json_schema_extra={"accepts": "plugin names separated by commas"},
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _shared_log_level(cls, value: Any) -> Any:
        # LOG_LEVEL is shared with uvicorn, Django and many apps: their levels are read as the
        # nearest of concmon's, anything else is ignored with a warning, never an error.
        if not isinstance(value, str):
            return value
        text = value.strip().lower()
        if text in _LEVELS:
            return _LEVELS[text]
        if text:
            _warn_once(f"LOG_LEVEL={value!r} is not a log level concmon knows; ignored")
        return None

    @field_validator("debug", mode="before")
    @classmethod
    def _shared_debug(cls, value: Any) -> Any:
        # DEBUG is shared too (DEBUG=2, DEBUG=express:*): a yes or a positive number means yes.
        if not isinstance(value, str):
            return value
        text = value.strip().lower()
        if text in _YES or (text.isdigit() and int(text) > 0):
            return True
        if text not in _NO:
            _warn_once(f"DEBUG={value!r} is neither yes nor no to concmon; read as no")
        return False

    @field_validator("sinks", "blocked_plugins", mode="before")
    @classmethod
    def _split_names(cls, value: Any) -> Any:
        return split_commas(value)

    @field_validator("latency_buckets", mode="before")
    @classmethod
    def _split_buckets(cls, value: Any) -> Any:
        return split_commas(value)

    @field_validator("latency_buckets")
    @classmethod
    def _check_buckets(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        return check_bounds(value)

    @property
    def effective_log_level(self) -> LogLevel:
        if self.log_level is not None:
            return self.log_level
        return "debug" if self.debug else "info"


SettingsModel = TypeVar("SettingsModel", bound=BaseSettings)


def _variable(model: type[BaseSettings], field_name: str) -> str:
    alias = model.model_fields[field_name].validation_alias
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        return first if isinstance(first, str) else field_name
    return field_name


def _accepts(model: type[BaseSettings], field_name: str) -> str:
    extra = model.model_fields[field_name].json_schema_extra
    if isinstance(extra, dict):
        return str(extra.get("accepts", ""))
    return ""


def _field_for(model: type[BaseSettings], loc: tuple[int | str, ...]) -> str | None:
    for part in loc:
        if not isinstance(part, str):
            continue
        if part in model.model_fields:
            return part
        for name, info in model.model_fields.items():
            alias = info.validation_alias
            choices = alias.choices if isinstance(alias, AliasChoices) else ()
            if any(isinstance(c, str) and c.lower() == part.lower() for c in choices):
                return name
    return None


def validate_settings(model: type[SettingsModel], what: str, **overrides: Any) -> SettingsModel:
    """Build ``model`` from the environment and ``overrides``, or raise one :class:`ConfigError`.

    The message names each bad variable, the value it had and what it accepts (the field's
    ``accepts`` note), so a typo in a deployment reads as one line, not a validation dump.
    """
    try:
        return model(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = _field_for(model, tuple(error["loc"]))
            if name is None:
                problems.append(error["msg"])
                continue
            # A validator of our own says what is wrong; pydantic's own messages do not add.
            why = error["msg"].removeprefix("Value error, ")
            detail = f" ({why})" if error["type"] == "value_error" else ""
            problems.append(
                f"{_variable(model, name)}={error.get('input')!r} is not valid: "
                f"expected {_accepts(model, name)}{detail}"
            )
        raise ConfigError(f"{what}: " + "; ".join(problems)) from None


def load_settings(**overrides: Any) -> Settings:
    """Read the environment (plus ``overrides`` by field name) or raise :class:`ConfigError`."""
    return validate_settings(Settings, "concmon configuration", **overrides)


def settings_table(model: type[BaseSettings] = Settings) -> str:
    """The Markdown table of every setting of ``model``, for the configuration docs."""
    rows = ["| variable | default | accepts | meaning |", "| --- | --- | --- | --- |"]
    for name, info in model.model_fields.items():
        default = info.default
        if isinstance(default, tuple):
            default = ",".join(f"{d:g}" if isinstance(d, float) else str(d) for d in default)
        shown = "(none)" if default in (None, "") else f"`{default}`"
        rows.append(
            f"| `{_variable(model, name)}` | {shown} | {_accepts(model, name)} "
            f"| {info.description} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())
