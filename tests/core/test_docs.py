"""The documentation that is generated from code stays in sync with it."""

from __future__ import annotations

from pathlib import Path

from concmon.settings import settings_table

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_configuration_table_matches_the_settings_model() -> None:
    """docs/configuration.md carries the table generated from Settings, unchanged."""
    assert settings_table() in (DOCS / "configuration.md").read_text()


def test_every_setting_is_documented_once() -> None:
    """Each environment variable appears in the configuration page."""
    text = (DOCS / "configuration.md").read_text()
    for line in settings_table().splitlines()[2:]:
        variable = line.split("|")[1].strip()
        assert variable in text
