"""The host view: counters of every worker ever seen, gauges of the live ones, never less."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from concmon import ConcurrencyMonitor, Outcome, Snapshot, Ticket
from concmon.host import GONE_KEPT, Figures, HostView, combine, merge
from concmon.snapshot import Distribution, EndpointStats, QueueStats, SystemStats
from concmon.testing import FakeClock, check_invariants

START = datetime(2026, 1, 1, tzinfo=UTC)
EP = "/chat/completions"


class Worker:
    """A real monitor standing for one worker process, reporting at chosen instants."""

    def __init__(self, pid: int, started: float = -1000.0) -> None:
        self.pid, self.started = pid, started
        self.clock = FakeClock()
        self.monitor = ConcurrencyMonitor(clock=self.clock)
        self.held: list[Ticket] = []
        self.last: Snapshot | None = None

    def work(self, ok: int = 0, failed: int = 0, hold: int = 0, release: int = 0) -> None:
        """``ok`` requests of 20 ms, ``failed`` ones of 2 s (so they land in other buckets)."""
        for _ in range(ok):
            ticket = self.monitor.http.begin(EP, "GET")
            ticket.respond(200)
            self.clock.advance(0.02)
            ticket.finish()
        for _ in range(failed):
            ticket = self.monitor.http.begin(EP, "POST")
            ticket.respond(500)
            self.clock.advance(2.0)
            ticket.finish(Outcome.FAILED)
        self.held += [self.monitor.http.begin(EP) for _ in range(hold)]
        for _ in range(min(release, len(self.held))):
            self.held.pop().finish()

    def report(self, at: float, interval: float = 1.0) -> Snapshot:
        self.last = dataclasses.replace(
            self.monitor.report_snapshot(),
            pid=self.pid,
            host="h",
            timestamp=(START + timedelta(seconds=at)).isoformat(),
            uptime_s=at - self.started,
            interval_s=interval,
        )
        return self.last


def _counters(s: Snapshot) -> tuple[int, int, int, int]:
    return s.completed, s.failed, s.cancelled, s.rejected


def _dist(s: Snapshot, name: str = "duration", lifetime: bool = True) -> Distribution:
    """The endpoint's distribution, empty when it has none (yet)."""
    stats = s.endpoints.get(EP)
    found = stats.distribution(name, lifetime) if stats is not None else None
    return found if found is not None else Distribution(s.buckets_s, (0,) * (len(s.buckets_s) + 1))


def _responses(s: Snapshot) -> dict[str, int]:
    stats = s.endpoints.get(EP)
    return dict(stats.responses) if stats is not None else {}


# -- merge: one rule for snapshots ------------------------------------------------------------

_worker_st = st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(0, 20))


@settings(max_examples=40, deadline=None)
@given(st.lists(_worker_st, min_size=1, max_size=4), st.lists(_worker_st, max_size=3))
def test_merge_keeps_every_invariant_with_gone_workers_counted_for_totals_only(
    live_specs: list[tuple[int, int, int]], gone_specs: list[tuple[int, int, int]]
) -> None:
    """Active sums the live workers, completed and failed sum all, a gone worker's actives
    finish as lost; total = completed + active."""
    workers = []
    for pid, (ok, failed, hold) in enumerate(live_specs + gone_specs, start=1):
        worker = Worker(pid)
        worker.work(ok=ok, failed=failed, hold=hold)
        workers.append(worker.report(at=10.0))
    live, gone = workers[: len(live_specs)], workers[len(live_specs) :]
    total = check_invariants(merge(live, gone))
    assert total.active == sum(s.active for s in live)
    lost = sum(s.active for s in gone)
    assert total.lost == lost
    assert total.completed == sum(s.completed for s in workers) + lost
    assert total.failed == sum(s.failed for s in workers)
    assert total.total == total.completed + total.active
    assert total.total == sum(s.total for s in workers)
    endpoint = total.endpoints.get(EP, EndpointStats())
    assert endpoint.active == sum(s.endpoints[EP].active for s in live if EP in s.endpoints)
    assert endpoint.completed == sum(
        s.endpoints[EP].completed for s in workers if EP in s.endpoints
    ) + sum(s.endpoints[EP].active for s in gone if EP in s.endpoints)
    assert total.peak == sum(s.peak for s in live)


