"""The human log format: writing and parsing in one module, so the two never drift.

A report is three tagged lines that share a timestamp and a pid (see docs/log-format.md)::

    <ts> pid=<pid> [CONCURRENCY] Active: 4/12 Total: 256 Completed: 250 Failed: 2 ...
    <ts> pid=<pid> [ENDPOINTS] "/chat/completions" active=3 peak=10 ...; ws:"/feed" active=1 ...
    <ts> pid=<pid> [SYSTEM] CPU: 45.2% Memory: 123.4MB Threads: 12 FDs: 31 LoopLag: 0.8ms ...

The format is lossless: every field of the snapshot is written, floats with ``repr`` (which
reads back to the same float), names and the host as ASCII-only JSON strings, so a name can
contain quotes, newlines or any unicode without breaking its line or forging another. Parsing a
written report gives back a snapshot equal to the one written.
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Final

from concmon.snapshot import EndpointStats, QueueStats, Snapshot

TAGS: Final = ("CONCURRENCY", "ENDPOINTS", "SYSTEM")
_SECTIONS: Final = {"": "endpoints", "ws": "websockets", "bg": "background", "queue": "queues"}
_PREFIX: Final = {section: prefix for prefix, section in _SECTIONS.items()}
_OPTIONAL_FIELDS: Final = ("lost",)
"""Endpoint fields written only when not 0 (absent from older lines, read as 0)."""
_ENDPOINT_FIELDS: Final = tuple(
    f.name for f in fields(EndpointStats) if f.name not in _OPTIONAL_FIELDS
)
_QUEUE_FIELDS: Final = tuple(f.name for f in fields(QueueStats))

_LINE = re.compile(r"(\S+) pid=(\d+) \[(CONCURRENCY|ENDPOINTS|SYSTEM)\](?: (.*))?\Z", re.DOTALL)
_NUM = r"(-|[0-9][0-9.e+-]*)"
_INT = r"(\d+)"
_CONCURRENCY = re.compile(
    rf"Active: {_INT}/{_INT} Total: {_INT} Completed: {_INT} Failed: {_INT} "
    rf"Cancelled: {_INT}(?: Lost: {_INT})? Queue: {_INT}(?: Routing: {_INT})? "
    rf"Uptime: {_NUM}s IntervalPeak: {_INT} "
    rf"AvgActive: {_NUM} Rejected: {_INT} QueuePeak: {_INT} Interval: {_NUM}s "
    rf"Saturation: {_NUM} Host: (\".*\")\Z"
)
_SYSTEM = re.compile(
    r"CPU: (-|\S+%) Memory: (-|\S+MB) Threads: (-|\d+) FDs: (-|\d+) "
    r"LoopLag: (-|\S+ms) SinkErrors: (\{.*\})\Z"
)
_FIELD = re.compile(r" ([a-z_]+)=(-|[0-9][0-9.e+-]*)")
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


def format_report(snapshot: Snapshot) -> str:
    """The three lines of one report, each ending in a newline, as one string (one write)."""
    s = snapshot
    head = f"{s.timestamp} pid={s.pid}"
    concurrency = (
        f"{head} [CONCURRENCY] Active: {s.active}/{s.peak} Total: {s.total} "
        f"Completed: {s.completed} Failed: {s.failed} Cancelled: {s.cancelled} "
        f"{f'Lost: {s.lost} ' if s.lost else ''}Queue: {s.queue_depth} Routing: {s.routing} "
        f"Uptime: {_num(s.uptime_s)}s "
        f"IntervalPeak: {s.interval_peak} "
        f"AvgActive: {_num(s.avg_active)} Rejected: {s.rejected} QueuePeak: {s.queue_peak} "
        f"Interval: {_num(s.interval_s)}s Saturation: {_num(s.saturation)} "
        f"Host: {_name(s.host)}"
    )
    entries: list[str] = []
    for section, prefix in _PREFIX.items():
        items: Mapping[str, EndpointStats | QueueStats] = getattr(s, section)
        names = _QUEUE_FIELDS if section == "queues" else _ENDPOINT_FIELDS
        for name, stats in items.items():
            values = " ".join(f"{k}={_num(getattr(stats, k))}" for k in names)
            if isinstance(stats, EndpointStats) and stats.lost:
                values += f" lost={stats.lost}"
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


def _parse_concurrency(body: str) -> dict[str, Any]:
    m = _CONCURRENCY.match(body)
    if m is None:
        raise LogFormatError("malformed [CONCURRENCY] line")
    g = m.groups()
    lost = g[6]
    g = g[:6] + g[7:]
    host = json.loads(g[15])
    if not isinstance(host, str):
        raise LogFormatError("Host must be a string")
    return {
        "active": int(g[0]),
        "peak": int(g[1]),
        "total": int(g[2]),
        "completed": int(g[3]),
        "failed": int(g[4]),
        "cancelled": int(g[5]),
        "lost": int(lost) if lost is not None else 0,  # absent when 0, and from older lines
        "queue_depth": int(g[6]),
        "routing": int(g[7]) if g[7] is not None else 0,  # absent from older lines
        "uptime_s": _float(g[8]),
        "interval_peak": int(g[9]),
        "avg_active": _float(g[10]),
        "rejected": int(g[11]),
        "queue_peak": int(g[12]),
        "interval_s": _float(g[13]),
        "saturation": _float(g[14]),
        "host": host,
    }


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
        for key in () if section == "queues" else _OPTIONAL_FIELDS:
            fm = _FIELD.match(body, pos)
            if fm is not None and fm.group(1) == key:
                values[key] = int(fm.group(2))
                pos = fm.end()
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
        data: dict[str, Any] = {"schema": "concmon.snapshot/1", "timestamp": head.timestamp}
        data["pid"] = head.pid
        for tag in TAGS:
            data.update(parts[tag].values)
        try:
            return Snapshot.from_dict(data)
        except ValueError:
            self.skipped += len(parts)
            return None

    def close(self) -> None:
        """Count the lines of reports that never completed (a file cut mid-report)."""
        self.skipped += sum(len(parts) for parts in self._pending.values())
        self._pending.clear()


def parse_reports(lines: Iterable[str | bytes]) -> tuple[list[Snapshot], int]:
    """Every complete report in ``lines``, and how many lines were skipped as unreadable."""
    assembler = ReportAssembler()
    snapshots = [snap for line in lines if (snap := assembler.feed(line)) is not None]
    assembler.close()
    return snapshots, assembler.skipped
