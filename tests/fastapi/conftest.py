"""Helpers for the adapter tests: bounded polling on the live monitor, invariants after each."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from concmon import Snapshot, get_monitor
from concmon.testing import check_invariants


def snap() -> Snapshot:
    """The process monitor's snapshot now, checked against the accounting rules."""
    return check_invariants(get_monitor().snapshot())


def wait_until(
    predicate: Callable[[Snapshot], bool], timeout: float = 15.0, what: str = "condition"
) -> Snapshot:
    """Poll the monitor until ``predicate`` holds (bounded); returns the snapshot that did."""
    deadline = time.monotonic() + timeout
    while True:
        current = snap()
        if predicate(current):
            return current
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s: {current.to_dict()}")
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def invariants_hold_after() -> Iterator[None]:
    """Every adapter test ends with a monitor whose snapshot keeps the accounting rules."""
    yield
    check_invariants(get_monitor().snapshot())


def drained(timeout: float = 15.0) -> Snapshot:
    """Wait until nothing is active or queued (the server closes a request just after the
    client has its response), then assert the snapshot is balanced."""
    from concmon.testing import check_balanced

    return check_balanced(
        wait_until(
            lambda s: (
                s.active == 0
                and s.queue_depth == 0
                and not any(e.active for e in s.websockets.values())
                and not any(e.active for e in s.background.values())
            ),
            timeout,
            "drained",
        )
    )
