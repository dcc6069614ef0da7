"""Immutable, typed snapshots of the monitor, and their JSON shape.

A snapshot is the only thing that leaves the counting state: sinks, exporters, the CLI and the
JSON endpoint all read snapshots and nothing else, so the counting code never has to know who is
looking. ``to_dict()`` produces the documented ``concmon.snapshot/2`` shape and ``from_dict()``
reads it back (and the older ``concmon.snapshot/1``, which had no distributions); both are exact
inverses, which is what lets the log file, the JSON-lines file and
the live endpoint be compared number for number.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypedDict

SCHEMA = "concmon.snapshot/2"
OLDER_SCHEMAS: Final = ("concmon.snapshot/1",)
"""Shapes ``from_dict`` still reads: without distributions, rates or responses."""

DISTRIBUTIONS: Final = ("duration", "head", "ttfb", "queued")
"""The distributions an endpoint may carry, each over the interval and (``<name>_all``) the
lifetime: the request's duration, the time to the response head, the time to the first body
byte, and the time queued before the application (from ``X-Request-Start``)."""

QUANTILES: Final = (("p50_ms", 0.5), ("p90_ms", 0.9), ("p99_ms", 0.99))


class DistributionDict(TypedDict):
    count: int
    sum_s: float
    max_s: float | None
    max_ms: float | None
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    buckets: list[int]


class EndpointDict(TypedDict, total=False):
    active: int
    peak: int
    interval_peak: int
    avg_active: float
    total: int
    completed: int
    failed: int
    cancelled: int
    rejected: int
    avg_ms: float | None
    max_ms: float | None
    lost: int
    rate: float
    duration: DistributionDict
    duration_all: DistributionDict
    head: DistributionDict
    head_all: DistributionDict
    ttfb: DistributionDict
    ttfb_all: DistributionDict
    queued: DistributionDict
    queued_all: DistributionDict
    responses: dict[str, int]


class QueueDict(TypedDict):
    depth: int
    peak: int
    waited: int
    wait_avg_ms: float | None
    wait_max_ms: float | None


class SystemDict(TypedDict):
    cpu_percent: float | None
    memory_mb: float | None
    threads: int | None
    open_fds: int | None
    loop_lag_ms: float | None


class SnapshotDict(TypedDict):
    schema: str
    timestamp: str
    pid: int
    host: str
    uptime_s: float
    interval_s: float
    active: int
    peak: int
    interval_peak: int
    avg_active: float
    total: int
    completed: int
    failed: int
    cancelled: int
    rejected: int
    queue_depth: int
    queue_peak: int
    routing: int
    saturation: float | None
    endpoints: dict[str, EndpointDict]
    websockets: dict[str, EndpointDict]
    background: dict[str, EndpointDict]
    queues: dict[str, QueueDict]
    system: SystemDict
    sink_errors: dict[str, int]
    lost: int
    rate: float
    buckets_s: list[float]


WORKERS_SUFFIX: Final = "/workers"
"""Appended to an adapter's JSON path: where every worker of the host is answered at once."""

WORKERS_SCHEMA: Final = "concmon.workers/1"
"""The per-worker answer: ``{"schema", "workers": [snapshots], "finished": [snapshots]}``."""


class SnapshotFormatError(ValueError):
    """Raised when a mapping does not have the ``concmon.snapshot/2`` shape."""


