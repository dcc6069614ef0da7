"""The human log format: writing and parsing in one module, so the two never drift.

A report is three tagged lines that share a timestamp and a pid (see docs/log-format.md)::

    <ts> pid=<pid> [CONCURRENCY] Active: 4/12 Total: 256 Completed: 250 Failed: 2 ...
    <ts> pid=<pid> [ENDPOINTS] "/chat/completions" active=3 peak=10 ...; ws:"/feed" active=1 ...
    <ts> pid=<pid> [SYSTEM] CPU: 45.2% Memory: 123.4MB Threads: 12 FDs: 31 LoopLag: 0.8ms ...

The format is lossless: every field of the snapshot is written, floats with ``repr`` (which
reads back to the same float), names and the host as ASCII-only JSON strings, so a name can
contain quotes, newlines or any unicode without breaking its line or forging another. A
distribution is written as its sum, its maximum and its non-empty buckets only (most buckets of
a real endpoint are empty), beside the percentiles a reader wants to see; those are estimated
from the buckets, so the parser reads past them. Parsing a written report gives back a snapshot
equal to the one written; lines written before a field existed still parse, the field read as
empty.
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from concmon.snapshot import (
    DISTRIBUTIONS,
    SCHEMA,
    Distribution,
    EndpointStats,
    QueueStats,
    Snapshot,
)

TAGS: Final = ("CONCURRENCY", "ENDPOINTS", "SYSTEM")
_SECTIONS: Final = {"": "endpoints", "ws": "websockets", "bg": "background", "queue": "queues"}
_PREFIX: Final = {section: prefix for prefix, section in _SECTIONS.items()}
_ENDPOINT_FIELDS: Final = (
    "active",
    "peak",
    "interval_peak",
    "avg_active",
    "total",
    "completed",
    "failed",
    "cancelled",
    "rejected",
    "avg_ms",
    "max_ms",
)
"""Endpoint fields every line has, in this order."""
_DISTRIBUTION_KEYS: Final = tuple(key for name in DISTRIBUTIONS for key in (name, f"{name}_all"))
_SHOWN_PERCENTILES: Final = (("", "duration"), ("ttfb_", "ttfb"))
"""The interval percentiles written for a reader (prefix, distribution); never read back."""
_DERIVED: Final = frozenset(
    f"{prefix}{p}_ms" for prefix, _ in _SHOWN_PERCENTILES for p in ("p50", "p90", "p99")
)
_QUEUE_FIELDS: Final = ("depth", "peak", "waited", "wait_avg_ms", "wait_max_ms")

_LINE = re.compile(r"(\S+) pid=(\d+) \[(CONCURRENCY|ENDPOINTS|SYSTEM)\](?: (.*))?\Z", re.DOTALL)
_NUM = r"(?:-|[0-9][0-9.e+-]*)"
_INT = r"\d+"
_REAL = r"[0-9][0-9.e+-]*"
_CONCURRENCY = re.compile(
    rf"Active: (?P<active>{_INT})/(?P<peak>{_INT}) Total: (?P<total>{_INT}) "
    rf"Completed: (?P<completed>{_INT}) Failed: (?P<failed>{_INT}) "
    rf"Cancelled: (?P<cancelled>{_INT})(?: Lost: (?P<lost>{_INT}))? "
    rf"Queue: (?P<queue_depth>{_INT})(?: Routing: (?P<routing>{_INT}))? "
    rf"Uptime: (?P<uptime_s>{_NUM})s IntervalPeak: (?P<interval_peak>{_INT}) "
    rf"AvgActive: (?P<avg_active>{_NUM}) Rejected: (?P<rejected>{_INT}) "
    rf"QueuePeak: (?P<queue_peak>{_INT}) Interval: (?P<interval_s>{_NUM})s"
    rf"(?: Rate: (?P<rate>{_REAL})/s)? Saturation: (?P<saturation>{_NUM})"
    rf"(?: Buckets: (?P<buckets_s>{_REAL}(?:,{_REAL})*))? Host: (?P<host>\".*\")\Z"
)
_SYSTEM = re.compile(
    r"CPU: (-|\S+%) Memory: (-|\S+MB) Threads: (-|\d+) FDs: (-|\d+) "
    r"LoopLag: (-|\S+ms) SinkErrors: (\{.*\})\Z"
)
_FIELD = re.compile(r" ([a-z_]+)=(-|[0-9][0-9.e+-]*)")
_EXTRA = re.compile(r" ([a-z0-9_]+)=")
_VALUE = re.compile(r"-|[0-9][0-9.e+-]*")
_DISTRIBUTION = re.compile(rf"({_REAL})/({_NUM})/(-|\d+:\d+(?:,\d+:\d+)*)")
_ENTRY_PREFIX = re.compile(r"(?:(ws|bg|queue):)?\"")
_decoder = json.JSONDecoder()


class LogFormatError(ValueError):
    """A line is not a well-formed concmon report line."""


# -- writing ---------------------------------------------------------------------------------


def _num(value: float | int | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _name(value: str) -> str:
    return json.dumps(value, ensure_ascii=True)


def _unit(value: float | int | None, unit: str) -> str:
    return "-" if value is None else f"{_num(value)}{unit}"


def _distribution(d: Distribution) -> str:
    """``<sum_s>/<max_s>/<index>:<count>,...``: only the buckets that hold something."""
    sparse = ",".join(f"{i}:{n}" for i, n in enumerate(d.counts) if n)
    return f"{_num(d.sum_s)}/{_num(d.max_s)}/{sparse or '-'}"


def _endpoint_values(stats: EndpointStats) -> str:
    values = [f"{k}={_num(getattr(stats, k))}" for k in _ENDPOINT_FIELDS]
    if stats.lost:
        values.append(f"lost={stats.lost}")
    values.append(f"rate={_num(stats.rate)}")
    for prefix, name in _SHOWN_PERCENTILES:
        shown = stats.distribution(name)
        if shown is not None:
            values += [
                f"{prefix}p50_ms={_num(shown.p50_ms)}",
                f"{prefix}p90_ms={_num(shown.p90_ms)}",
                f"{prefix}p99_ms={_num(shown.p99_ms)}",
            ]
    for key in _DISTRIBUTION_KEYS:
        d: Distribution | None = getattr(stats, key)
        if d is not None:
            values.append(f"{key}={_distribution(d)}")
    if stats.responses:
        values.append(f"responses={_json(stats.responses)}")
    return " ".join(values)


def _json(value: Mapping[str, int]) -> str:
    return json.dumps(dict(value), ensure_ascii=True, sort_keys=True, separators=(",", ":"))


def format_report(snapshot: Snapshot) -> str:
    """The three lines of one report, each ending in a newline, as one string (one write)."""
    s = snapshot
    head = f"{s.timestamp} pid={s.pid}"
    buckets = f"Buckets: {','.join(_num(b) for b in s.buckets_s)} " if s.buckets_s else ""
    concurrency = (
        f"{head} [CONCURRENCY] Active: {s.active}/{s.peak} Total: {s.total} "
        f"Completed: {s.completed} Failed: {s.failed} Cancelled: {s.cancelled} "
        f"{f'Lost: {s.lost} ' if s.lost else ''}Queue: {s.queue_depth} Routing: {s.routing} "
        f"Uptime: {_num(s.uptime_s)}s "
        f"IntervalPeak: {s.interval_peak} "
        f"AvgActive: {_num(s.avg_active)} Rejected: {s.rejected} QueuePeak: {s.queue_peak} "
        f"Interval: {_num(s.interval_s)}s Rate: {_num(s.rate)}/s "
        f"Saturation: {_num(s.saturation)} {buckets}Host: {_name(s.host)}"
    )
    entries: list[str] = []
    for section, prefix in _PREFIX.items():
        items: Mapping[str, EndpointStats | QueueStats] = getattr(s, section)
        for name, stats in items.items():
            if isinstance(stats, EndpointStats):
                values = _endpoint_values(stats)
            else:
                values = " ".join(f"{k}={_num(getattr(stats, k))}" for k in _QUEUE_FIELDS)
            entries.append(f"{prefix + ':' if prefix else ''}{_name(name)} {values}")
    endpoints = f"{head} [ENDPOINTS]" + (" " + "; ".join(entries) if entries else "")
    sy = s.system
    system = (
        f"{head} [SYSTEM] CPU: {_unit(sy.cpu_percent, '%')} "
        f"Memory: {_unit(sy.memory_mb, 'MB')} Threads: {_num(sy.threads)} "
        f"FDs: {_num(sy.open_fds)} LoopLag: {_unit(sy.loop_lag_ms, 'ms')} "
        f"SinkErrors: {json.dumps(dict(s.sink_errors), ensure_ascii=True, sort_keys=True)}"
    )
    return f"{concurrency}\n{endpoints}\n{system}\n"


# -- parsing ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportLine:
    """One parsed line: which report it belongs to (timestamp, pid) and what it carries."""

    timestamp: str
    pid: int
    tag: str
    values: dict[str, Any]


def _float(text: str) -> float | None:
    if text == "-":
        return None
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise LogFormatError(f"not a finite, non-negative number: {text!r}")
    return value


def _strip_unit(text: str, unit: str) -> float | None:
    if text == "-":
        return None
    if not text.endswith(unit):
        raise LogFormatError(f"expected a value in {unit}: {text!r}")
    return _float(text[: -len(unit)])


def _opt_int(text: str) -> int | None:
    return None if text == "-" else int(text)


_CONCURRENCY_FLOATS: Final = ("uptime_s", "avg_active", "interval_s", "saturation")


def _parse_concurrency(body: str) -> dict[str, Any]:
    m = _CONCURRENCY.match(body)
    if m is None:
        raise LogFormatError("malformed [CONCURRENCY] line")
    host = json.loads(m["host"])
    if not isinstance(host, str):
        raise LogFormatError("Host must be a string")
    values: dict[str, Any] = {
        key: _float(text) if key in _CONCURRENCY_FLOATS else int(text)
        for key, text in m.groupdict().items()
        if key not in ("host", "rate", "buckets_s") and text is not None
    }
    # Absent from older lines: no lost or routing requests, no rate, no buckets.
    values.setdefault("lost", 0)
    values.setdefault("routing", 0)
    values["rate"] = _float(m["rate"]) if m["rate"] is not None else 0.0
    values["buckets_s"] = [_float(b) for b in m["buckets_s"].split(",")] if m["buckets_s"] else []
    values["host"] = host
    return values


def _parse_distribution(body: str, pos: int) -> tuple[dict[str, Any], int]:
    """A distribution at ``pos``: its sum, maximum and non-empty buckets (index -> count)."""
    m = _DISTRIBUTION.match(body, pos)
    if m is None:
        raise LogFormatError(f"expected <sum>/<max>/<buckets> at column {pos}")
    buckets: dict[int, int] = {}
    if m.group(3) != "-":
        for pair in m.group(3).split(","):
            index, count = pair.split(":")
            if int(index) in buckets:
                raise LogFormatError(f"bucket {index} is written twice")
            buckets[int(index)] = int(count)
    return {"sum_s": _float(m.group(1)), "max_s": _float(m.group(2)), "buckets": buckets}, m.end()


def _parse_responses(body: str, pos: int) -> tuple[dict[str, int], int]:
    value, end = _decoder.raw_decode(body, pos)
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
        for k, v in value.items()
    ):
        raise LogFormatError("responses must map names to counts")
    return value, end


def _parse_extras(name: str, body: str, pos: int, values: dict[str, Any]) -> int:
    """The fields after an endpoint's fixed ones, each optional (older lines have none)."""
    while (m := _EXTRA.match(body, pos)) is not None:
        key, pos = m.group(1), m.end()
        if key in values:
            raise LogFormatError(f"endpoint {name!r}: field {key!r} is written twice")
        if key in _DISTRIBUTION_KEYS:
            values[key], pos = _parse_distribution(body, pos)
        elif key == "responses":
            values[key], pos = _parse_responses(body, pos)
        elif key in ("lost", "rate") or key in _DERIVED:
            vm = _VALUE.match(body, pos)
            if vm is None:
                raise LogFormatError(f"endpoint {name!r}: {key!r} has no value")
            pos = vm.end()
            if key == "lost":
                values[key] = int(vm.group())
            elif key == "rate":
                values[key] = _float(vm.group())
            else:
                _float(vm.group())  # estimated from the buckets: checked, not kept
        else:
            raise LogFormatError(f"endpoint {name!r}: unknown field {key!r}")
    return pos