def test_distributions_are_summed_bucket_by_bucket_interval_over_the_live_lifetime_over_all() -> (
    None
):
    """Two live workers and a gone one: the interval's buckets add the live workers', the
    lifetime's every worker's, bucket by bucket; responses add up over all."""
    a, b, c = Worker(1), Worker(2), Worker(3)
    a.work(ok=3, failed=1)
    b.work(ok=2)
    c.work(ok=1, failed=4)
    live, gone = [a.report(at=5.0), b.report(at=5.0)], [c.report(at=4.0)]
    host = check_invariants(merge(live, gone))
    stats = host.endpoints[EP]
    interval = [sum(n) for n in zip(*(_dist(w, lifetime=False).counts for w in live), strict=True)]
    lifetime = [sum(n) for n in zip(*(_dist(w).counts for w in live + gone), strict=True)]
    assert list(_dist(host, lifetime=False).counts) == interval
    assert list(_dist(host).counts) == lifetime
    assert _dist(host).count == 11 and _dist(host, lifetime=False).count == 6
    assert _dist(host, "head").count == 11
    assert stats.duration is not None and stats.duration.max_s == 2.0
    assert stats.rate == round(sum(w.endpoints[EP].rate for w in live), 3)
    assert stats.responses == {"GET 2xx ok": 6, "POST 5xx failed": 5}
    assert host.buckets_s == a.monitor.snapshot().buckets_s


def test_workers_on_different_buckets_have_no_summed_distribution() -> None:
    """Two workers configured with different bounds: no sum would be true, so none is shown,
    and the counters still add up."""
    a, b = Worker(1), Worker(2)
    b.monitor = ConcurrencyMonitor(clock=b.clock, buckets=(0.5, 5.0))
    a.work(ok=1)
    b.work(ok=1)
    host = check_invariants(merge([a.report(at=1.0), b.report(at=1.0)]))
    assert host.endpoints[EP].completed == 2
    assert host.endpoints[EP].duration_all is None


def test_one_live_worker_alone_is_returned_unchanged() -> None:
    """With a single worker and nothing gone the host is that worker's snapshot, as is."""
    snap = Worker(1).report(at=1.0)
    assert merge([snap]) is snap


def test_duration_means_are_weighted_by_request_rate() -> None:
    """A busy fast worker and an idle slow one: the mean leans to the busy one."""
    worker = Worker(1)
    worker.work(ok=1)
    base = worker.report(at=1.0)
    stats = base.endpoints[EP]
    fast = dataclasses.replace(
        base, pid=1, endpoints={EP: dataclasses.replace(stats, avg_active=9.0, avg_ms=10.0)}
    )
    slow = dataclasses.replace(
        base, pid=2, endpoints={EP: dataclasses.replace(stats, avg_active=1.0, avg_ms=1000.0)}
    )
    avg = merge([fast, slow]).endpoints[EP].avg_ms
    assert avg is not None
    assert 10.0 < avg < 20.0


def test_gone_workers_bring_no_gauges_queues_or_process_figures() -> None:
    """A dead worker's queue depth, memory and loop lag are not the host's any more."""
    live = Worker(1).report(at=5.0)
    dead = dataclasses.replace(
        Worker(2).report(at=4.0),
        queue_depth=4,
        queue_peak=4,
        queues={"gate": QueueStats(depth=4, peak=4)},
        system=SystemStats(memory_mb=100.0, threads=9, loop_lag_ms=800.0),
        saturation=0.9,
    )
    host = merge([live], [dead])
    assert (host.queue_depth, host.queues, host.saturation) == (0, {}, None)
    assert host.system == SystemStats()


