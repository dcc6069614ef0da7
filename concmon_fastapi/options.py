"""The ASGI adapter's options: the shared ones of :mod:`concmon.adapter_options` plus its own.

Its own are the route naming (``names``, ``name_for``) and the event-loop probe
(``loop_lag_interval``); the admission gate's (``max_concurrency``, ``max_queue``,
``queue_timeout``, ``retry_after``) are :class:`concmon.adapter_options.GateOptions`, shared
with the Django adapter. ``install()`` checks them eagerly, so a typo fails when the
application is assembled rather than on its first request (Starlette builds the middleware
stack lazily). The option table in docs/fastapi.md is ``options_table(Options)``.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Annotated, Any, ClassVar

from pydantic import PlainValidator

from concmon.adapter_options import GateOptions, Names, Seconds, option

Scope = MutableMapping[str, Any]


def _name_for(value: object) -> Callable[[Scope], str | None] | None:
    if value is None or callable(value):
        return value
    raise ValueError("invalid")


class Options(GateOptions):
    """Validated options of :func:`concmon_fastapi.install` (see docs/fastapi.md)."""

    adapter: ClassVar[str] = "concmon_fastapi"

    names: Names = option(
        {},
        "a mapping of route templates to non-empty names",
        'Rename endpoints: route template to name (`{"/items/{item_id}": "item"}`); '
        '`"<unmatched>"` and `"/{path:path}"` can be renamed too.',
    )
    name_for: Annotated[Callable[[Scope], str | None] | None, PlainValidator(_name_for)] = option(
        None,
        "a function of the ASGI scope returning a name, or None",
        "Name requests with this function instead of route templates. Keep its answers to a "
        "bounded set. An answer of None (the application has not routed yet) is asked again "
        "when the response starts and at the end, and stays `<unmatched>` then; "
        "`concmon_fastapi.resolvers` has ready-made ones for Litestar and Quart.",
    )
    loop_lag_interval: Seconds | None = option(
        0.25,
        "a number of seconds greater than 0, or None (no probe)",
        "Seconds between two event-loop probe ticks.",
    )