def _parse_endpoints(body: str) -> dict[str, Any]:
    sections: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS.values()}
    pos = 0
    while pos < len(body):
        m = _ENTRY_PREFIX.match(body, pos)
        if m is None:
            raise LogFormatError(f"expected an endpoint name at column {pos}")
        section = _SECTIONS[m.group(1) or ""]
        name, pos = _decoder.raw_decode(body, m.end() - 1)
        if not isinstance(name, str):
            raise LogFormatError("endpoint names must be strings")
        expected = _QUEUE_FIELDS if section == "queues" else _ENDPOINT_FIELDS
        values: dict[str, Any] = {}
        for key in expected:
            fm = _FIELD.match(body, pos)
            if fm is None or fm.group(1) != key:
                raise LogFormatError(f"endpoint {name!r}: expected field {key!r}")
            text = fm.group(2)
            values[key] = _float(text) if key.endswith(("_ms", "avg_active")) else int(text)
            pos = fm.end()
        if section != "queues":
            pos = _parse_extras(name, body, pos, values)
        sections[section][name] = values
        if body.startswith("; ", pos):
            pos += 2
        elif pos != len(body):
            raise LogFormatError(f"unexpected text after endpoint {name!r}")
    return sections


def _parse_system(body: str) -> dict[str, Any]:
    m = _SYSTEM.match(body)
    if m is None:
        raise LogFormatError("malformed [SYSTEM] line")
    errors = json.loads(m.group(6))
    if not isinstance(errors, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in errors.items()
    ):
        raise LogFormatError("SinkErrors must map names to counts")
    return {
        "system": {
            "cpu_percent": _strip_unit(m.group(1), "%"),
            "memory_mb": _strip_unit(m.group(2), "MB"),
            "threads": _opt_int(m.group(3)),
            "open_fds": _opt_int(m.group(4)),
            "loop_lag_ms": _strip_unit(m.group(5), "ms"),
        },
        "sink_errors": errors,
    }


