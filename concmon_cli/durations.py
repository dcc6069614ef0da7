"""Reading time options: a span back from now (``90s``, ``10m``, ``1h30m``) or an instant.

Every parser takes the option's name, so a message always names the option the user typed
(``--max-age``, ``--since``), never another one.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final

from concmon_cli.errors import CliError

_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_SPANS: Final = "90s, 10m, 1h30m, 2d"


def _seconds(text: str) -> float | None:
    compact = text.strip().lower().replace(" ", "")
    pos, seconds = 0, 0.0
    while pos < len(compact):
        m = _PART.match(compact, pos)
        if m is None:
            return None
        seconds += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return seconds if compact else None


def parse_span(text: str, option: str) -> float:
    """Seconds in ``text`` such as ``45s``, ``10m``, ``1h30m`` or ``2d``; raises CliError
    naming ``option``."""
    seconds = _seconds(text)
    if seconds is None:
        raise CliError(f"{option} {text!r} is not a duration: use e.g. {_SPANS}")
    return seconds


def parse_since(text: str, option: str, now: datetime | None = None) -> datetime:
    """The instant ``text`` names: ``now`` minus a span, or an ISO 8601 time (UTC if naive)."""
    now = now or datetime.now(UTC)
    try:
        instant = datetime.fromisoformat(text.strip())
    except ValueError:
        seconds = _seconds(text)
        if seconds is None:
            raise CliError(
                f"{option} {text!r} is not a duration or a time: use e.g. {_SPANS} "
                "or an ISO time such as 2026-01-31T12:00:00+00:00"
            ) from None
        return now - timedelta(seconds=seconds)
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant


def parse_timestamp(text: str) -> datetime:
    """A snapshot's timestamp as an aware datetime (naive ones are taken as UTC)."""
    instant = datetime.fromisoformat(text)
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant
