"""Hypothesis strategies for snapshots, shared by the tests of every package."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import strategies as st

from concmon.monitor import DEFAULT_BUCKETS
from concmon.snapshot import (
    DISTRIBUTIONS,
    Distribution,
    EndpointStats,
    QueueStats,
    Snapshot,
    SystemStats,
)

counts = st.integers(min_value=0, max_value=10**12)
small = st.integers(min_value=0, max_value=10**6)
reals = st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False)
opt_reals = st.none() | reals
# Names may hold anything a URL template or a task name can: quotes, spaces, newlines, unicode
# (surrogates excluded: they cannot be encoded as UTF-8 anywhere).
names = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


# Bucket bounds: none (an older snapshot), the defaults, or any valid increasing set.
bucket_bounds = st.one_of(
    st.just(()),
    st.just(DEFAULT_BUCKETS),
    st.lists(
        st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False),
        min_size=1,
        max_size=64,
        unique=True,
    ).map(lambda bounds: tuple(sorted(bounds))),
)
response_keys = st.builds(
    "{} {} {}".format,
    st.sampled_from(("GET", "POST", "HEAD", "other")),
    st.sampled_from(("none", "1xx", "2xx", "3xx", "4xx", "5xx")),
    st.sampled_from(("ok", "failed", "cancelled")),
)


@st.composite
def distributions(draw: st.DrawFn, bounds: tuple[float, ...]) -> Distribution:
    """Any bucket counts on ``bounds`` (many empty buckets, as real ones have)."""
    sparse = st.integers(0, 3).flatmap(lambda k: st.just(0) if k else counts)
    values = draw(st.lists(sparse, min_size=len(bounds) + 1, max_size=len(bounds) + 1))
    return Distribution(bounds, tuple(values), draw(reals), draw(opt_reals))


@st.composite
def endpoint_stats(draw: st.DrawFn, bounds: tuple[float, ...] = ()) -> EndpointStats:
    active = draw(small)
    completed = draw(counts)
    failed = draw(st.integers(0, completed))
    cancelled = draw(st.integers(0, completed - failed))
    lost = draw(st.integers(0, completed - failed - cancelled))
    interval_peak = active + draw(small)
    return EndpointStats(
        active=active,
        peak=interval_peak + draw(small),
        interval_peak=interval_peak,
        avg_active=draw(reals),
        total=completed + active,
        completed=completed,
        failed=failed,
        cancelled=cancelled,
        rejected=draw(counts),
        avg_ms=draw(opt_reals),
        max_ms=draw(opt_reals),
        lost=lost,
        rate=draw(reals),
        responses=draw(st.dictionaries(response_keys, counts, max_size=4)),
        **{
            key: draw(st.none() | distributions(bounds))
            for name in DISTRIBUTIONS
            for key in (name, f"{name}_all")
        },
    )


queue_stats = st.builds(
    QueueStats, depth=small, peak=small, waited=counts, wait_avg_ms=opt_reals, wait_max_ms=opt_reals
)
system_stats = st.builds(
    SystemStats,
    cpu_percent=opt_reals,
    memory_mb=opt_reals,
    threads=st.none() | small,
    open_fds=st.none() | small,
    loop_lag_ms=opt_reals,
)
timestamps = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.isoformat(timespec="microseconds"))


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    bounds = draw(bucket_bounds)
    endpoints = draw(st.dictionaries(names, endpoint_stats(bounds), max_size=5))
    queues = draw(st.dictionaries(names, queue_stats, max_size=3))
    values = list(endpoints.values())
    routing = draw(small)
    active = sum(e.active for e in values) + routing
    interval_peak = active + draw(small)
    return Snapshot(
        timestamp=draw(timestamps),
        pid=draw(st.integers(1, 2**22)),
        host=draw(names),
        uptime_s=draw(reals),
        interval_s=draw(reals),
        active=active,
        peak=interval_peak + draw(small),
        interval_peak=interval_peak,
        avg_active=draw(reals),
        total=sum(e.total for e in values) + routing,
        completed=sum(e.completed for e in values),
        failed=sum(e.failed for e in values),
        cancelled=sum(e.cancelled for e in values),
        rejected=sum(e.rejected for e in values),
        queue_depth=sum(q.depth for q in queues.values()),
        queue_peak=draw(small),
        routing=routing,
        saturation=draw(opt_reals),
        endpoints=endpoints,
        websockets=draw(st.dictionaries(names, endpoint_stats(bounds), max_size=2)),
        background=draw(st.dictionaries(names, endpoint_stats(bounds), max_size=2)),
        queues=queues,
        system=draw(system_stats),
        sink_errors=draw(st.dictionaries(names, counts, max_size=2)),
        lost=draw(small),
        rate=draw(reals),
        buckets_s=bounds,
    )