def test_combine_sums_lifetime_counters_of_all_and_the_limit_of_the_live() -> None:
    """Queue waits and CPU seconds of a gone worker stay; its limit and process count do not."""
    live = Figures(Worker(1).report(at=5.0), {"gate": (3, 0.5)}, cpu_seconds=1.5, limit=8)
    gone = Figures(Worker(2).report(at=4.0), {"gate": (2, 0.25)}, cpu_seconds=2.0, limit=8)
    host = combine([live], [gone])
    assert host.queue_waits == {"gate": (5, 0.75)}
    assert host.cpu_seconds == 3.5
    assert (host.limit, host.processes) == (8, 1)


# -- the view over time -----------------------------------------------------------------------


def test_a_late_report_never_replaces_a_newer_one_and_serves_as_previous() -> None:
    """Reports arriving late for a worker are kept as its previous report only."""
    worker = Worker(4242)
    worker.work(hold=1)
    old = worker.report(at=5.0)
    worker.work(hold=4)
    new = worker.report(at=10.0)
    view = HostView()
    view.add(new)
    view.add(old)
    assert [s.active for s in view.live()] == [5]
    assert view.previous_of(new) is old


def test_a_retired_worker_keeps_its_totals_and_its_actives_leave() -> None:
    """Silent for three intervals, a worker is gone: its actives finish as lost, its totals
    stay."""
    a, b = Worker(1), Worker(2)
    a.work(ok=5, failed=2, hold=3)
    b.work(ok=1, hold=1)
    view = HostView()
    view.extend([a.report(at=1.0), b.report(at=1.0)])
    assert view.total() is not None and view.total().active == 4  # type: ignore[union-attr]
    for t in (2.0, 3.0, 4.0, 5.0):
        view.add(b.report(at=t))
    total = check_invariants(view.total())  # type: ignore[arg-type]
    assert [s.pid for s in view.live()] == [2]
    assert view.retired == 1
    assert (total.active, total.completed, total.failed, total.lost) == (1, 11, 2, 3)
    assert total.endpoints[EP].completed == 11
    assert total.endpoints[EP].lost == 3
    # The gone worker's lifetime buckets stay: every finished request once, none of the lost.
    assert _dist(total).count == 11 - 3
    assert _dist(total, lifetime=False).count == 0  # b finished nothing in its last interval
    assert _responses(total) == {"GET 2xx ok": 6, "POST 5xx failed": 2}


def test_a_reused_pid_is_a_new_worker_and_the_old_ones_totals_stay() -> None:
    """Uptime going backwards under one pid: a restart, and both lives' totals count."""
    first = Worker(7, started=0.0)
    first.work(ok=3, hold=2)
    second = Worker(7, started=100.0)
    second.work(ok=1)
    view = HostView(stale_intervals=None)
    view.extend([first.report(at=99.0), second.report(at=101.0)])
    total = view.total()
    assert total is not None
    assert (total.completed, total.active, total.lost) == (6, 0, 2)
    assert view.retired == 1


def test_a_slow_worker_that_reports_again_is_live_again_and_counted_once() -> None:
    """Silence past the window, then a report: the worker is live again. What its gone self
    counted stays (its held request as lost), so no counter goes down, and each request it
    finished counts once: completed less lost is the worker's own completed."""
    a, b = Worker(1), Worker(2)
    a.work(ok=2, hold=1)
    view = HostView()
    view.extend([a.report(at=1.0), *(b.report(at=t) for t in (2.0, 3.0, 4.0, 5.0))])
    assert [s.pid for s in view.live()] == [2]
    gone = check_invariants(view.total())  # type: ignore[arg-type]
    assert (gone.completed, gone.lost, gone.active) == (3, 1, 0)
    a.work(ok=1)
    view.add(a.report(at=6.0))
    total = check_invariants(view.total())  # type: ignore[arg-type]
    assert [s.pid for s in view.live()] == [1, 2]
    assert (total.completed, total.lost, total.active, view.retired) == (4, 1, 1, 0)
    assert total.completed - total.lost == 3
    assert total.total >= gone.total
    # Its revived self counts past its gone self's lifetime buckets and responses: the two
    # requests finished before the silence count once, the third once.
    assert _dist(total).count == 3
    assert _responses(total) == {"GET 2xx ok": 3}
    assert all(n >= p for n, p in zip(_dist(total).counts, _dist(gone).counts, strict=True))