@dataclass(frozen=True, slots=True)
class Distribution:
    """How many values fell in each bucket, their sum and their maximum.

    ``counts[i]`` counts the values ``v`` with ``bounds[i-1] < v <= bounds[i]`` (the last count
    is above every bound), as Prometheus buckets do, but not cumulated. Two distributions on the
    same bounds add up exactly (:meth:`plus`), which is what lets workers and hosts be summed;
    percentiles are estimated from the buckets, never stored.
    """

    bounds: tuple[float, ...] = ()
    counts: tuple[int, ...] = (0,)
    sum_s: float = 0.0
    max_s: float | None = None

    @property
    def count(self) -> int:
        return sum(self.counts)

    def quantile(self, q: float) -> float | None:
        """The ``q``-quantile in seconds, interpolated inside its bucket; None when empty.

        Linear inside a bucket (the lower edge of the first bucket is 0), capped by the exact
        maximum, so an estimate never exceeds a value that was really seen. A rank in the last
        bucket, above every bound, is the maximum itself.
        """
        total = self.count
        if not total:
            return None
        rank = q * total
        below = 0
        for i, n in enumerate(self.counts):
            if n and below + n >= rank:
                if i == len(self.bounds):
                    return self.max_s
                lower = self.bounds[i - 1] if i else 0.0
                value = lower + (self.bounds[i] - lower) * max(rank - below, 0.0) / n
                return value if self.max_s is None else min(value, self.max_s)
            below += n
        return self.max_s  # pragma: no cover - the loop always finds the rank

    def quantile_ms(self, q: float) -> float | None:
        value = self.quantile(q)
        return None if value is None else round(value * 1000.0, 3)

    @property
    def p50_ms(self) -> float | None:
        return self.quantile_ms(0.5)

    @property
    def p90_ms(self) -> float | None:
        return self.quantile_ms(0.9)

    @property
    def p99_ms(self) -> float | None:
        return self.quantile_ms(0.99)

    @property
    def max_ms(self) -> float | None:
        return None if self.max_s is None else round(self.max_s * 1000.0, 3)

    @property
    def mean_s(self) -> float | None:
        total = self.count
        return self.sum_s / total if total else None

    def plus(self, other: Distribution) -> Distribution:
        """Both together; raises ValueError when both have values on different bounds."""
        if not other.count:
            return self
        if not self.count:
            return other
        if self.bounds != other.bounds:
            raise ValueError("distributions on different buckets cannot be added")
        maxima = [m for m in (self.max_s, other.max_s) if m is not None]
        return Distribution(
            self.bounds,
            tuple(a + b for a, b in zip(self.counts, other.counts, strict=True)),
            self.sum_s + other.sum_s,
            max(maxima) if maxima else None,
        )

    def minus(self, earlier: Distribution) -> Distribution:
        """What was added since ``earlier`` (a reading of the same lifetime distribution).

        The maximum of the difference is not known; it stays this distribution's.
        """
        if not earlier.count or self.bounds != earlier.bounds:
            return self
        counts = tuple(max(a - b, 0) for a, b in zip(self.counts, earlier.counts, strict=True))
        return Distribution(self.bounds, counts, max(self.sum_s - earlier.sum_s, 0.0), self.max_s)

    def to_dict(self) -> DistributionDict:
        return {
            "count": self.count,
            "sum_s": self.sum_s,
            "max_s": self.max_s,
            "max_ms": self.max_ms,
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "buckets": list(self.counts),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], bounds: tuple[float, ...]) -> Distribution:
        counts = data.get("buckets")
        if not isinstance(counts, list) or len(counts) != len(bounds) + 1:
            raise SnapshotFormatError(
                f"'buckets' must list {len(bounds) + 1} counts, one per bucket of 'buckets_s'"
            )
        return cls(
            bounds,
            tuple(_int({"n": n}, "n") for n in counts),
            _float(data, "sum_s"),
            _opt_float(data, "max_s"),
        )


def check_bounds(bounds: Sequence[float]) -> tuple[float, ...]:
    """``bounds`` as bucket bounds: finite, above 0, strictly increasing, at most 64.

    Raises ValueError naming what is wrong.
    """
    values = tuple(float(b) for b in bounds)
    if not values:
        raise ValueError("at least one bucket bound is needed")
    if len(values) > 64:
        raise ValueError(f"at most 64 bucket bounds, got {len(values)}")
    for value in values:
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"bucket bounds must be finite seconds above 0, got {value!r}")
    for low, high in itertools.pairwise(values):
        if high <= low:
            raise ValueError(f"bucket bounds must increase, got {low!r} then {high!r}")
    return values


