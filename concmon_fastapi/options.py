"""The ASGI adapter's options: the shared ones of :mod:`concmon.adapter_options` plus its own.

Its own are the route naming (``names``, ``name_for``), the admission gate (``max_concurrency``,
``max_queue``, ``queue_timeout``, ``retry_after``) and the event-loop probe
(``loop_lag_interval``). ``install()`` checks them eagerly, so a typo fails when the
application is assembled rather than on its first request (Starlette builds the middleware
stack lazily). The option table in docs/fastapi.md is ``options_table(Options)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, MutableMapping
from typing import Annotated, Any, ClassVar, Self

from pydantic import Field, PlainValidator, model_validator
from pydantic_core import PydanticCustomError

from concmon.adapter_options import AdapterOptions, option

Scope = MutableMapping[str, Any]

Seconds = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]


def _names(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()
    ):
        return dict(value)
    raise ValueError("invalid")


def _name_for(value: object) -> Callable[[Scope], str] | None:
    if value is None or callable(value):
        return value
    raise ValueError("invalid")


class Options(AdapterOptions):
    """Validated options of :func:`concmon_fastapi.install` (see docs/fastapi.md)."""

    adapter: ClassVar[str] = "concmon_fastapi"

    names: Annotated[dict[str, str], PlainValidator(_names)] = option(
        {},
        "a mapping of route templates to non-empty names",
        'Rename endpoints: route template to name (`{"/items/{item_id}": "item"}`); '
        '`"<unmatched>"` and `"/{path:path}"` can be renamed too.',
    )
    name_for: Annotated[Callable[[Scope], str] | None, PlainValidator(_name_for)] = option(
        None,
        "a function of the ASGI scope returning a name, or None",
        "Name requests with this function instead of route templates. Keep its answers to a "
        "bounded set.",
    )
    max_concurrency: Annotated[int, Field(strict=True, ge=1)] | None = option(
        None,
        "a whole number of at least 1, or None",
        "Admission limit: at most this many requests inside the application at once.",
    )
    max_queue: Annotated[int, Field(strict=True, ge=0)] | None = option(
        None,
        "a whole number, 0 or more, or None (unbounded)",
        "With `max_concurrency`: how many may wait; past it, 503 at once.",
    )
    queue_timeout: Seconds | None = option(
        None,
        "a number of seconds greater than 0, or None (wait forever)",
        "With `max_concurrency`: seconds a request may wait before it gets a 503.",
    )
    retry_after: Annotated[int, Field(strict=True, ge=0)] | None = option(
        None,
        "a whole number of seconds, 0 or more",
        "Seconds in the `Retry-After` header of a 503 from the gate.",
        shown="`ceil(queue_timeout)` or 1",
    )
    loop_lag_interval: Seconds | None = option(
        0.25,
        "a number of seconds greater than 0, or None (no probe)",
        "Seconds between two event-loop probe ticks.",
    )

    @model_validator(mode="after")
    def _gate_has_a_limit(self) -> Self:
        if self.max_concurrency is None and (
            self.max_queue is not None or self.queue_timeout is not None
        ):
            raise PydanticCustomError(
                "needs_limit",
                "max_queue and queue_timeout need max_concurrency (the limit they queue for)",
            )
        return self

    @property
    def retry_seconds(self) -> int:
        """The ``Retry-After`` of a 503 from the gate: ``retry_after``, else the queue timeout
        rounded up, else 1."""
        if self.retry_after is not None:
            return self.retry_after
        return max(1, math.ceil(self.queue_timeout)) if self.queue_timeout is not None else 1
