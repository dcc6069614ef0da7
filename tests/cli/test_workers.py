"""Summing workers: exact for counts, never breaking the accounting rules."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from concmon.testing import check_invariants
from concmon_cli.workers import WorkerSet, merge
from tests.cli.conftest import busy_snapshot

worker_st = st.tuples(
    st.integers(0, 20), st.integers(0, 20), st.integers(0, 20), st.floats(0.5, 10.0)
)


@settings(max_examples=40, deadline=None)
@given(st.lists(worker_st, min_size=2, max_size=5))
def test_sum_of_workers_keeps_every_invariant(workers: list[tuple[int, int, int, float]]) -> None:
    """The sum's totals are the sums, and total = completed + active still holds."""
    snaps = [
        busy_snapshot(pid=i + 1, active=a, done=d, failed=min(f, d), interval=iv)
        for i, (a, d, f, iv) in enumerate(workers)
    ]
    total = check_invariants(merge(snaps))
    assert total.pid == 0
    assert total.active == sum(s.active for s in snaps)
    assert total.total == sum(s.total for s in snaps)
    assert total.failed == sum(s.failed for s in snaps)
    name = "/chat/completions"
    summed = sum(s.endpoints[name].active for s in snaps if name in s.endpoints)
    assert (total.endpoints[name].active if name in total.endpoints else 0) == summed


def test_one_worker_is_returned_unchanged() -> None:
    """With a single worker the sum is that worker's snapshot, byte for byte."""
    snap = busy_snapshot()
    assert merge([snap]) is snap


def test_duration_means_are_weighted_by_request_rate() -> None:
    """A busy fast worker and an idle slow one: the mean leans to the busy one."""
    fast = busy_snapshot(pid=1)
    slow = busy_snapshot(pid=2)
    ep = "/chat/completions"
    fast = dataclasses.replace(
        fast,
        endpoints={ep: dataclasses.replace(fast.endpoints[ep], avg_active=9.0, avg_ms=10.0)},
    )
    slow = dataclasses.replace(
        slow,
        endpoints={ep: dataclasses.replace(slow.endpoints[ep], avg_active=1.0, avg_ms=1000.0)},
    )
    avg = merge([fast, slow]).endpoints[ep].avg_ms
    assert avg is not None
    assert 10.0 < avg < 20.0


def test_worker_set_keeps_latest_and_previous_and_ignores_older() -> None:
    """Reports arriving late for a pid never replace a newer one."""
    ws = WorkerSet()
    new, old = busy_snapshot(active=5, seconds_ago=0), busy_snapshot(active=1, seconds_ago=5)
    ws.add(new)
    ws.add(old)
    assert ws.latest[4242].active == 5
    assert ws.previous[4242].active == 1
