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
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
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
class Members:
    """What the parts of a sum are: the worker processes of a host, or a fleet's instances."""

    column: str = "pid"
    noun: str = "worker"
    uptime: bool = True
    """Whether the parts report an uptime (Prometheus series carry none)."""

    def name(self, snapshot: Snapshot) -> str:
        return str(snapshot.pid) if self.column == "pid" else snapshot.host


WORKERS = Members()
INSTANCES = Members("instance", "instance", uptime=False)


@dataclass(frozen=True)
class Footer:
    source: str
    skipped: int = 0
    gone: int = 0
    """Workers taken for gone: their totals stay in the sum, their actives do not."""
    status: str | None = None
    now: datetime | None = None
    members: Members = WORKERS


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


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED_CONTROL = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_control(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED_CONTROL.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def shown_name(name: str, style: str = "") -> Text:
    """A name from the monitored app as one line of plain text: control characters escaped.

    A newline would split a row into a line that looks like a report line of its own and an
    ESC byte would reach the terminal, so both are written as escapes (``\\n``, ``\\x1b``),
    as are the characters that reorder text. ``Text`` never reads markup: ``[red]`` stays.
    """
    return Text(_CONTROL.sub(_escape_control, name), style=style)


def _summed(values: Iterable[int]) -> bool:
    """Whether a host figure is a sum of more than one worker's own peak (an upper bound)."""
    return sum(1 for value in values if value) > 1


def _peak(value: int, bound: bool) -> str:
    return f"\u2264{value}" if bound else str(value)


def bound_note(noun: str) -> str:
    """What a ``≤N`` means, said of the parts that were summed (workers, instances)."""
    return (
        f"\u2264 a sum of each {noun}'s own peak: an upper bound, the {noun}s need not have "
        "peaked at the same moment"
    )


class PairLines:
    """Label-value pairs laid out in as many lines as the width needs, never split inside."""

    def __init__(self, *groups: Sequence[Text]) -> None:
        self.groups = groups

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        lines: list[Text] = []
        for group in self.groups:
            line = Text()
            for pair in group:
                if line and line.cell_len + 2 + pair.cell_len > width:
                    lines.append(line)
                    line = Text()
                if line:
                    line.append("  ")
                line.append_text(pair)
            lines.append(line)
        for line in lines:
            line.no_wrap = True
            line.overflow = "ignore"  # longer than the width only when one pair is
        yield Text("\n").join(lines)


def header(
    total: Snapshot, workers: Sequence[Snapshot], t: Thresholds, members: Members = WORKERS
) -> PairLines:
    """The totals: requests, then queue, saturation and the process figures.

    Every peak names its span (this interval, ever); a peak summed over workers is ``≤N``.
    """
    s = total
    sy = s.system
    requests = [
        _pair("Active", str(s.active), _active_style(s.active, t)),
        _pair(
            "Peak this interval",
            _peak(s.interval_peak, _summed(w.interval_peak for w in workers)),
        ),
        _pair("Peak ever", _peak(s.peak, _summed(w.peak for w in workers))),
        _pair("Total", str(s.total)),
        _pair("Completed", str(s.completed)),
        _pair("Failed", str(s.failed), _count_style(s.failed, CRIT)),
        _pair("Cancelled", str(s.cancelled), _count_style(s.cancelled, WARN)),
        _pair("Rejected", str(s.rejected), _count_style(s.rejected, WARN)),
    ]
    if s.lost:  # in flight in a worker that died: shown when there are any
        requests.append(_pair("Lost", str(s.lost), _count_style(s.lost, CRIT)))
    requests.append(_pair("Rate", f"{_rate(s.rate)}/s"))
    queue_peak = _peak(s.queue_peak, _summed(w.queue_peak for w in workers))
    process = [
        _pair(
            "Queue",
            f"{s.queue_depth} (peak {queue_peak} this interval)",
            _queue_style(s.queue_depth, t),
        )
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
    ]
    if members.uptime:
        process.append(_pair("Uptime", _duration(s.uptime_s)))
    process.append(_pair(members.noun.capitalize() + "s", str(len(workers))))
    return PairLines(requests, process)


def _table(terminal: bool, *columns: str) -> Table:
    """A plain rich table in the house style (the history view's, whose cells are short)."""
    table = Table(
        box=box.SIMPLE_HEAD if terminal else None,
        show_edge=False,
        pad_edge=False,
        header_style="bold",
    )
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 else "right", no_wrap=True)
    return table


