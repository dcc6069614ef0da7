"""The documentation that is generated from code stays in sync with it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from concmon.exporters.config import settings_table as exporter_settings_table
from concmon.settings import settings_table

DOCS = Path(__file__).resolve().parents[2] / "docs"

TABLES = pytest.mark.parametrize(
    "table", [settings_table, exporter_settings_table], ids=["Settings", "ExporterSettings"]
)


def _configuration() -> str:
    return (DOCS / "configuration.md").read_text()


def test_configuration_table_matches_the_settings_model() -> None:
    """docs/configuration.md carries the table generated from Settings, unchanged."""
    assert settings_table() in _configuration()


def test_configuration_carries_the_exporter_settings_between_their_markers() -> None:
    """The exporter table of docs/configuration.md is exactly what ExporterSettings generates."""
    text = _configuration()
    between = text.split("<!-- exporter-settings:start -->\n")[1].split("\n<!-- exporter-")[0]
    assert between == exporter_settings_table()


@TABLES
def test_every_setting_is_documented(table: Callable[[], str]) -> None:
    """Each environment variable of both settings models appears in the configuration page,
    CONCMON_PROMETHEUS_* included."""
    text = _configuration()
    for line in table().splitlines()[2:]:
        variable = line.split("|")[1].strip()
        assert variable in text
