"""Little's law per endpoint: healthy traffic holds it, stuck or unaccounted requests break it."""

from __future__ import annotations

import dataclasses

from concmon import ConcurrencyMonitor, Snapshot
from concmon.littles_law import check_littles_law
from concmon.testing import FakeClock

EP = "/v1/chat/completions"


def _interval(lasting: float, stuck: int = 0, every: float = 0.1) -> Snapshot:
    """The second 10 s interval of steady traffic (a request every ``every`` s lasting
    ``lasting`` s, cut by the reports wherever they fall, so requests span both boundaries),
    with ``stuck`` requests begun before the first and never finished."""
    clock = FakeClock(start=0.0)
    monitor = ConcurrencyMonitor(clock=clock)
    for _ in range(stuck):
        monitor.http.begin(EP, "GET")
    starts = [i * every for i in range(int(20.0 / every))]
    events = sorted(
        [(t, 1, i) for i, t in enumerate(starts)]
        + [(t + lasting, 0, i) for i, t in enumerate(starts)]
    )
    tickets = {}
    for report_at in (10.0, 20.0):
        while events and events[0][0] < report_at:
            when, begins, i = events.pop(0)
            clock.advance(when - clock())
            if begins:
                tickets[i] = monitor.http.begin(EP, "GET")
            else:
                tickets.pop(i).finish()
        clock.advance(report_at - clock())
        snap = monitor.report_snapshot()
    return snap


def test_short_requests_hold_the_law() -> None:
    """Ten 50 ms requests a second: mean concurrency equals rate x mean duration, nothing
    unexplained."""
    snap = _interval(lasting=0.05)
    (check,) = check_littles_law(snap)
    assert abs(check.mean_active - 0.5) < 0.01
    assert abs(check.explained - check.mean_active) < 0.01
    assert check.holds and check.unexplained == 0.0


def test_one_stuck_request_shows_as_one_unexplained_request() -> None:
    """A request in flight for the whole interval, longer than any that finished, adds about
    one request of concurrency that no finished duration explains."""
    snap = _interval(lasting=0.05, stuck=1)
    (check,) = check_littles_law(snap)
    assert not check.holds
    assert 0.8 < check.unexplained <= 1.0
    assert abs(check.excess - 1.0) < 0.02


def test_long_streams_spanning_the_boundaries_are_within_the_allowance() -> None:
    """Streams of 25 s in 10 s intervals: most of the concurrency is requests still in flight
    at the end, as long as the longest finished one, and the law is not said to break."""
    snap = _interval(lasting=25.0, every=1.0)
    (check,) = check_littles_law(snap)
    assert check.excess > 1.0  # far from equal over one interval...
    assert check.holds  # ...but every request of it spans a boundary


def test_concurrency_no_request_accounts_for_is_flagged() -> None:
    """A mean concurrency the requests in flight and finished cannot produce (a finish the
    counters lost) is unexplained; so are durations with no concurrency behind them."""
    snap = _interval(lasting=0.05)
    stats = snap.endpoints[EP]
    more = dataclasses.replace(snap, endpoints={EP: dataclasses.replace(stats, avg_active=3.5)})
    less = dataclasses.replace(snap, endpoints={EP: dataclasses.replace(stats, avg_active=0.0)})
    assert 2.8 < check_littles_law(more)[0].unexplained < 3.0
    assert 0.3 < check_littles_law(less)[0].unexplained < 0.5


def test_endpoints_without_durations_or_interval_are_not_checked() -> None:
    """A snapshot over no time, or one read from an older report without distributions, has
    nothing to check."""
    monitor = ConcurrencyMonitor(clock=FakeClock())
    monitor.http.begin(EP).finish()
    snap = monitor.snapshot()
    assert check_littles_law(dataclasses.replace(snap, interval_s=0.0)) == ()
    stats = dataclasses.replace(snap.endpoints[EP], duration=None)
    assert check_littles_law(dataclasses.replace(snap, endpoints={EP: stats})) == ()