@dataclass(frozen=True)
class Column:
    """A column of a fitted table; ``rank`` 0 is always shown, higher ranks go first."""

    name: str
    rank: int


NAME_FLOOR = 20
"""Columns are dropped before a name is shortened below this many cells."""


class FittedTable:
    """A table that never cuts a figure: it drops its least important columns to fit.

    The first column holds names; it is the only one ever shortened (with an ellipsis), and
    only once the columns that can go are gone or the name is still wider than ``NAME_FLOOR``.
    Wider terminals show more columns. The layout is chosen at each render, so a live screen
    follows a resized terminal. Narrower than the columns that always stay, the lines run
    past the width (the terminal wraps them) rather than lose a digit.
    """

    def __init__(self, terminal: bool, *columns: Column) -> None:
        self.terminal = terminal
        self.columns = columns
        self.rows: list[tuple[list[Text], str]] = []

    def add_row(self, *cells: Text, style: str = "") -> None:
        self.rows.append((list(cells), style))

    def _natural(self, index: int) -> int:
        cells = [row[index].cell_len for row, _ in self.rows]
        return max([len(self.columns[index].name), *cells])

    def _build(self, keep: Sequence[int], name_width: int) -> Table:
        table = Table(
            box=box.SIMPLE_HEAD if self.terminal else None,
            show_edge=False,
            pad_edge=False,
            header_style="bold",
        )
        for index in keep:
            if index == 0:
                table.add_column(
                    self.columns[0].name,
                    no_wrap=True,
                    overflow="ellipsis",
                    min_width=name_width,
                    max_width=name_width,
                )
            else:
                width = self._natural(index)
                table.add_column(
                    self.columns[index].name,
                    justify="right",
                    no_wrap=True,
                    min_width=width,
                    max_width=width,
                )
        for cells, style in self.rows:
            table.add_row(*(cells[index] for index in keep), style=style)
        return table

    def _width(self, keep: Sequence[int], name_width: int) -> int:
        columns = [name_width if index == 0 else self._natural(index) for index in keep]
        gap = 3 if self.terminal else 2  # the padding either side of a column border
        return sum(columns) + gap * (len(columns) - 1)

    def layout(self, width: int) -> tuple[list[int], int]:
        """The columns shown (in order) and the name column's width, for ``width`` cells."""
        keep = list(range(len(self.columns)))
        name = self._natural(0)
        floor = min(name, NAME_FLOOR)
        droppable = sorted(
            (i for i in keep if self.columns[i].rank > 0),
            key=lambda i: (self.columns[i].rank, i),
        )
        while self._width(keep, floor) > width and droppable:
            keep.remove(droppable.pop())
        spare = width - self._width(keep, floor)
        return keep, max(min(name, floor + spare), min(name, 8))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        keep, name_width = self.layout(options.max_width)
        needed = self._width(keep, name_width)
        table = self._build(keep, name_width)
        yield table if needed <= options.max_width else _Wide(table, needed)


class _Wide:
    """A table rendered at its own width when the console is narrower: nothing is cut."""

    def __init__(self, table: Table, width: int) -> None:
        self.table = table
        self.width = width

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from console.render(self.table, options.update_width(self.width))