def test_thousands_of_recycled_workers_keep_exact_totals_in_bounded_state() -> None:
    """3,000 short-lived workers: every total kept, and the view holds a bounded number of them."""
    view = HostView()
    for n in range(3000):
        worker = Worker(10_000 + n, started=10.0 * n)
        worker.work(ok=1, hold=1)
        view.add(worker.report(at=10.0 * n + 0.5))
    total = check_invariants(view.total())  # type: ignore[arg-type]
    assert total.completed == 3000 + 2999  # each gone worker's held request is lost
    assert total.lost == 2999
    assert total.active == 1  # only the newest worker is live
    assert len(view.gone()) <= GONE_KEPT + 1


_events = st.lists(
    st.one_of(
        st.tuples(
            st.just("work"),
            st.integers(0, 2),
            st.integers(0, 3),
            st.integers(0, 2),
            st.integers(0, 3),
            st.integers(0, 3),
        ),
        st.tuples(st.just("report"), st.integers(0, 2), st.floats(0.0, 6.0)),
        st.tuples(st.just("restart"), st.integers(0, 2)),
        st.tuples(st.just("late"), st.integers(0, 2)),
    ),
    max_size=60,
)


@settings(max_examples=100, deadline=None)
@given(_events)
def test_host_counters_never_decrease_whatever_the_workers_do(
    events: list[tuple[str, int] | tuple[str, int, float] | tuple[str, int, int, int, int, int]],
) -> None:
    """Any mix of work, reports, silences, restarts and late reports: the host's counters,
    lifetime bucket counts and responses only grow, every finished request is in one bucket,
    its active is the live workers' sum, and its totals are every worker's last report."""
    now = 0.0
    workers = [Worker(pid) for pid in (1, 2, 3)]
    everyone = list(workers)
    earlier: dict[int, Snapshot] = {}
    view = HostView()
    last = (0, 0, 0, 0)
    last_buckets: tuple[int, ...] = ()
    last_responses: dict[str, int] = {}
    for event in events:
        kind, index = event[0], event[1]
        worker = workers[index]
        if kind == "work":
            ok, failed, hold, release = event[2:]  # type: ignore[misc]
            worker.work(ok=ok, failed=failed, hold=hold, release=release)
            continue
        if kind == "late":
            if index not in earlier:
                continue
            view.add(earlier[index])
        else:
            if kind == "restart":
                if worker.last is None or worker.last.uptime_s <= 0.01:
                    continue  # a restart is told by an uptime below the old process's
                worker = workers[index] = Worker(worker.pid, started=now)
                everyone.append(worker)
            else:
                now += float(event[2])
            now += 0.001
            if worker.last is not None:
                earlier[index] = worker.last
            view.add(worker.report(at=now))
        total = check_invariants(view.total())  # type: ignore[arg-type]
        counters = _counters(total)
        assert all(c >= p for c, p in zip(counters, last, strict=True)), (last, counters)
        last = counters
        buckets = _dist(total).counts
        if last_buckets:
            assert all(b >= p for b, p in zip(buckets, last_buckets, strict=True)), buckets
        assert all(_responses(total).get(k, 0) >= n for k, n in last_responses.items())
        last_buckets, last_responses = buckets, _responses(total)
        endpoint = total.endpoints.get(EP, EndpointStats())
        assert _dist(total).count == endpoint.completed - endpoint.lost
        assert sum(_responses(total).values()) == endpoint.completed - endpoint.lost
        assert total.active == sum(s.active for s in view.live())
    reported = [w.last for w in everyone if w.last is not None]
    if reported:
        total = view.total()
        assert total is not None
        assert total.completed - total.lost == sum(s.completed for s in reported)
        assert total.rejected == sum(s.rejected for s in reported)