_PARSERS: Final = {
    "CONCURRENCY": _parse_concurrency,
    "ENDPOINTS": _parse_endpoints,
    "SYSTEM": _parse_system,
}


def parse_line(line: str) -> ReportLine:
    """Parse one line (with or without its newline); raises :class:`LogFormatError`."""
    m = _LINE.match(line.rstrip("\r\n"))
    if m is None:
        raise LogFormatError("not a concmon report line")
    timestamp, pid, tag, body = m.groups()
    try:
        datetime.fromisoformat(timestamp)
        values = _PARSERS[tag](body or "")
    except LogFormatError:
        raise
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise LogFormatError(f"malformed [{tag}] line: {exc}") from None
    return ReportLine(timestamp, int(pid), tag, values)


@dataclass
class ReportAssembler:
    """Turns a stream of lines into snapshots; bad or orphaned lines are counted, not raised.

    Lines from several processes may interleave in one file, so the three lines of a report are
    matched by (timestamp, pid) rather than by position.
    """

    max_pending: int = 1024
    skipped: int = 0
    _pending: OrderedDict[tuple[str, int], dict[str, ReportLine]] = field(
        default_factory=OrderedDict
    )

    def feed(self, line: str | bytes) -> Snapshot | None:
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError:
                self.skipped += 1
                return None
        if not line.strip():
            return None
        try:
            parsed = parse_line(line)
        except LogFormatError:
            self.skipped += 1
            return None
        key = (parsed.timestamp, parsed.pid)
        parts = self._pending.setdefault(key, {})
        if parsed.tag in parts:
            self.skipped += 1
        parts[parsed.tag] = parsed
        if len(parts) == len(TAGS):
            del self._pending[key]
            return self._build(parts)
        while len(self._pending) > self.max_pending:
            _, dropped = self._pending.popitem(last=False)
            self.skipped += len(dropped)
        return None

    def _build(self, parts: dict[str, ReportLine]) -> Snapshot | None:
        head = parts["CONCURRENCY"]
        data: dict[str, Any] = {"schema": SCHEMA, "timestamp": head.timestamp}
        data["pid"] = head.pid
        for tag in TAGS:
            data.update(parts[tag].values)
        try:
            return Snapshot.from_dict(_expanded(data))
        except ValueError:
            self.skipped += len(parts)
            return None

    def close(self) -> None:
        """Count the lines of reports that never completed (a file cut mid-report)."""
        self.skipped += sum(len(parts) for parts in self._pending.values())
        self._pending.clear()


def _expanded(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with each distribution's non-empty buckets spread over every bucket of the
    report's ``buckets_s`` (the [ENDPOINTS] line alone does not know how many there are)."""
    size = len(data["buckets_s"]) + 1
    for section in ("endpoints", "websockets", "background"):
        for values in data[section].values():
            for key in _DISTRIBUTION_KEYS:
                if key not in values:
                    continue
                sparse: dict[int, int] = values[key]["buckets"]
                if any(index >= size for index in sparse):
                    raise LogFormatError(f"a bucket index of {key!r} is past the last bucket")
                values[key] = {**values[key], "buckets": [sparse.get(i, 0) for i in range(size)]}
    return data


def parse_reports(lines: Iterable[str | bytes]) -> tuple[list[Snapshot], int]:
    """Every complete report in ``lines``, and how many lines were skipped as unreadable."""
    assembler = ReportAssembler()
    snapshots = [snap for line in lines if (snap := assembler.feed(line)) is not None]
    assembler.close()
    return snapshots, assembler.skipped
