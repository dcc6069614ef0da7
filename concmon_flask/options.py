"""The WSGI adapter's options: the shared ones of :mod:`concmon.adapter_options`, plus its own.

Every option can be given as a keyword argument of :class:`concmon_flask.ConcMon` or as an
``app.config["CONCMON_<NAME>"]`` key (keywords win). The core's settings (``update_interval``,
``sinks``, ``log_file``, ...) are accepted the same way and handed to
:func:`concmon.init_monitor`; where neither gives a value, the core's environment variables
apply. A value the adapter cannot use raises :class:`concmon.ConfigError` with one line naming
the option and what it accepts, at start-up rather than on the first request.
The option table in docs/flask.md is ``options_table(Options)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final

from concmon import ConfigError
from concmon.adapter_options import CORE_OPTIONS, AdapterOptions, Flag, core_options, option

CONFIG_PREFIX: Final = "CONCMON_"


class Options(AdapterOptions):
    """The checked adapter options; see docs/flask.md for what each one does."""

    adapter: ClassVar[str] = "concmon_flask"
    beside_core: ClassVar[bool] = True  # one Flask config holds both

    start_reporter: Flag = option(
        True,
        "true or false",
        "Start the reporting thread (tests and benchmarks switch it off).",
    )


__all__ = ["CONFIG_PREFIX", "CORE_OPTIONS", "Options", "core_options", "from_config"]


def from_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The options found in a Flask config as ``CONCMON_<NAME>`` keys, by option name."""
    found: dict[str, Any] = {}
    known = Options.option_names()
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
