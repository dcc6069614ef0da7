"""The applications the peer benchmark serves: one trivial app per framework, per variant."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


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
