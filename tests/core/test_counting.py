"""The counting lock: finishes run by the garbage collector, resets and the fake clock."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Callable

import pytest

from concmon import ConcurrencyMonitor, Outcome, Ticket
from concmon import monitor as monitor_module
from concmon.testing import FakeClock, check_balanced

DEADLOCK_S = 30.0


class _Dropped:
    """A response never closed: its finalizer finishes the request, as a WSGI wrapper's does."""

    def __init__(self, ticket: Ticket, seen: list[tuple[bool, bool]]) -> None:
        self.ticket = ticket
        self.seen = seen
        self.cycle = self  # only the collector frees it

    def __del__(self) -> None:
        inside = monitor_module._guard.lock._recursion_count() > 0  # type: ignore[attr-defined]
        self.seen.append((inside, self.ticket.finish(Outcome.CANCELLED)))


def _in_thread(work: Callable[[], None]) -> None:
    """Run ``work`` on a thread; a deadlock fails the test instead of hanging the suite."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(DEADLOCK_S)
    assert not thread.is_alive(), "deadlocked: a finish waited on a lock its own thread holds"
    assert not errors, errors


def test_collector_finishing_inside_a_snapshot_never_deadlocks() -> None:
    """RELIABILITY 35: the collector runs finishes while this thread holds the counting lock
    (forced from inside the snapshot's critical section); they wait for nothing and count."""
    seen: list[tuple[bool, bool]] = []
    armed = threading.Event()
    real = FakeClock()

    def collecting_clock() -> float:
        if armed.is_set():
            gc.collect()  # the snapshot reads its clock with the lock held
        return real()

    monitor = ConcurrencyMonitor(clock=collecting_clock)

    def work() -> None:
        gc.disable()
        try:
            for _ in range(50):
                _Dropped(monitor.begin("/stream"), seen)
            armed.set()
            snap = monitor.snapshot()
            armed.clear()
        finally:
            gc.enable()
        assert snap.active == 0, "finishes deferred there are counted before the figures are read"

    _in_thread(work)
    assert seen == [(True, True)] * 50
    ep = check_balanced(monitor.snapshot()).endpoints["/stream"]
    assert (ep.total, ep.completed, ep.cancelled) == (50, 50, 50)


def test_collector_finishing_while_a_new_endpoint_is_added_never_deadlocks() -> None:
    """A collection triggered by an allocation under the lock (a new endpoint's counters) runs
    finishes of that same monitor: every count adds up, and nothing waits."""
    seen: list[tuple[bool, bool]] = []
    monitor = ConcurrencyMonitor()
    threshold = gc.get_threshold()

    def work() -> None:
        for i in range(200):
            _Dropped(monitor.begin(f"/old/{i}"), seen)
        gc.set_threshold(1)  # every allocation may collect, those under the lock included
        try:
            for i in range(200):
                monitor.begin(f"/new/{i}").finish()
        finally:
            gc.set_threshold(*threshold)
        gc.collect()

    _in_thread(work)
    assert len(seen) == 200 and all(finished for _, finished in seen)
    snap = check_balanced(monitor.snapshot())
    assert snap.total == snap.completed == 400
    assert snap.cancelled == 200


def test_fake_clock_gives_exact_durations_and_uptime() -> None:
    """Time read from an injected clock: durations, interval and uptime are its steps."""
    clock = FakeClock(start=50.0)
    monitor = ConcurrencyMonitor(clock=clock)
    ticket = monitor.begin("/x")
    clock.advance(1.25)
    ticket.finish()
    clock.advance(0.75)
    snap = monitor.snapshot()
    assert (snap.uptime_s, snap.interval_s) == (2.0, 2.0)
    assert snap.endpoints["/x"].max_ms == 1250.0
    assert snap.endpoints["/x"].avg_active == 0.625
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance(-1.0)


def test_a_ticket_open_across_a_reset_finishes_harmlessly() -> None:
    """After reset (as in a forked child) the old requests' tickets still close, but count
    against state nobody reads: the new figures stay exact and nothing goes negative."""
    monitor = ConcurrencyMonitor()
    old = monitor.begin("/x")
    monitor.reset()
    new = monitor.begin("/x")
    assert old.finish(Outcome.FAILED) is True
    assert old.finish() is False
    snap = monitor.snapshot()
    assert (snap.active, snap.total, snap.failed) == (1, 1, 0)
    new.finish()
    check_balanced(monitor.snapshot())
    assert monitor_module._ORPHANS.active >= 0


def test_requests_leave_nothing_behind() -> None:
    """A finished request's ticket is freed, and a dropped monitor with it: no reference kept."""
    monitor = ConcurrencyMonitor()
    for i in range(1000):
        monitor.begin(f"/items/{i % 10}").finish()
    gc.collect()
    before = len(gc.get_objects())
    for i in range(10_000):
        monitor.begin(f"/items/{i % 10}").finish()
    gc.collect()
    assert len(gc.get_objects()) - before < 100
    ref = weakref.ref(monitor)
    del monitor
    gc.collect()
    assert ref() is None


def test_a_request_admitted_before_routing_moves_once_and_keeps_its_duration() -> None:
    """admit() counts a request active in no endpoint (routing); route() moves it to its
    endpoint once, the duration still runs from admission; one never routed finishes under
    the name it is given, and every total adds up on the way."""
    clock = FakeClock()
    monitor = ConcurrencyMonitor(clock=clock)
    ticket = monitor.http.admit()
    waiting = monitor.snapshot()
    assert (waiting.active, waiting.routing, waiting.total, dict(waiting.endpoints)) == (
        1,
        1,
        1,
        {},
    )
    clock.advance(0.1)
    assert ticket.route("/chat") and not ticket.route("/other")
    routed = monitor.snapshot()
    assert (routed.routing, routed.endpoints["/chat"].active, routed.total) == (0, 1, 1)
    clock.advance(0.1)
    ticket.finish()
    lost = monitor.http.admit()
    lost.finish(Outcome.FAILED, "<no route>")
    snap = check_balanced(monitor.snapshot())
    assert snap.endpoints["/chat"].max_ms == pytest.approx(200.0)
    assert snap.endpoints["<no route>"].failed == 1
    assert (snap.total, snap.completed, snap.routing) == (2, 2, 0)
    assert not lost.route("/late")  # closed: nothing moves


def test_an_unrouted_request_at_a_reset_finishes_in_the_orphanage() -> None:
    """A request waiting for its route when the monitor resets never lands in the new counts."""
    monitor = ConcurrencyMonitor()
    ticket = monitor.http.admit()
    monitor.reset()
    assert not ticket.route("/x")
    ticket.finish()
    assert check_balanced(monitor.snapshot()).total == 0


def test_a_request_abandoned_before_admission_is_cancelled_and_never_active() -> None:
    """abandon() counts a client that left while queued: total and completed, cancelled, with
    no moment of activity, so no peak moves; its wait is its duration, so the distribution
    still counts every finished request."""
    monitor = ConcurrencyMonitor()
    monitor.http.abandon("<unmatched>", 0.25, "GET")
    snap = check_balanced(monitor.snapshot())
    stats = snap.endpoints["<unmatched>"]
    assert (stats.total, stats.completed, stats.cancelled, stats.peak) == (1, 1, 1, 0)
    assert (snap.total, snap.peak, snap.active) == (1, 0, 0)
    assert stats.avg_ms == 250.0
    assert stats.duration_all is not None and stats.duration_all.count == 1
    assert stats.responses == {"GET none cancelled": 1}
