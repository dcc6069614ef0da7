"""Immutable, typed snapshots of the monitor, and their JSON shape.

A snapshot is the only thing that leaves the counting state: sinks, exporters, the CLI and the
JSON endpoint all read snapshots and nothing else, so the counting code never has to know who is
looking. ``to_dict()`` produces the documented ``concmon.snapshot/1`` shape and ``from_dict()``
reads it back; both are exact inverses, which is what lets the log file, the JSON-lines file and
the live endpoint be compared number for number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypedDict

SCHEMA = "concmon.snapshot/1"


class EndpointDict(TypedDict):
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


WORKERS_SUFFIX: Final = "/workers"
"""Appended to an adapter's JSON path: where every worker of the host is answered at once."""

WORKERS_SCHEMA: Final = "concmon.workers/1"
"""The per-worker answer: ``{"schema", "workers": [snapshots], "finished": [snapshots]}``."""


class SnapshotFormatError(ValueError):
    """Raised when a mapping does not have the ``concmon.snapshot/1`` shape."""


@dataclass(frozen=True, slots=True)
class EndpointStats:
    """Counters of one endpoint (or of one WebSocket route or background task name).

    ``peak`` is the lifetime high-water mark; ``interval_peak`` the highest ``active`` since the
    previous report, so a burst that starts and ends between two reports is still visible.
    ``avg_active`` is the time-weighted mean of ``active`` over the interval, and ``avg_ms`` /
    ``max_ms`` describe the requests that finished in the interval (``None`` when none did).
    ``lost`` counts requests a worker had in flight when it died (killed, out of memory): only
    a host view (:mod:`concmon.host`) finds them, and counts them in ``completed``.
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

    def to_dict(self) -> EndpointDict:
        return {
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
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EndpointStats:
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

    def to_dict(self) -> SnapshotDict:
        """The JSON-ready ``concmon.snapshot/1`` mapping (see docs/snapshot.md)."""
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
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Snapshot:
        """Read a ``concmon.snapshot/1`` mapping back; raises :class:`SnapshotFormatError`."""
        if not isinstance(data, Mapping):
            raise SnapshotFormatError("a snapshot must be a JSON object")
        if data.get("schema") != SCHEMA:
            raise SnapshotFormatError(f"not a {SCHEMA} snapshot (schema={data.get('schema')!r})")
        try:
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
                endpoints=_stats_map(data, "endpoints"),
                websockets=_stats_map(data, "websockets"),
                background=_stats_map(data, "background"),
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


def _stats_map(data: Mapping[str, Any], name: str) -> dict[str, EndpointStats]:
    return {
        _key(k): EndpointStats.from_dict(_mapping(v, k))
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
    """The JSON Schema of ``concmon.snapshot/1``, shipped with the package."""
    import json
    from importlib.resources import files

    text = files("concmon").joinpath("snapshot.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
