"""The Django adapter's options: the shared ones, the admission gate's, and its own naming.

They come from the ``CONCMON`` dict of the Django settings, keyed by option name
(``CONCMON = {"json_path": "/concurrency", "prometheus": True}``). The core's settings
(``update_interval``, ``sinks``, ``log_file``, ...) may sit in the same dict and go to
:func:`concmon.init_monitor`; whatever neither gives comes from the core's environment variables,
as for the other adapters. The option table in docs/django.md is ``options_table(Options)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import PlainValidator

from concmon import ConfigError
from concmon.adapter_options import Flag, GateOptions, Names, option

SETTING: Final = "CONCMON"
"""The name of the Django setting holding the options."""

Naming = Literal["route", "view"]


def _naming(value: Any) -> Naming:
    if value == "route":
        return "route"
    if value == "view":
        return "view"
    raise ValueError("invalid")


class Options(GateOptions):
    """The checked options of the Django adapter; see docs/django.md for what each one does."""

    adapter: ClassVar[str] = "concmon_django"
    beside_core: ClassVar[bool] = True  # one CONCMON dict holds both

    naming: Annotated[Naming, PlainValidator(_naming)] = option(
        "route",
        '"route" or "view"',
        "Name requests by the URL pattern Django resolved (`resolver_match.route`, include() "
        'prefixes joined: `api/items/<int:pk>/`), or by its view name (`"items:detail"`).',
    )
    names: Names = option(
        {},
        "a mapping of endpoint names to non-empty names",
        'Rename endpoints: name to shown name (`{"api/items/<int:pk>/": "item"}`); '
        '`"<unmatched>"` can be renamed too.',
    )
    start_reporter: Flag = option(
        True,
        "true or false",
        "Start the reporting thread in `AppConfig.ready()` (tests switch it off).",
    )


def from_settings(settings: Any) -> dict[str, Any]:
    """The ``CONCMON`` dict of the Django ``settings`` (empty when it is not set)."""
    values = getattr(settings, SETTING, None)
    if values is None:
        return {}
    if not isinstance(values, Mapping) or not all(isinstance(k, str) for k in values):
        raise ConfigError(
            f"concmon_django: settings.{SETTING} must be a dict of option names to values, "
            f"not {type(values).__name__}"
        )
    return dict(values)


__all__ = ["SETTING", "Naming", "Options", "from_settings"]
