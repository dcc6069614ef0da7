"""Counting: every counter adds up after any mix of outcomes, under threads and tasks."""

from __future__ import annotations

import asyncio
import logging
import random
import threading

import pytest

from concmon import OVERFLOW_NAME, ConcurrencyMonitor, Outcome, Ticket
from concmon.testing import FakeClock, check_balanced, check_invariants


def test_seed_api_counts_and_classifies(monitor: ConcurrencyMonitor) -> None:
    """increment_task/decrement_task keep the seed's signature; success=False counts failed."""
    monitor.increment_task("/chat/completions")
    monitor.increment_task("/chat/completions")
    assert monitor.snapshot().endpoints["/chat/completions"].active == 2
    assert monitor.decrement_task("/chat/completions", success=False)
    assert monitor.decrement_task("/chat/completions", outcome=Outcome.CANCELLED)
    snap = check_balanced(monitor.snapshot())
    ep = snap.endpoints["/chat/completions"]
    assert (ep.total, ep.completed, ep.failed, ep.cancelled, ep.peak) == (2, 2, 1, 1, 2)


def test_decrement_without_increment_is_reported_not_negative(
    monitor: ConcurrencyMonitor, caplog: pytest.LogCaptureFixture
) -> None:
    """A stray decrement logs one clear error and leaves every counter at zero."""
    with caplog.at_level(logging.ERROR, logger="concmon"):
        assert monitor.decrement_task("/never") is False
        assert monitor.decrement_task("/never") is False
    assert sum("without a matching increment" in r.message for r in caplog.records) == 1
    snap = check_balanced(monitor.snapshot())
    assert snap.completed == 0
    assert "/never" not in snap.endpoints


def test_exception_propagates_and_counts_failed_once(monitor: ConcurrencyMonitor) -> None:
    """RELIABILITY 1: the handler raises; the same exception propagates, counted failed once."""
    error = ValueError("boom")
    with pytest.raises(ValueError) as caught, monitor.track("/x"):
        raise error
    assert caught.value is error
    ep = check_balanced(monitor.snapshot()).endpoints["/x"]
    assert (ep.completed, ep.failed, ep.cancelled) == (1, 1, 0)


def test_cancellation_counts_cancelled_not_failed(monitor: ConcurrencyMonitor) -> None:
    """RELIABILITY 2: CancelledError (a BaseException) is re-raised and counted cancelled."""
    started = asyncio.Event()

    async def handler() -> None:
        async with monitor.track("/slow"):
            started.set()
            await asyncio.sleep(30)

    async def main() -> None:
        task = asyncio.create_task(handler())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    ep = check_balanced(monitor.snapshot()).endpoints["/slow"]
    assert (ep.completed, ep.failed, ep.cancelled) == (1, 0, 1)


@pytest.mark.parametrize("exc", [SystemExit(1), KeyboardInterrupt(), GeneratorExit()])
def test_base_exceptions_stay_balanced(monitor: ConcurrencyMonitor, exc: BaseException) -> None:
    """RELIABILITY 3: SystemExit and other BaseExceptions re-raise and leave the count balanced."""
    with pytest.raises(type(exc)), monitor.track("/x"):
        raise exc
    ep = check_balanced(monitor.snapshot()).endpoints["/x"]
    assert ep.completed == 1
    assert ep.failed + ep.cancelled == 1


def test_failure_while_finishing_still_decrements(monitor: ConcurrencyMonitor) -> None:
    """RELIABILITY 4: an error raised by code on the way out still closes the request."""

    class Recorder:
        def __enter__(self) -> None:
            return None

        def __exit__(self, *exc: object) -> None:
            raise RuntimeError("duration recorder failed")

    with pytest.raises(RuntimeError, match="recorder"), monitor.track("/x"), Recorder():
        pass
    ep = check_balanced(monitor.snapshot()).endpoints["/x"]
    assert (ep.completed, ep.failed) == (1, 1)


def test_double_finish_is_a_no_op(monitor: ConcurrencyMonitor) -> None:
    """RELIABILITY 5: finishing twice changes nothing the second time; nothing goes negative."""
    ticket = monitor.begin("/x")
    assert ticket.finish(Outcome.FAILED) is True
    assert ticket.finish(Outcome.OK) is False
    assert ticket.finish(Outcome.CANCELLED) is False
    ep = check_balanced(monitor.snapshot()).endpoints["/x"]
    assert (ep.completed, ep.failed, ep.cancelled) == (1, 1, 0)


def test_endpoint_key_is_fixed_at_begin() -> None:
    """RELIABILITY 6: a request is closed on the key it started on, even after overflow."""
    monitor = ConcurrencyMonitor(max_endpoints=2)
    early = monitor.begin("/a")
    for name in ("/b", "/c", "/d"):
        monitor.begin(name).finish()
    early.finish()
    snap = check_balanced(monitor.snapshot())
    assert snap.endpoints["/a"].completed == 1
    assert snap.endpoints[OVERFLOW_NAME].completed == 2


