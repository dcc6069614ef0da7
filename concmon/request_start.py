"""The time a request queued before the application, from the proxy's ``X-Request-Start``.

A proxy in front of the server (nginx, a Heroku-style router, a load balancer) can stamp each
request with the wall-clock moment it took it: ``t=`` (optional) followed by Unix time in
seconds (with or without decimals; nginx's ``t=${msec}`` gives seconds with three decimals),
milliseconds or microseconds, told apart by their magnitude. The gap from that moment to the
moment the adapter admits the request is the queue no in-process monitor sees: the socket
backlog, a busy event loop or worker. :func:`seconds_waited` turns a header value into that gap,
or None when the value cannot be one; it is framework-free, so both adapters share it.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from concmon.monitor import Ticket

DEFAULT_HEADER: Final = "x-request-start"
"""The header read when the adapters' ``request_start_header`` option is not given."""

FUTURE_SKEW_S: Final = 1.0
"""A stamp up to this far ahead of the application's clock is a clock skew and counts as no
wait (0); further ahead, the stamp is not believed and nothing is recorded."""

MAX_WAIT_S: Final = 600.0
"""The longest wait believed. No proxy holds a request ten minutes before passing it on (their
own timeouts are shorter); a larger gap is a clock set wrong or a stamp that is not Unix time,
and is not recorded."""

_MILLISECONDS_FROM: Final = 1e11
"""Stamps from here up are milliseconds (1e11 seconds is more than 3,000 years away)."""

_MICROSECONDS_FROM: Final = 1e14
_TOO_LARGE: Final = 1e17
"""Microseconds below this; anything larger is no Unix time concmon reads."""


def seconds_waited(value: str | bytes | None, now: float) -> float | None:
    """The seconds between the stamp ``value`` and the wall-clock time ``now`` (Unix seconds).

    Clamped at 0 for a stamp slightly in the future (up to :data:`FUTURE_SKEW_S`). None when
    there is no value, it is not a number, or the gap is implausible: further in the future
    than the skew, or older than :data:`MAX_WAIT_S`.
    """
    if not value:
        return None
    text = value.strip()
    if text[:2] in ("t=", b"t="):
        text = text[2:]
    try:
        stamp = float(text)
    except ValueError:
        return None
    if not math.isfinite(stamp):
        return None
    if stamp >= _MILLISECONDS_FROM:
        if stamp < _MICROSECONDS_FROM:
            stamp /= 1e3
        elif stamp < _TOO_LARGE:
            stamp /= 1e6
        else:
            return None
    waited = now - stamp
    if waited > MAX_WAIT_S or waited < -FUTURE_SKEW_S:
        return None
    return waited if waited > 0.0 else 0.0


def tell_waited(ticket: Ticket, stamp: str | bytes) -> None:
    """Tell ``ticket`` how long its request queued before the application, from the proxy's
    ``stamp`` read now; nothing without a believable one."""
    waited = seconds_waited(stamp, time.time())
    if waited is not None:
        ticket.waited_before(waited)


def environ_key(header: str) -> str:
    """The WSGI environ key of the request header ``header`` (``HTTP_X_REQUEST_START``)."""
    return "HTTP_" + header.upper().replace("-", "_")


__all__ = [
    "DEFAULT_HEADER",
    "FUTURE_SKEW_S",
    "MAX_WAIT_S",
    "environ_key",
    "seconds_waited",
    "tell_waited",
]
