"""Settings of the exporters, read from the environment like the core settings.

They live beside the exporters rather than in :class:`concmon.Settings` so that the core knows
no exporter by name; a bad value raises :class:`concmon.ConfigError` with one line naming the
variable, as the core settings do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from concmon.settings import OwnEnvironment, split_commas, validate_settings
from concmon.settings import settings_table as core_settings_table


class ExporterSettings(OwnEnvironment):
    """Every knob of the Prometheus, OpenTelemetry and DogStatsD exporters."""

    model_config = SettingsConfigDict(
        env_prefix="",
        case_sensitive=False,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
    )

    prometheus_multiproc_dir: Path | None = Field(
        None,
        validation_alias=AliasChoices(
            "CONCMON_PROMETHEUS_MULTIPROC_DIR",
            "PROMETHEUS_MULTIPROC_DIR",
            "prometheus_multiproc_dir",
        ),
        description=(
            "Directory shared by the worker processes of one host; setting it switches the "
            "Prometheus exporter to multi-process mode (one scrape reports every worker)."
        ),
        json_schema_extra={"accepts": "a writable directory path (created if missing)"},
    )
    prometheus_write_interval: float = Field(
        1.0,
        gt=0,
        le=60,
        validation_alias=AliasChoices(
            "CONCMON_PROMETHEUS_WRITE_INTERVAL", "prometheus_write_interval"
        ),
        description=(
            "Multi-process mode: seconds between two writes of a worker's state file, i.e. how "
            "stale another worker's figures can be in a scrape."
        ),
        json_schema_extra={"accepts": "seconds, greater than 0 and at most 60"},
    )
    prometheus_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        validation_alias=AliasChoices("CONCMON_PROMETHEUS_PORT", "prometheus_port"),
        description=(
            "Serve /metrics from the `prometheus` sink on this port, for processes without a "
            "web adapter (workers, scripts). Unset: no server of its own."
        ),
        json_schema_extra={"accepts": "a TCP port number"},
    )
    prometheus_addr: str = Field(
        "127.0.0.1",
        validation_alias=AliasChoices("CONCMON_PROMETHEUS_ADDR", "prometheus_addr"),
        description="Address the sink's own /metrics server binds to.",
        json_schema_extra={"accepts": "an IP address such as 127.0.0.1 or 0.0.0.0"},
    )
    statsd_host: str = Field(
        "127.0.0.1",
        validation_alias=AliasChoices("CONCMON_STATSD_HOST", "DD_AGENT_HOST", "statsd_host"),
        description="Host of the DogStatsD agent the `dogstatsd` sink sends to (UDP).",
        json_schema_extra={"accepts": "a host name or IP address"},
    )
    statsd_port: int = Field(
        8125,
        ge=1,
        le=65535,
        validation_alias=AliasChoices("CONCMON_STATSD_PORT", "DD_DOGSTATSD_PORT", "statsd_port"),
        description="UDP port of the DogStatsD agent.",
        json_schema_extra={"accepts": "a port number from 1 to 65535"},
    )
    statsd_namespace: str = Field(
        "concmon",
        validation_alias=AliasChoices("CONCMON_STATSD_NAMESPACE", "statsd_namespace"),
        description="Prefix of every DogStatsD metric name.",
        json_schema_extra={"accepts": "a metric name prefix such as concmon or myapp.concmon"},
    )
    statsd_tags: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        validation_alias=AliasChoices("CONCMON_STATSD_TAGS", "statsd_tags"),
        description="Tags added to every DogStatsD metric.",
        json_schema_extra={"accepts": "comma-separated tags such as env:prod,service:api"},
    )

    metrics_method_label: bool = Field(
        True,
        validation_alias=AliasChoices("CONCMON_METRICS_METHOD_LABEL", "metrics_method_label"),
        description=(
            "Publish the `method` label on the requests counter; off, its series are summed "
            "over the methods."
        ),
        json_schema_extra={"accepts": "true or false"},
    )
    metrics_status_label: bool = Field(
        True,
        validation_alias=AliasChoices("CONCMON_METRICS_STATUS_LABEL", "metrics_status_label"),
        description=(
            "Publish the `status` label (status class) on the requests counter; off, its "
            "series are summed over the classes."
        ),
        json_schema_extra={"accepts": "true or false"},
    )

    @property
    def labels_off(self) -> frozenset[str]:
        """The optional labels (see :attr:`concmon.exporters.catalogue.Metric.optional`)
        switched off."""
        off = set()
        if not self.metrics_method_label:
            off.add("method")
        if not self.metrics_status_label:
            off.add("status")
        return frozenset(off)

    @field_validator("statsd_tags", mode="before")
    @classmethod
    def _split_tags(cls, value: Any) -> Any:
        return split_commas(value)

    @field_validator("statsd_host", "prometheus_addr", "statsd_namespace")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        return value


def load_exporter_settings(**overrides: Any) -> ExporterSettings:
    """Read the exporter settings (``overrides`` by field name first) or raise ConfigError."""
    return validate_settings(ExporterSettings, "concmon exporter configuration", **overrides)


def settings_table() -> str:
    """The Markdown table of every exporter setting, for docs/exporters.md."""
    return core_settings_table(ExporterSettings)


if __name__ == "__main__":
    print(settings_table())