def test_held_requests_show_exact_active_and_peak(monitor: ConcurrencyMonitor) -> None:
    """RELIABILITY 7: N requests held on one event: active == peak == N, then 0."""
    n = 64

    async def main() -> None:
        release = asyncio.Event()
        entered = 0
        all_in = asyncio.Event()

        async def handler() -> None:
            nonlocal entered
            async with monitor.track("/held"):
                entered += 1
                if entered == n:
                    all_in.set()
                await release.wait()

        tasks = [asyncio.create_task(handler()) for _ in range(n)]
        await asyncio.wait_for(all_in.wait(), 10)
        snap = check_invariants(monitor.snapshot())
        assert snap.active == snap.peak == snap.endpoints["/held"].active == n
        release.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    snap = check_balanced(monitor.snapshot())
    assert snap.peak == n
    assert snap.completed == n


def test_threads_hammer_with_consistent_snapshots(monitor: ConcurrencyMonitor) -> None:
    """RELIABILITY 8: 32 threads x 10,000 pairs and a snapshot reader: exact and consistent."""
    threads_n, pairs = 32, 10_000
    barrier = threading.Barrier(threads_n + 1)
    stop = threading.Event()
    problems: list[str] = []
    seen = 0

    def work(i: int) -> None:
        name = f"/e{i % 4}"
        barrier.wait()
        for _ in range(pairs):
            monitor.begin(name).finish()

    def read() -> None:
        nonlocal seen
        barrier.wait()
        while not stop.is_set():
            try:
                check_invariants(monitor.snapshot())
            except AssertionError as exc:
                problems.append(str(exc))
            seen += 1

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads_n)]
    reader = threading.Thread(target=read)
    for t in [*workers, reader]:
        t.start()
    for t in workers:
        t.join()
    stop.set()
    reader.join()
    assert problems == []
    assert seen > 0
    snap = check_balanced(monitor.snapshot())
    assert snap.total == snap.completed == threads_n * pairs
    assert {n: e.total for n, e in snap.endpoints.items()} == {
        f"/e{i}": threads_n // 4 * pairs for i in range(4)
    }


