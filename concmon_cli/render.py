"""The table people look at: a header of process totals, one row per endpoint, a footer.

Everything here is a pure function from snapshots to rich renderables. Names that come from
the monitored app (endpoints, queues, the host) are always wrapped in ``Text`` so a route
called ``[red]`` is shown as written, never read as markup. Colours carry meaning only: yellow
for a threshold reached, red for a critical one or for failures; without a terminal (or with
``--no-color`` / ``NO_COLOR``) the same content comes out as plain aligned text.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from concmon.snapshot import EndpointStats, Snapshot
from concmon_cli.durations import parse_timestamp
from concmon_cli.wording import counted

WARN = "yellow"
CRIT = "bold red"
DIM = "dim"


@dataclass(frozen=True)
class Thresholds:
    """Where a figure turns yellow (warn) or red (crit); ``None`` never colours it."""

    warn_active: int | None = None
    crit_active: int | None = None
    warn_queue: int | None = 1
    warn_loop_lag_ms: float | None = 100.0


@dataclass(frozen=True)
class Footer:
    source: str
    skipped: int = 0
    gone: int = 0
    """Workers taken for gone: their totals stay in the sum, their actives do not."""
    status: str | None = None
    now: datetime | None = None


class _PipedConsole(Console):
    """A console that leaves a closed pipe to the command (exit 0, as Unix tools do) instead
    of rich's own answer (exit 1)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, "the reader closed the pipe")


def make_console(
    file: IO[str] | None = None, *, no_color: bool = False, width: int | None = None
) -> Console:
    """A console that draws for a terminal and writes plain, unwrapped text otherwise."""
    out = file if file is not None else sys.stdout
    terminal = out.isatty()
    if not terminal and width is None:
        width = 200  # a pipe or a file: never wrap or truncate an endpoint name
    return _PipedConsole(
        file=out,
        force_terminal=terminal,
        no_color=no_color or bool(os.environ.get("NO_COLOR")),
        width=width,
        highlight=False,
        emoji=False,
        soft_wrap=False,
    )


def _int(value: int | None) -> str:
    return "-" if value is None else str(value)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def _active_style(active: int, t: Thresholds) -> str:
    if t.crit_active is not None and active >= t.crit_active:
        return CRIT
    if t.warn_active is not None and active >= t.warn_active:
        return WARN
    return ""


def _count_style(value: int, style: str) -> str:
    return style if value else ""


def _queue_style(depth: int, t: Thresholds) -> str:
    return WARN if t.warn_queue is not None and depth >= t.warn_queue else ""


def _lag_style(lag: float | None, t: Thresholds) -> str:
    if lag is None or t.warn_loop_lag_ms is None:
        return ""
    return WARN if lag >= t.warn_loop_lag_ms else ""


def _pair(label: str, value: str, style: str = "") -> Text:
    text = Text(f"{label} ", style=DIM)
    text.append(value, style=style or "bold")
    return text


def header(total: Snapshot, workers: int, t: Thresholds) -> Text:
    """The totals: requests, then queue, saturation and the process figures."""
    s = total
    sy = s.system
    requests = [
        _pair("Active", f"{s.active}/{s.peak}", _active_style(s.active, t)),
        _pair("Interval peak", str(s.interval_peak)),
        _pair("Total", str(s.total)),
        _pair("Completed", str(s.completed)),
        _pair("Failed", str(s.failed), _count_style(s.failed, CRIT)),
        _pair("Cancelled", str(s.cancelled), _count_style(s.cancelled, WARN)),
        _pair("Rejected", str(s.rejected), _count_style(s.rejected, WARN)),
    ]
    if s.lost:  # in flight in a worker that died: shown when there are any
        requests.append(_pair("Lost", str(s.lost), _count_style(s.lost, CRIT)))
    process = [
        _pair("Queue", f"{s.queue_depth} (peak {s.queue_peak})", _queue_style(s.queue_depth, t))
    ]
    if s.routing:  # requests not routed yet: shown when there are any
        process.append(_pair("Routing", str(s.routing)))
    if s.saturation is not None:
        process.append(_pair("Saturation", f"{s.saturation * 100:.0f}%"))
    lag = "-" if sy.loop_lag_ms is None else f"{sy.loop_lag_ms:.1f}ms"
    process += [
        _pair("CPU", "-" if sy.cpu_percent is None else f"{sy.cpu_percent:.1f}%"),
        _pair("Memory", "-" if sy.memory_mb is None else f"{sy.memory_mb:.1f}MB"),
        _pair("Threads", _int(sy.threads)),
        _pair("FDs", _int(sy.open_fds)),
        _pair("Loop lag", lag, _lag_style(sy.loop_lag_ms, t)),
        _pair("Uptime", _duration(s.uptime_s)),
        _pair("Workers", str(workers)),
    ]
    gap = Text("  ")
    return Text("\n").join([gap.join(requests), gap.join(process)])


def _table(terminal: bool, *columns: str) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD if terminal else None,
        show_edge=False,
        pad_edge=False,
        header_style="bold",
    )
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 else "right", no_wrap=True)
    return table


ENDPOINT_COLUMNS = (
    "endpoint",
    "active",
    "int.peak",
    "peak",
    "total",
    "failed",
    "cancelled",
    "avg ms",
    "max ms",
)


