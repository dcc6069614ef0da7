"""Settings, read from the environment with pydantic-settings.

The variables the first deployments used (``ENABLE_CONCURRENCY_MONITOR``,
``MONITOR_UPDATE_INTERVAL``, ``DEBUG``, ``LOG_LEVEL``) keep their exact, unprefixed names so that
existing launch scripts keep working; everything added since is ``CONCMON_*``. A bad value fails
:func:`load_settings` with one :class:`ConfigError` that names the variable and what it accepts,
never a validation traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LogLevel = Literal["debug", "info", "warning", "error"]


def split_commas(value: Any) -> Any:
    """``"a, b,,c"`` -> ``("a", "b", "c")``: list variables are comma-separated, not JSON."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class ConfigError(ValueError):
    """A setting has a value concmon cannot use; the message names the variable."""


def _env(name: str, *extra: str) -> AliasChoices:
    # The environment variable first; the Python field name is accepted too (populate_by_name).
    return AliasChoices(name, *extra)


class Settings(BaseSettings):
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
        validation_alias=_env("MONITOR_UPDATE_INTERVAL", "update_interval"),
        description="Seconds between two reports.",
        json_schema_extra={"accepts": "a number of seconds greater than 0, such as 5 or 0.5"},
    )
    debug: bool = Field(
        False,
        validation_alias=_env("DEBUG", "debug"),
        description="Development mode: debug logging unless LOG_LEVEL says otherwise.",
        json_schema_extra={"accepts": "true or false"},
    )
    log_level: LogLevel | None = Field(
        None,
        validation_alias=_env("LOG_LEVEL", "log_level"),
        description="Level of concmon's own log messages (default: info, or debug with DEBUG).",
        json_schema_extra={"accepts": "debug, info, warning or error"},
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
    def _lower_level(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            return value or None
        return value

    @field_validator("sinks", "blocked_plugins", mode="before")
    @classmethod
    def _split_names(cls, value: Any) -> Any:
        return split_commas(value)

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
            problems.append(
                f"{_variable(model, name)}={error.get('input')!r} is not valid: "
                f"expected {_accepts(model, name)}"
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
            default = ",".join(default)
        shown = "(none)" if default in (None, "") else f"`{default}`"
        rows.append(
            f"| `{_variable(model, name)}` | {shown} | {_accepts(model, name)} "
            f"| {info.description} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())
