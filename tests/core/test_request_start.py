"""The X-Request-Start parser: every unit and form proxies send, and nothing implausible."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from concmon import ConfigError
from concmon.adapter_options import AdapterOptions
from concmon.request_start import FUTURE_SKEW_S, MAX_WAIT_S, environ_key, seconds_waited

NOW = 1_780_000_000.0  # a wall-clock moment in 2026
nows = st.floats(min_value=1e9, max_value=4e9)  # 2001 to 2096
waits = st.floats(min_value=0.0, max_value=MAX_WAIT_S - 0.01)


@given(now=nows, wait=waits)
def test_seconds_with_decimals_and_the_t_prefix(now: float, wait: float) -> None:
    """Seconds with 6 decimals, bare or after t=, give the wait within the printed precision."""
    for text in (f"{now - wait:.6f}", f"t={now - wait:.6f}", f" t={now - wait:.6f} "):
        got = seconds_waited(text, now)
        assert got is not None and abs(got - wait) <= 1e-5


@given(now=nows, wait=waits)
def test_nginx_msec_milliseconds_and_microseconds(now: float, wait: float) -> None:
    """nginx's t=${msec}, integer milliseconds and microseconds are told apart by magnitude."""
    stamp = now - wait
    forms = {
        f"t={stamp:.3f}": 1e-3,
        f"t={math.floor(stamp * 1e3)}": 1e-3,
        f"{math.floor(stamp * 1e6)}": 1e-6,
        f"{math.floor(stamp)}": 1.0,
    }
    for text, precision in forms.items():
        got = seconds_waited(text, now)
        if got is None:  # rounding took the stamp just past the oldest one believed
            assert wait > MAX_WAIT_S - precision - 1e-6
            continue
        assert abs(got - wait) <= precision + 1e-6, text


@given(now=nows, wait=waits)
def test_bytes_read_like_text(now: float, wait: float) -> None:
    """An ASGI header value (bytes) gives what the same text gives."""
    text = f"t={now - wait:.3f}"
    assert seconds_waited(text.encode(), now) == seconds_waited(text, now)


@given(now=nows, ahead=st.floats(min_value=1e-5, max_value=FUTURE_SKEW_S - 1e-5))
def test_a_stamp_slightly_ahead_is_no_wait(now: float, ahead: float) -> None:
    """Up to the allowed skew into the future: clamped at 0."""
    assert seconds_waited(f"t={now + ahead:.6f}", now) == 0.0


@given(
    now=nows,
    off=st.one_of(
        st.floats(min_value=FUTURE_SKEW_S + 0.01, max_value=1e6).map(lambda s: -s),
        st.floats(min_value=MAX_WAIT_S + 0.01, max_value=1e8),
    ),
)
def test_implausible_stamps_are_skipped(now: float, off: float) -> None:
    """Further ahead than the skew, or older than the bound: None in every unit."""
    stamp = now - off
    for text in (f"t={stamp:.3f}", f"{stamp * 1e3:.0f}", f"{stamp * 1e6:.0f}"):
        assert seconds_waited(text, now) is None, text


@pytest.mark.parametrize(
    "text",
    [None, "", b"", "t=", "t=abc", "soon", "nan", "t=inf", "-1", "0", "t=1e30", "1,5", "t =1"],
)
def test_no_number_or_none_is_skipped(text: str | bytes | None) -> None:
    """Absent, empty, not a number, not finite, or no Unix time of any unit: None."""
    assert seconds_waited(text, NOW) is None


@given(st.one_of(st.text(max_size=40), st.binary(max_size=40)))
def test_any_value_is_none_or_a_believable_wait(value: str | bytes) -> None:
    """Whatever a client sends, the answer is None or a wait from 0 to the bound; no error."""
    got = seconds_waited(value, NOW)
    assert got is None or 0.0 <= got <= MAX_WAIT_S


def test_nanoseconds_are_not_read_as_anything() -> None:
    """A stamp in nanoseconds is past every unit read: skipped, not misread."""
    assert seconds_waited(str(int((NOW - 2.0) * 1e9)), NOW) is None


def test_environ_key_of_a_header() -> None:
    """The WSGI environ key of a header name: HTTP_, upper case, dashes as underscores."""
    assert environ_key("x-request-start") == "HTTP_X_REQUEST_START"


@pytest.mark.parametrize(
    ("value", "header"),
    [
        (None, None),
        ("", None),
        (False, None),
        ("X-Queue-Start", "x-queue-start"),
        ("x-request-start", "x-request-start"),
    ],
)
def test_request_start_header_option(value: object, header: str | None) -> None:
    """The option takes a header name (kept in lower case) or None/empty to read none."""
    assert AdapterOptions.parse({"request_start_header": value}).request_start_header == header


@pytest.mark.parametrize("value", ["x request", "x_request_start", "-x", 3, "x:y"])
def test_request_start_header_option_rejects_what_is_no_header_name(value: object) -> None:
    """A value that is no header name fails with one line naming the option."""
    with pytest.raises(ConfigError) as raised:
        AdapterOptions.parse({"request_start_header": value})
    assert "request_start_header=" in str(raised.value) and "\n" not in str(raised.value)


def test_request_start_header_default() -> None:
    """By default the adapters read X-Request-Start."""
    assert AdapterOptions.parse({}).request_start_header == "x-request-start"