@dataclass(frozen=True, slots=True)
class EndpointStats:
    """Counters of one endpoint (or of one WebSocket route or background task name).

    ``peak`` is the lifetime high-water mark; ``interval_peak`` the highest ``active`` since the
    previous report, so a burst that starts and ends between two reports is still visible.
    ``avg_active`` is the time-weighted mean of ``active`` over the interval, and ``avg_ms`` /
    ``max_ms`` describe the requests that finished in the interval (``None`` when none did).
    ``lost`` counts requests a worker had in flight when it died (killed, out of memory): only
    a host view (:mod:`concmon.host`) finds them, and counts them in ``completed``.

    ``rate`` is the requests finished per second over the interval. The distributions (see
    :data:`DISTRIBUTIONS`) are ``None`` where nothing records them (a WebSocket has no time to
    first byte); ``responses`` counts finished HTTP requests by ``"<METHOD> <status class>
    <outcome>"`` (``"GET 2xx ok"``; ``none`` when no response head was sent).
    """

    active: int = 0
    peak: int = 0
    interval_peak: int = 0
    avg_active: float = 0.0
    total: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    rejected: int = 0
    avg_ms: float | None = None
    max_ms: float | None = None
    lost: int = 0
    rate: float = 0.0
    duration: Distribution | None = None
    duration_all: Distribution | None = None
    head: Distribution | None = None
    head_all: Distribution | None = None
    ttfb: Distribution | None = None
    ttfb_all: Distribution | None = None
    queued: Distribution | None = None
    queued_all: Distribution | None = None
    responses: Mapping[str, int] = field(default_factory=dict)

    def distribution(self, name: str, lifetime: bool = False) -> Distribution | None:
        """The distribution called ``name`` (one of :data:`DISTRIBUTIONS`)."""
        value: Distribution | None = getattr(self, f"{name}_all" if lifetime else name)
        return value

    def to_dict(self) -> EndpointDict:
        data: EndpointDict = {
            "active": self.active,
            "peak": self.peak,
            "interval_peak": self.interval_peak,
            "avg_active": self.avg_active,
            "total": self.total,
            "completed": self.completed,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "rejected": self.rejected,
            "avg_ms": self.avg_ms,
            "max_ms": self.max_ms,
            "lost": self.lost,
            "rate": self.rate,
        }
        for name in DISTRIBUTIONS:
            for key in (name, f"{name}_all"):
                value: Distribution | None = getattr(self, key)
                if value is not None:
                    data[key] = value.to_dict()  # type: ignore[literal-required]
        if self.responses:
            data["responses"] = dict(self.responses)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], bounds: tuple[float, ...] = ()) -> EndpointStats:
        distributions = {
            key: Distribution.from_dict(_mapping(data[key], key), bounds)
            for name in DISTRIBUTIONS
            for key in (name, f"{name}_all")
            if data.get(key) is not None
        }
        return cls(
            active=_int(data, "active"),
            peak=_int(data, "peak"),
            interval_peak=_int(data, "interval_peak"),
            avg_active=_float(data, "avg_active"),
            total=_int(data, "total"),
            completed=_int(data, "completed"),
            failed=_int(data, "failed"),
            cancelled=_int(data, "cancelled"),
            rejected=_int(data, "rejected"),
            avg_ms=_opt_float(data, "avg_ms"),
            max_ms=_opt_float(data, "max_ms"),
            lost=_int(data, "lost"),
            rate=_float(data, "rate"),
            responses={
                _key(k): _int({"n": v}, "n")
                for k, v in _mapping(data.get("responses", {}), "responses").items()
            },
            **distributions,
        )


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One source of queueing: an admission gate, a thread pool, or a queue the app owns.

    ``depth`` is how many wait right now, ``peak`` the highest depth since the previous report,
    ``waited`` how many finished waiting in the interval and ``wait_avg_ms``/``wait_max_ms`` how
    long they waited.
    """

    depth: int = 0
    peak: int = 0
    waited: int = 0
    wait_avg_ms: float | None = None
    wait_max_ms: float | None = None

    def to_dict(self) -> QueueDict:
        return {
            "depth": self.depth,
            "peak": self.peak,
            "waited": self.waited,
            "wait_avg_ms": self.wait_avg_ms,
            "wait_max_ms": self.wait_max_ms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QueueStats:
        return cls(
            depth=_int(data, "depth"),
            peak=_int(data, "peak"),
            waited=_int(data, "waited"),
            wait_avg_ms=_opt_float(data, "wait_avg_ms"),
            wait_max_ms=_opt_float(data, "wait_max_ms"),
        )


@dataclass(frozen=True, slots=True)
class SystemStats:
    """Process figures read with psutil on the reporter thread; ``None`` where unreadable."""

    cpu_percent: float | None = None
    memory_mb: float | None = None
    threads: int | None = None
    open_fds: int | None = None
    loop_lag_ms: float | None = None

    def to_dict(self) -> SystemDict:
        return {
            "cpu_percent": self.cpu_percent,
            "memory_mb": self.memory_mb,
            "threads": self.threads,
            "open_fds": self.open_fds,
            "loop_lag_ms": self.loop_lag_ms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SystemStats:
        return cls(
            cpu_percent=_opt_float(data, "cpu_percent"),
            memory_mb=_opt_float(data, "memory_mb"),
            threads=_opt_int(data, "threads"),
            open_fds=_opt_int(data, "open_fds"),
            loop_lag_ms=_opt_float(data, "loop_lag_ms"),
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the monitor knows at one instant, internally consistent.

    The top-level request figures cover HTTP requests only; WebSocket connections and background
    tasks are kept in their own sections so they never inflate the request counts.
    """

    timestamp: str
    pid: int
    host: str
    uptime_s: float
    interval_s: float
    active: int = 0
    peak: int = 0
    interval_peak: int = 0
    avg_active: float = 0.0
    total: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    rejected: int = 0
    queue_depth: int = 0
    queue_peak: int = 0
    routing: int = 0
    saturation: float | None = None
    endpoints: Mapping[str, EndpointStats] = field(default_factory=dict)
    websockets: Mapping[str, EndpointStats] = field(default_factory=dict)
    background: Mapping[str, EndpointStats] = field(default_factory=dict)
    queues: Mapping[str, QueueStats] = field(default_factory=dict)
    system: SystemStats = field(default_factory=SystemStats)
    sink_errors: Mapping[str, int] = field(default_factory=dict)
    lost: int = 0
    """Requests in flight in workers that died, counted by a host view (part of
    ``completed``); always 0 in one process's own snapshot."""
    rate: float = 0.0
    """HTTP requests finished per second over the interval."""
    buckets_s: tuple[float, ...] = ()
    """The upper bounds (seconds) of every distribution's buckets."""

    def to_dict(self) -> SnapshotDict:
        """The JSON-ready ``concmon.snapshot/2`` mapping (see docs/snapshot.md)."""
        return {
            "schema": SCHEMA,
            "timestamp": self.timestamp,
            "pid": self.pid,
            "host": self.host,
            "uptime_s": self.uptime_s,
            "interval_s": self.interval_s,
            "active": self.active,
            "peak": self.peak,
            "interval_peak": self.interval_peak,
            "avg_active": self.avg_active,
            "total": self.total,
            "completed": self.completed,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "rejected": self.rejected,
            "queue_depth": self.queue_depth,
            "queue_peak": self.queue_peak,
            "routing": self.routing,
            "saturation": self.saturation,
            "endpoints": {k: v.to_dict() for k, v in self.endpoints.items()},
            "websockets": {k: v.to_dict() for k, v in self.websockets.items()},
            "background": {k: v.to_dict() for k, v in self.background.items()},
            "queues": {k: v.to_dict() for k, v in self.queues.items()},
            "system": self.system.to_dict(),
            "sink_errors": dict(self.sink_errors),
            "lost": self.lost,
            "rate": self.rate,
            "buckets_s": list(self.buckets_s),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Snapshot:
        """Read a ``concmon.snapshot/2`` (or ``/1``) mapping back; raises
        :class:`SnapshotFormatError`."""
        if not isinstance(data, Mapping):
            raise SnapshotFormatError("a snapshot must be a JSON object")
        if data.get("schema") != SCHEMA and data.get("schema") not in OLDER_SCHEMAS:
            raise SnapshotFormatError(f"not a {SCHEMA} snapshot (schema={data.get('schema')!r})")
        try:
            raw_bounds = data.get("buckets_s", [])
            if not isinstance(raw_bounds, list):
                raise SnapshotFormatError("'buckets_s' must be a list of seconds")
            bounds = tuple(_float({"b": b}, "b") for b in raw_bounds)
            return cls(
                timestamp=_str(data, "timestamp"),
                pid=_int(data, "pid"),
                host=_str(data, "host"),
                uptime_s=_float(data, "uptime_s"),
                interval_s=_float(data, "interval_s"),
                active=_int(data, "active"),
                peak=_int(data, "peak"),
                interval_peak=_int(data, "interval_peak"),
                avg_active=_float(data, "avg_active"),
                total=_int(data, "total"),
                completed=_int(data, "completed"),
                failed=_int(data, "failed"),
                cancelled=_int(data, "cancelled"),
                rejected=_int(data, "rejected"),
                queue_depth=_int(data, "queue_depth"),
                queue_peak=_int(data, "queue_peak"),
                routing=_int(data, "routing") if "routing" in data else 0,
                saturation=_opt_float(data, "saturation"),
                endpoints=_stats_map(data, "endpoints", bounds),
                websockets=_stats_map(data, "websockets", bounds),
                background=_stats_map(data, "background", bounds),
                queues={
                    _key(k): QueueStats.from_dict(_mapping(v, k))
                    for k, v in _mapping(data.get("queues", {}), "queues").items()
                },
                system=SystemStats.from_dict(_mapping(data.get("system", {}), "system")),
                sink_errors={
                    _key(k): _int({"n": v}, "n")
                    for k, v in _mapping(data.get("sink_errors", {}), "sink_errors").items()
                },
                lost=_int(data, "lost"),
                rate=_float(data, "rate"),
                buckets_s=bounds,
            )
        except (TypeError, KeyError) as exc:
            raise SnapshotFormatError(f"malformed snapshot: {exc}") from None


def _mapping(value: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SnapshotFormatError(f"{name!r} must be an object")
    return value


def _key(value: Any) -> str:
    if not isinstance(value, str):
        raise SnapshotFormatError("names must be strings")
    return value


def _stats_map(
    data: Mapping[str, Any], name: str, bounds: tuple[float, ...]
) -> dict[str, EndpointStats]:
    return {
        _key(k): EndpointStats.from_dict(_mapping(v, k), bounds)
        for k, v in _mapping(data.get(name, {}), name).items()
    }


def _str(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise SnapshotFormatError(f"{name!r} must be a string")
    return value


def _int(data: Mapping[str, Any], name: str) -> int:
    value = data.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SnapshotFormatError(f"{name!r} must be a non-negative integer, got {value!r}")
    return value


def _opt_int(data: Mapping[str, Any], name: str) -> int | None:
    if data.get(name) is None:
        return None
    return _int(data, name)


def _float(data: Mapping[str, Any], name: str) -> float:
    value = data.get(name, 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SnapshotFormatError(f"{name!r} must be a number, got {value!r}")
    return float(value)


def _opt_float(data: Mapping[str, Any], name: str) -> float | None:
    if data.get(name) is None:
        return None
    return _float(data, name)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of ``concmon.snapshot/2``, shipped with the package."""
    import json
    from importlib.resources import files

    text = files("concmon").joinpath("snapshot.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
