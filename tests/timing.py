"""Reading an adapter's timings from a real server's JSON endpoint, for the timing tests of
every adapter: the figures of one endpoint, waited for within a bound, and the proxy stamps
(``X-Request-Start``) in each form a proxy writes."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import httpx

STAMP_FORMS: dict[str, tuple[float, Callable[[float], str]]] = {
    "nginx, t= and seconds with 3 decimals": (2.0, lambda s: f"t={s:.3f}"),
    "seconds, no decimals": (3.0, lambda s: f"{math.floor(s)}"),
    "seconds, 6 decimals": (1.5, lambda s: f"{s:.6f}"),
    "t= and milliseconds": (4.0, lambda s: f"t={math.floor(s * 1e3)}"),
    "microseconds": (5.0, lambda s: f"{math.floor(s * 1e6)}"),
}
"""form -> (seconds ago, how a proxy writes that Unix time)."""


def endpoint(url: str, name: str) -> dict[str, Any]:
    """The endpoint's figures as the server's JSON endpoint shows them now."""
    data: dict[str, Any] = httpx.get(f"{url}/concurrency", timeout=20).json()
    return data["endpoints"].get(name, {})


def reached(
    url: str, name: str, what: Callable[[dict[str, Any]], bool], within_s: float = 20.0
) -> dict[str, Any]:
    """The endpoint's figures once ``what`` holds for them (within ``within_s``)."""
    deadline = time.monotonic() + within_s
    while True:
        figures = endpoint(url, name)
        if figures and what(figures):
            return figures
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}: not reached: {figures}")
        time.sleep(0.01)


def settled(url: str, name: str, completed: int, within_s: float = 20.0) -> dict[str, Any]:
    """The endpoint's figures once ``completed`` requests to it have finished, none active."""
    return reached(url, name, lambda f: f["completed"] == completed and f["active"] == 0, within_s)


def count(figures: dict[str, Any], distribution: str) -> int:
    """How many requests the lifetime ``distribution`` holds (0 when it has none yet)."""
    value = figures.get(f"{distribution}_all")
    return 0 if value is None else int(value["count"])


def total(figures: dict[str, Any], distribution: str) -> float:
    """The lifetime ``distribution``'s sum in seconds."""
    return float(figures[f"{distribution}_all"]["sum_s"])