ENDPOINT_COLUMNS = (
    Column("endpoint", 0),
    Column("active", 0),
    Column("peak ivl", 1),
    Column("peak ever", 8),
    Column("total", 2),
    Column("failed", 7),
    Column("cancelled", 9),
    Column("avg ms", 11),
    Column("max ms", 10),
    Column("req/s", 3),
    Column("p50 ms", 6),
    Column("p99 ms", 4),
    Column("ttfb p99 ms", 5),
)
"""The endpoint table's columns, in display order (the newer ones last, so a script reading
the rows finds the older ones where they were); ranks say which go first when narrow.

The rate and the percentiles cover the interval (the buckets of the requests that finished
since the previous report); the time to first byte is HTTP's only (``-`` for ``ws`` and ``bg``).
"""


def _rate(value: float) -> str:
    return f"{value:.1f}"


def _quantile(stats: EndpointStats, name: str, q: float) -> str:
    found = stats.distribution(name)
    return _ms(None if found is None else found.quantile_ms(q))


def _endpoint_cells(name: Text, e: EndpointStats, t: Thresholds, bound: Bounds) -> list[Text]:
    return [
        name,
        Text(str(e.active), style=_active_style(e.active, t)),
        Text(_peak(e.interval_peak, bound.interval_peak)),
        Text(_peak(e.peak, bound.peak)),
        Text(str(e.total)),
        Text(str(e.failed), style=_count_style(e.failed, CRIT)),
        Text(str(e.cancelled), style=_count_style(e.cancelled, WARN)),
        Text(_ms(e.avg_ms)),
        Text(_ms(e.max_ms)),
        Text(_rate(e.rate)),
        Text(_quantile(e, "duration", 0.5)),
        Text(_quantile(e, "duration", 0.99)),
        Text(_quantile(e, "ttfb", 0.99)),
    ]


@dataclass(frozen=True)
class Bounds:
    """Which peaks of a row are sums over several workers (shown as ``≤N``)."""

    interval_peak: bool = False
    peak: bool = False

    @classmethod
    def over(cls, parts: Sequence[EndpointStats | Snapshot]) -> Bounds:
        return cls(_summed(p.interval_peak for p in parts), _summed(p.peak for p in parts))


_SECTIONS: tuple[tuple[str, str], ...] = (
    ("", "endpoints"),
    ("ws ", "websockets"),
    ("bg ", "background"),
)


def _section(snapshot: Snapshot, attribute: str) -> Mapping[str, EndpointStats]:
    items: Mapping[str, EndpointStats] = getattr(snapshot, attribute)
    return items


def _rows(snapshot: Snapshot) -> list[tuple[str, str, str, EndpointStats]]:
    """(prefix, section, name, stats) in display order: busiest first within each section."""
    rows: list[tuple[str, str, str, EndpointStats]] = []
    for prefix, attribute in _SECTIONS:
        items = _section(snapshot, attribute)
        ordered = sorted(items.items(), key=lambda kv: (-kv[1].active, -kv[1].total, kv[0]))
        rows += [(prefix, attribute, name, stats) for name, stats in ordered]
    return rows


def endpoint_table(
    total: Snapshot,
    t: Thresholds,
    terminal: bool,
    per_worker: Sequence[Snapshot] = (),
    workers: Sequence[Snapshot] = (),
    *,
    members: Members = WORKERS,
) -> FittedTable:
    """One row per endpoint (WebSockets as ``ws``, background tasks as ``bg``).

    ``workers`` are the live workers summed into ``total``: a peak more than one of them
    contributed to is marked as an upper bound. ``per_worker`` adds their rows under each.
    """
    live = workers or per_worker
    columns = ENDPOINT_COLUMNS
    if per_worker:
        split = Column(members.column, 0)
        table = FittedTable(terminal, columns[0], split, *columns[1:])
    else:
        table = FittedTable(terminal, *columns)
    for prefix, attribute, name, stats in _rows(total):
        parts = [_section(w, attribute)[name] for w in live if name in _section(w, attribute)]
        cells = _endpoint_cells(shown_name(prefix + name), stats, t, Bounds.over(parts))
        if not per_worker:
            table.add_row(*cells)
            continue
        table.add_row(cells[0], Text("all", style=DIM), *cells[1:])
        for worker in per_worker:
            wstats = _section(worker, attribute).get(name)
            if wstats is not None:
                cells = _endpoint_cells(shown_name("  " + prefix + name, DIM), wstats, t, Bounds())
                table.add_row(cells[0], shown_name(members.name(worker)), *cells[1:])
    return table