def test_eight_threads_random_outcomes_exact(monitor: ConcurrencyMonitor) -> None:
    """Eight threads with a random mix of outcomes: every counter matches a per-thread tally."""
    outcomes = list(Outcome)
    barrier = threading.Barrier(8)
    # What each thread asked for, by the name each ticket started on.
    results: list[list[tuple[str, Outcome]]] = [[] for _ in range(8)]

    def work_recorded(i: int) -> None:
        rng = random.Random(i)
        held: list[tuple[str, Ticket]] = []
        barrier.wait()
        for _ in range(5000):
            name = f"/e{rng.randrange(5)}"
            held.append((name, monitor.begin(name)))
            if rng.random() < 0.6:
                name_, ticket = held.pop(rng.randrange(len(held)))
                outcome = rng.choice(outcomes)
                ticket.finish(outcome)
                results[i].append((name_, outcome))
        for name_, ticket in held:
            ticket.finish(Outcome.OK)
            results[i].append((name_, Outcome.OK))

    threads = [threading.Thread(target=work_recorded, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = check_balanced(monitor.snapshot())
    expected: dict[str, dict[str, int]] = {}
    for per_thread in results:
        for name, outcome in per_thread:
            e = expected.setdefault(name, {"completed": 0, "failed": 0, "cancelled": 0})
            e["completed"] += 1
            if outcome is not Outcome.OK:
                e[outcome.value] += 1
    got = {
        n: {"completed": s.completed, "failed": s.failed, "cancelled": s.cancelled}
        for n, s in snap.endpoints.items()
    }
    assert got == expected
    assert snap.total == 8 * 5000


def test_interval_peak_catches_short_bursts(monitor: ConcurrencyMonitor) -> None:
    """RELIABILITY 9: a burst between two reports shows; the next interval starts at active."""
    monitor.report_snapshot()
    steady = monitor.begin("/a")
    burst = [monitor.begin("/a") for _ in range(5)]
    for t in burst:
        t.finish()
    snap = monitor.report_snapshot()
    assert snap.interval_peak == 6
    assert snap.endpoints["/a"].interval_peak == 6
    assert snap.total == 6
    after = monitor.report_snapshot()
    assert after.interval_peak == 1, "restarts from the current active, not from 0"
    assert after.endpoints["/a"].interval_peak == 1
    assert after.peak == 6
    steady.finish()
    assert monitor.report_snapshot().interval_peak == 1
    assert monitor.report_snapshot().interval_peak == 0


def test_queue_drains_and_rejections_are_never_active(monitor: ConcurrencyMonitor) -> None:
    """RELIABILITY 10: queue depth never negative, rejected never active, all drains to 0."""

    async def main() -> None:
        sem = asyncio.Semaphore(3)

        async def request(i: int) -> None:
            if i % 7 == 0:
                monitor.reject("/q")
                return
            async with monitor.queued("/q", source="gate"):
                await sem.acquire()
            try:
                async with monitor.track("/q"):
                    snap = check_invariants(monitor.snapshot())
                    assert snap.queue_depth >= 0
                    assert snap.active <= 3
                    await asyncio.sleep(0.001)
            finally:
                sem.release()

        await asyncio.gather(*(request(i) for i in range(70)))

    asyncio.run(main())
    snap = check_balanced(monitor.snapshot())
    ep = snap.endpoints["/q"]
    assert ep.rejected == 10
    assert ep.total == ep.completed == 60
    gate = snap.queues["gate"]
    assert gate.depth == 0
    assert gate.waited == 60
    assert gate.peak >= 1
    assert snap.queue_peak >= gate.peak


def test_set_queue_depth_is_reported_and_validated(monitor: ConcurrencyMonitor) -> None:
    """An app-owned queue reports its depth; a negative depth is refused with a clear error."""
    monitor.set_queue_depth(7, source="workers")
    monitor.set_queue_depth(2, source="workers")
    snap = monitor.snapshot()
    assert snap.queues["workers"].depth == 2
    assert snap.queues["workers"].peak == 7
    assert snap.queue_depth == 2
    with pytest.raises(ValueError, match="negative"):
        monitor.set_queue_depth(-1)


def test_cardinality_guard_warns_once_and_keeps_counts(caplog: pytest.LogCaptureFixture) -> None:
    """Past max_endpoints, new names share one overflow series and one warning is logged."""
    monitor = ConcurrencyMonitor(max_endpoints=3)
    with caplog.at_level(logging.WARNING, logger="concmon"):
        for i in range(1000):
            monitor.begin(f"/scan/{i}").finish(Outcome.FAILED if i % 2 else Outcome.OK)
    snap = check_balanced(monitor.snapshot())
    assert len(snap.endpoints) == 4
    assert snap.endpoints[OVERFLOW_NAME].total == 997
    assert snap.total == 1000
    assert snap.failed == 500
    assert sum("CONCMON_MAX_ENDPOINTS" in r.message for r in caplog.records) == 1


def test_durations_and_time_weighted_concurrency() -> None:
    """avg_active integrates active over time; avg/max ms describe the requests finished."""
    clock = FakeClock()
    monitor = ConcurrencyMonitor(clock=clock)
    monitor.report_snapshot()
    a = monitor.begin("/a")
    b = monitor.begin("/a")
    clock.advance(0.2)
    a.finish()
    clock.advance(0.2)
    snap = monitor.report_snapshot()
    clock.advance(0.1)
    b.finish()
    ep = snap.endpoints["/a"]
    # Two requests for the first half of the 0.4 s, one for the second.
    assert snap.interval_s == 0.4
    assert ep.avg_active == 1.5
    assert (ep.avg_ms, ep.max_ms) == (200.0, 200.0)
    nothing = monitor.report_snapshot().endpoints["/a"]
    assert (nothing.avg_ms, nothing.max_ms) == (500.0, 500.0), "b finished in this interval"
    assert nothing.avg_active == 1.0
    assert monitor.report_snapshot().endpoints["/a"].avg_ms is None


def test_disabled_monitor_counts_nothing() -> None:
    """ENABLE_CONCURRENCY_MONITOR=false: every tracking call is a no-op."""
    monitor = ConcurrencyMonitor(enabled=False)
    with monitor.track("/x"):
        monitor.increment_task("/y")
    assert monitor.decrement_task("/y") is False
    monitor.reject("/z")
    with monitor.queued("/q"):
        pass
    monitor.set_queue_depth(3)
    snap = monitor.snapshot()
    assert (snap.total, snap.active, snap.rejected, snap.queue_depth) == (0, 0, 0, 0)
    assert snap.endpoints == {}


def test_websockets_and_background_stay_out_of_http_totals(monitor: ConcurrencyMonitor) -> None:
    """WebSocket connections and background tasks have their own sections."""
    ws = monitor.websocket.begin("/feed")
    bg = monitor.background.begin("send_email")
    snap = check_invariants(monitor.snapshot())
    assert snap.active == 0 and snap.total == 0
    assert snap.websockets["/feed"].active == 1
    assert snap.background["send_email"].active == 1
    ws.finish()
    bg.finish(Outcome.FAILED)
    snap = check_balanced(monitor.snapshot())
    assert snap.background["send_email"].failed == 1


def test_saturation_follows_the_limit(monitor: ConcurrencyMonitor) -> None:
    """With a concurrency limit set, saturation is active / limit."""
    assert monitor.snapshot().saturation is None
    monitor.max_concurrency = 8
    tickets = [monitor.begin("/x") for _ in range(2)]
    assert monitor.snapshot().saturation == 0.25
    for t in tickets:
        t.finish()


def test_loop_lag_is_an_interval_max(monitor: ConcurrencyMonitor) -> None:
    """record_loop_lag keeps the worst lag of the interval; the next interval starts empty."""
    monitor.record_loop_lag(0.002)
    monitor.record_loop_lag(0.050)
    monitor.record_loop_lag(0.010)
    assert monitor.report_snapshot().system.loop_lag_ms == 50.0
    assert monitor.report_snapshot().system.loop_lag_ms is None


def test_max_endpoints_must_be_positive() -> None:
    """A nonsensical limit is refused at construction."""
    with pytest.raises(ValueError, match="at least 1"):
        ConcurrencyMonitor(max_endpoints=0)