def _endpoint_cells(name: Text, e: EndpointStats, t: Thresholds) -> list[Text]:
    return [
        name,
        Text(str(e.active), style=_active_style(e.active, t)),
        Text(str(e.interval_peak)),
        Text(str(e.peak)),
        Text(str(e.total)),
        Text(str(e.failed), style=_count_style(e.failed, CRIT)),
        Text(str(e.cancelled), style=_count_style(e.cancelled, WARN)),
        Text(_ms(e.avg_ms)),
        Text(_ms(e.max_ms)),
    ]


def _rows(snapshot: Snapshot) -> list[tuple[str, EndpointStats]]:
    rows: list[tuple[str, EndpointStats]] = []
    sections: tuple[tuple[str, Mapping[str, EndpointStats]], ...] = (
        ("", snapshot.endpoints),
        ("ws ", snapshot.websockets),
        ("bg ", snapshot.background),
    )
    for prefix, items in sections:
        ordered = sorted(items.items(), key=lambda kv: (-kv[1].active, -kv[1].total, kv[0]))
        rows += [(prefix + name, stats) for name, stats in ordered]
    return rows


def endpoint_table(
    total: Snapshot,
    t: Thresholds,
    terminal: bool,
    per_worker: Sequence[Snapshot] = (),
) -> Table:
    """One row per endpoint (WebSockets as ``ws``, background tasks as ``bg``)."""
    if per_worker:
        table = _table(terminal, ENDPOINT_COLUMNS[0], "pid", *ENDPOINT_COLUMNS[1:])
        for name, stats in _rows(total):
            cells = _endpoint_cells(Text(name), stats, t)
            table.add_row(cells[0], Text("all", style=DIM), *cells[1:])
            for worker in per_worker:
                for wname, wstats in _rows(worker):
                    if wname == name:
                        cells = _endpoint_cells(Text("  " + name, style=DIM), wstats, t)
                        table.add_row(cells[0], Text(str(worker.pid)), *cells[1:])
        return table
    table = _table(terminal, *ENDPOINT_COLUMNS)
    for name, stats in _rows(total):
        table.add_row(*_endpoint_cells(Text(name), stats, t))
    return table


def queue_table(total: Snapshot, t: Thresholds, terminal: bool) -> Table | None:
    if not total.queues:
        return None
    table = _table(terminal, "queue", "depth", "peak", "waited", "avg wait ms", "max wait ms")
    for name, q in sorted(total.queues.items()):
        table.add_row(
            Text(name),
            Text(str(q.depth), style=_queue_style(q.depth, t)),
            Text(str(q.peak)),
            Text(str(q.waited)),
            Text(_ms(q.wait_avg_ms)),
            Text(_ms(q.wait_max_ms)),
        )
    return table


def worker_table(
    workers: Sequence[Snapshot], total: Snapshot, t: Thresholds, terminal: bool, now: datetime
) -> Table:
    table = _table(
        terminal,
        "pid",
        "active",
        "int.peak",
        "peak",
        "total",
        "failed",
        "cancelled",
        "queue",
        "cpu %",
        "memory MB",
        "threads",
        "age",
    )

    def cells(s: Snapshot, label: str, age: str) -> list[Text]:
        sy = s.system
        return [
            Text(label),
            Text(str(s.active), style=_active_style(s.active, t)),
            Text(str(s.interval_peak)),
            Text(str(s.peak)),
            Text(str(s.total)),
            Text(str(s.failed), style=_count_style(s.failed, CRIT)),
            Text(str(s.cancelled), style=_count_style(s.cancelled, WARN)),
            Text(str(s.queue_depth), style=_queue_style(s.queue_depth, t)),
            Text(_ms(sy.cpu_percent)),
            Text(_ms(sy.memory_mb)),
            Text(_int(sy.threads)),
            Text(age),
        ]

    for s in workers:
        age = _duration((now - parse_timestamp(s.timestamp)).total_seconds())
        table.add_row(*cells(s, str(s.pid), age))
    table.add_row(*cells(total, "sum", ""), style="bold")
    return table


def footer(total: Snapshot | None, info: Footer) -> Text:
    now = info.now or datetime.now(UTC)
    text = Text(f"source {info.source}", style=DIM)
    if total is not None:
        age = (now - parse_timestamp(total.timestamp)).total_seconds()
        style = WARN if age > 3 * max(total.interval_s, 1.0) else DIM
        text.append(f"  report {total.timestamp} ({_duration(age)} ago)", style=style)
    if info.skipped:
        text.append(f"  {counted(info.skipped, 'unreadable line')} skipped", style=WARN)
    if info.gone:
        text.append(f"  {counted(info.gone, 'worker')} gone (their totals kept)", style=DIM)
    if info.status:
        text.append(f"  {info.status}", style=WARN)
    return text


def view(
    workers: Sequence[Snapshot],
    total: Snapshot | None,
    info: Footer,
    t: Thresholds,
    *,
    terminal: bool,
    per_worker: bool = False,
) -> RenderableType:
    """The whole screen: header, endpoint table, queues, workers (if asked), footer."""
    if total is None:
        return Group(Text("no report yet", style=DIM), footer(None, info))
    now = info.now or datetime.now(UTC)
    parts: list[RenderableType] = [header(total, len(workers), t), Text("")]
    parts.append(endpoint_table(total, t, terminal, workers if per_worker else ()))
    queues = queue_table(total, t, terminal)
    if queues is not None:
        parts += [Text(""), queues]
    if per_worker:
        parts += [Text(""), worker_table(workers, total, t, terminal, now)]
    parts += [Text(""), footer(total, info)]
    return Group(*parts)