QUEUE_COLUMNS = (
    Column("queue", 0),
    Column("depth", 0),
    Column("peak ivl", 1),
    Column("waited", 2),
    Column("avg wait ms", 4),
    Column("max wait ms", 3),
)
"""A queue's ``peak`` is its highest depth since the previous report: the interval peak."""


def queue_table(
    total: Snapshot, t: Thresholds, terminal: bool, workers: Sequence[Snapshot] = ()
) -> FittedTable | None:
    if not total.queues:
        return None
    table = FittedTable(terminal, *QUEUE_COLUMNS)
    for name, q in sorted(total.queues.items()):
        bound = _summed(w.queues[name].peak for w in workers if name in w.queues)
        table.add_row(
            shown_name(name),
            Text(str(q.depth), style=_queue_style(q.depth, t)),
            Text(_peak(q.peak, bound)),
            Text(str(q.waited)),
            Text(_ms(q.wait_avg_ms)),
            Text(_ms(q.wait_max_ms)),
        )
    return table


WORKER_COLUMNS = (
    Column("pid", 0),
    Column("active", 0),
    Column("peak ivl", 1),
    Column("peak ever", 6),
    Column("total", 2),
    Column("failed", 3),
    Column("cancelled", 7),
    Column("queue", 4),
    Column("cpu %", 8),
    Column("memory MB", 9),
    Column("threads", 10),
    Column("age", 5),
)


def worker_table(
    workers: Sequence[Snapshot],
    total: Snapshot,
    t: Thresholds,
    terminal: bool,
    now: datetime,
    *,
    members: Members = WORKERS,
) -> FittedTable:
    table = FittedTable(terminal, Column(members.column, 0), *WORKER_COLUMNS[1:])

    def cells(s: Snapshot, label: str, age: str, bound: Bounds) -> list[Text]:
        sy = s.system
        return [
            shown_name(label),
            Text(str(s.active), style=_active_style(s.active, t)),
            Text(_peak(s.interval_peak, bound.interval_peak)),
            Text(_peak(s.peak, bound.peak)),
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
        table.add_row(*cells(s, members.name(s), age, Bounds()))
    table.add_row(*cells(total, "sum", "", Bounds.over(workers)), style="bold")
    return table


def footer(total: Snapshot | None, info: Footer) -> Text:
    now = info.now or datetime.now(UTC)
    text = shown_name(f"source {info.source}", DIM)
    if total is not None:
        age = (now - parse_timestamp(total.timestamp)).total_seconds()
        style = WARN if age > 3 * max(total.interval_s, 1.0) else DIM
        text.append(f"  report {total.timestamp} ({_duration(age)} ago)", style=style)
    if info.skipped:
        text.append(f"  {counted(info.skipped, 'unreadable line')} skipped", style=WARN)
    if info.gone:
        noun = info.members.noun
        text.append(f"  {counted(info.gone, noun)} gone (their totals kept)", style=DIM)
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
    members = info.members
    parts: list[RenderableType] = [header(total, workers, t, members), Text("")]
    split = workers if per_worker else ()
    parts.append(endpoint_table(total, t, terminal, split, workers, members=members))
    queues = queue_table(total, t, terminal, workers)
    if queues is not None:
        parts += [Text(""), queues]
    if per_worker:
        parts += [Text(""), worker_table(workers, total, t, terminal, now, members=members)]
    if any(
        _summed(figures)
        for figures in zip(*((w.interval_peak, w.peak, w.queue_peak) for w in workers), strict=True)
    ):
        parts += [Text(""), Text(bound_note(members.noun), style=DIM)]
    parts += [Text(""), footer(total, info)]
    return Group(*parts)
