"""The applications the peer benchmark serves: one trivial app per framework, per variant."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

EXPERIMENTS: Final = ("passthrough", "uncounted")
"""Variants that take concmon apart, served only when asked for by name (bench/simultaneous.py):

* ``passthrough``: a middleware that only awaits (ASGI) or calls (WSGI) the application, the
  price of one more layer;
* ``uncounted``: the ``concmon`` variant itself (its ``build`` is called), with the core's two
  calls per request (``admit`` and ``finish``) replaced by one C call each that counts nothing.
  It is the floor any implementation of the counting could reach: what remains is the adapter's
  own work (the route name, the wrapped ``send`` or ``start_response``, the end of the body).
"""


@dataclass
class Built:
    """An app and a way to ask its instrumentation how many requests it has recorded.

    The benchmark checks the count after each in-process measurement: an instrumentation that
    silently stopped measuring (a changed API, a path it skips) would otherwise look free.
    """

    app: Any
    recorded: Callable[[], int] | None


def prometheus_count(registry: Any, name: str) -> int:
    """The sum of every sample called ``name`` in a prometheus_client registry."""
    return int(
        sum(
            sample.value
            for metric in registry.collect()
            for sample in metric.samples
            if sample.name == name
        )
    )


def uncount(exchange_class: type) -> None:
    """Make this process's counting free: ``admit`` and ``finish`` become ``{}.get``.

    ``{}.get`` takes the same arguments as both methods and returns at once from C; the
    exchange's ``_counters`` reads as None, so the adapter never thinks a request still open.
    Only for a benchmark server process of its own: nothing is counted afterwards.
    """
    from concmon.monitor import EndpointGroup

    nothing: Any = staticmethod({}.get)
    EndpointGroup.admit = nothing  # type: ignore[method-assign]
    exchange_class.finish = nothing  # type: ignore[attr-defined]
    exchange_class._counters = None  # type: ignore[attr-defined]
