"""Distributions: every finish lands in exactly one bucket, percentiles come from the buckets."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from concmon import ConcurrencyMonitor, Outcome
from concmon.monitor import DEFAULT_BUCKETS
from concmon.snapshot import Distribution, Snapshot, check_bounds
from concmon.testing import FakeClock, check_balanced

durations = st.floats(min_value=0.0, max_value=1000.0, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(durations, max_size=60))
def test_each_duration_lands_in_the_one_bucket_whose_bounds_hold_it(values: list[float]) -> None:
    """Bucket i counts exactly the durations in (bound[i-1], bound[i]], the last one those above
    every bound; the lifetime count equals the requests finished."""
    clock = FakeClock()
    monitor = ConcurrencyMonitor(clock=clock)
    for value in values:
        ticket = monitor.http.begin("/x")
        clock.advance(value)
        ticket.finish()
    stats = check_balanced(monitor.snapshot()).endpoints.get("/x")
    if not values:
        assert stats is None
        return
    assert stats.duration_all is not None
    counts = stats.duration_all.counts
    assert sum(counts) == len(values) == stats.completed
    for i, n in enumerate(counts):
        low = DEFAULT_BUCKETS[i - 1] if i else -math.inf
        high = DEFAULT_BUCKETS[i] if i < len(DEFAULT_BUCKETS) else math.inf
        assert n == sum(1 for v in _measured(values) if low < v <= high)


def _measured(values: list[float]) -> list[float]:
    """The durations a FakeClock starting at 1000.0 really gives for ``values`` in turn."""
    out, now = [], 1000.0
    for value in values:
        later = now + value
        out.append(later - now)
        now = later
    return out


def test_percentiles_interpolate_inside_a_bucket_and_never_pass_the_maximum() -> None:
    """Ten requests of 20 ms and one of 3 s: p50 lies in the 10-25 ms bucket, p99 is capped by
    the slowest request ever seen, and max is exact."""
    clock = FakeClock()
    monitor = ConcurrencyMonitor(clock=clock)
    for seconds in [0.02] * 10 + [3.0]:
        ticket = monitor.http.begin("/x")
        clock.advance(seconds)
        ticket.finish()
    d = monitor.snapshot().endpoints["/x"].duration
    assert d is not None and d.count == 11
    assert d.p50_ms is not None and 10.0 < d.p50_ms <= 25.0
    assert d.max_ms == 3000.0
    assert d.p99_ms is not None and 2500.0 < d.p99_ms <= 3000.0
    assert d.mean_s == pytest.approx((0.2 + 3.0) / 11)


def test_a_value_above_every_bound_has_the_maximum_as_its_percentile() -> None:
    """Above the last bound nothing is known but the maximum, so that is the estimate."""
    d = Distribution((1.0, 2.0), (0, 0, 2), 1300.0, 700.0)
    assert d.quantile(0.5) == 700.0
    assert Distribution((1.0,), (0, 0), 0.0, None).quantile(0.5) is None


def test_interval_distributions_restart_at_each_report_lifetime_ones_never() -> None:
    """A report starts the interval's buckets from zero; the lifetime buckets keep counting."""
    clock = FakeClock()
    monitor = ConcurrencyMonitor(clock=clock)
    for _ in range(3):
        ticket = monitor.http.begin("/x")
        clock.advance(0.004)
        ticket.finish()
    first = monitor.report_snapshot().endpoints["/x"]
    ticket = monitor.http.begin("/x")
    clock.advance(0.2)
    ticket.finish()
    clock.advance(1.8)
    second = monitor.report_snapshot().endpoints["/x"]
    assert first.duration is not None and first.duration.count == 3
    assert second.duration is not None and second.duration.count == 1
    assert second.duration.max_ms == pytest.approx(200.0)
    assert second.duration_all is not None and second.duration_all.count == 4
    assert second.duration_all.max_ms == pytest.approx(200.0)
    assert second.rate == 0.5  # one finished over a 2 s interval


def test_head_first_byte_and_queue_time_land_in_their_distributions_at_finish() -> None:
    """The times an adapter tells a ticket are measured from admission and counted when the
    request finishes, so every distribution counts the same finished requests."""
    clock = FakeClock()
    monitor = ConcurrencyMonitor(clock=clock)
    ticket = monitor.http.admit("POST")
    ticket.waited_before(0.3)
    clock.advance(0.01)
    ticket.route("/chat")
    clock.advance(0.04)
    ticket.respond(200)
    ticket.respond(500)  # only the first head counts
    clock.advance(0.45)
    ticket.first_byte()
    ticket.first_byte()
    running = monitor.snapshot().endpoints["/chat"]
    assert running.ttfb is not None and running.ttfb.count == 0
    clock.advance(2.0)
    ticket.finish()
    stats = check_balanced(monitor.snapshot()).endpoints["/chat"]
    assert stats.head is not None and stats.head.max_ms == pytest.approx(50.0)
    assert stats.ttfb is not None and stats.ttfb.max_ms == pytest.approx(500.0)
    assert stats.queued is not None and stats.queued.max_ms == pytest.approx(300.0)
    assert stats.duration is not None and stats.duration.max_ms == pytest.approx(2500.0)
    assert stats.responses == {"POST 2xx ok": 1}


def test_a_request_that_sent_nothing_has_no_head_or_first_byte_sample() -> None:
    """A client gone before the first byte is cancelled with a duration but no time to first
    byte; its status class is ``none``. A negative queue time is clamped at 0."""
    clock = FakeClock()
    monitor = ConcurrencyMonitor(clock=clock)
    ticket = monitor.http.begin("/stream", "GET")
    ticket.waited_before(-2.0)
    clock.advance(1.0)
    ticket.finish(Outcome.CANCELLED)
    stats = monitor.snapshot().endpoints["/stream"]
    assert stats.ttfb is not None and stats.ttfb.count == 0
    assert stats.head is not None and stats.head.count == 0
    assert stats.queued is not None and stats.queued.max_s == 0.0
    assert stats.responses == {"GET none cancelled": 1}


def test_unknown_methods_fold_into_other_and_status_classes_are_bounded() -> None:
    """A made-up method is counted as ``other``, never as a new key; statuses fold by class."""
    monitor = ConcurrencyMonitor()
    for method, status in (("BREW", 418), ("get", 200), ("DELETE", 204), ("GET", 999)):
        ticket = monitor.http.begin("/x", method)
        ticket.respond(status)
        ticket.finish(Outcome.FAILED if status >= 500 else Outcome.OK)
    assert monitor.snapshot().endpoints["/x"].responses == {
        "other 4xx ok": 1,
        "other 2xx ok": 1,
        "DELETE 2xx ok": 1,
        "GET none failed": 1,
    }


def test_websockets_and_tasks_carry_durations_only() -> None:
    """A WebSocket or a task has no method, status or first byte: only its duration."""
    monitor = ConcurrencyMonitor()
    monitor.websocket.begin("/ws").finish()
    stats = monitor.snapshot().websockets["/ws"]
    assert stats.duration_all is not None and stats.duration_all.count == 1
    assert (stats.ttfb, stats.head, stats.queued, stats.responses) == (None, None, None, {})


def test_a_snapshot_with_distributions_reads_back_exactly() -> None:
    """to_dict/from_dict are inverses with distributions, rates and responses."""
    clock = FakeClock()
    monitor = ConcurrencyMonitor(clock=clock, buckets=(0.1, 1.0))
    ticket = monitor.http.begin("/x", "GET")
    clock.advance(0.3)
    ticket.respond(201)
    ticket.first_byte()
    ticket.finish()
    snap = monitor.snapshot()
    assert Snapshot.from_dict(snap.to_dict()) == snap
    assert snap.to_dict()["buckets_s"] == [0.1, 1.0]
    assert snap.to_dict()["endpoints"]["/x"]["ttfb"]["buckets"] == [0, 1, 0]


def test_distributions_add_up_on_the_same_bounds_only() -> None:
    """plus() sums bucket by bucket and keeps the larger maximum; different bounds refuse."""
    a = Distribution((1.0, 2.0), (1, 0, 0), 0.5, 0.5)
    b = Distribution((1.0, 2.0), (0, 2, 1), 6.0, 3.0)
    assert a.plus(b) == Distribution((1.0, 2.0), (1, 2, 1), 6.5, 3.0)
    assert b.minus(Distribution((1.0, 2.0), (0, 1, 0), 1.5, 1.5)).counts == (0, 1, 1)
    with pytest.raises(ValueError, match="different buckets"):
        a.plus(Distribution((5.0,), (1, 0), 1.0, 1.0))


@pytest.mark.parametrize(
    ("bounds", "message"),
    [
        ((), "at least one"),
        ((0.5, 0.1), "must increase"),
        ((0.0, 1.0), "above 0"),
        ((math.inf,), "finite"),
        (tuple(range(1, 70)), "at most 64"),
    ],
)
def test_bucket_bounds_that_cannot_work_are_refused_by_name(
    bounds: tuple[float, ...], message: str
) -> None:
    """Bounds that are empty, unordered, not positive, infinite or too many are refused."""
    with pytest.raises(ValueError, match=message):
        check_bounds(bounds)


def test_a_duration_equal_to_a_bound_is_counted_in_that_bound_s_bucket() -> None:
    """A duration of exactly 100 ms is in the ``le="0.1"`` bucket (less or equal), not above."""
    clock = FakeClock(start=0.0)
    monitor = ConcurrencyMonitor(clock=clock)
    ticket = monitor.http.begin("/x")
    clock.advance(0.1)
    ticket.finish()
    d = monitor.snapshot().endpoints["/x"].duration_all
    assert d is not None and d.counts[DEFAULT_BUCKETS.index(0.1)] == 1
