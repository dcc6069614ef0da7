"""The ``concmon-cli`` command: watch, show, history, export, check, run and demo.

Commands are thin: they parse options, open a source (:mod:`concmon_cli.sources`) and hand
snapshots to the renderers. Every error a user can cause is a :class:`CliError` or a click
usage error, printed as one line on stderr with a documented exit code (docs/cli.md).
"""

from __future__ import annotations

import errno
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from concmon.host import STALE_INTERVALS, HostView
from concmon.sinks.jsonl import snapshot_line
from concmon_cli.durations import parse_since, parse_span
from concmon_cli.errors import (
    EXIT_CRITICAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNKNOWN,
    EXIT_UNREADABLE,
    CliError,
)
from concmon_cli.render import INSTANCES, WORKERS, Footer, Thresholds, make_console, view
from concmon_cli.sources import FileSource, Kind, UrlSource, open_source
from concmon_cli.wording import counted

if TYPE_CHECKING:
    from concmon_cli.fleet import FleetSource

F = TypeVar("F", bound=Callable[..., Any])
PROG = "concmon-cli"


class ConcmonGroup(click.Group):
    """Turns every error into one line on stderr and an exit code, in and out of tests."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            result = super().main(
                args, prog_name or PROG, complete_var, standalone_mode=False, **extra
            )
            sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
        except CliError as exc:
            _error(str(exc))
            sys.exit(exc.code)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else PROG
            message = f"{exc.format_message()} (see '{where} --help')"
            if exc.ctx is not None and exc.ctx.command is check:
                click.echo(f"UNKNOWN - {message}")  # a monitoring plugin's answer to bad input
                sys.exit(EXIT_UNKNOWN)
            _error(message)
            sys.exit(EXIT_UNREADABLE)
        except click.ClickException as exc:
            _error(exc.format_message())
            sys.exit(EXIT_UNREADABLE)
        except click.Abort:
            sys.exit(EXIT_INTERRUPTED)
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise
            _reader_gone()
        sys.exit(result if isinstance(result, int) else EXIT_OK)

    def invoke(self, ctx: click.Context) -> Any:
        # Here rather than in main: click turns a closed pipe into exit 1 before main sees it.
        try:
            return super().invoke(ctx)
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise
            _reader_gone()


def _reader_gone() -> NoReturn:
    """The reader of stdout (head, grep -m) has seen enough: exit 0 quietly, as Unix tools do.

    What is still buffered would fail again when the interpreter flushes stdout at exit, so
    stdout is pointed at /dev/null first (https://docs.python.org/3/library/signal.html#note-on-sigpipe).
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # stdout is not a file (an in-process runner): nothing will flush it
    sys.exit(EXIT_OK)


def _error(message: str) -> None:
    click.echo(f"{PROG}: error: {message}", err=True)


def _source_option(fn: F) -> F:
    fn = click.argument("source", required=False)(fn)
    fn = click.option(
        "--format",
        "kind",
        type=click.Choice(["auto", "log", "jsonl"]),
        default="auto",
        show_default=True,
        help="How to read a file source (auto: by suffix, then by content).",
    )(fn)
    return click.option(
        "--stale-intervals",
        type=click.FloatRange(min=1.0),
        default=STALE_INTERVALS,
        show_default=True,
        help="A worker is gone after this many of its intervals without a report (totals kept).",
    )(fn)


def _display_options(fn: F) -> F:
    for decorator in reversed(
        [
            click.option("--per-worker", is_flag=True, help="A row per worker process as well."),
            click.option(
                "--per-instance", is_flag=True, help="With --prometheus: a row per instance."
            ),
            click.option("--no-color", is_flag=True, help="No colours (NO_COLOR also works)."),
            click.option("--warn-active", type=click.IntRange(min=1), help="Active turns yellow."),
            click.option("--crit-active", type=click.IntRange(min=1), help="Active turns red."),
            click.option(
                "--warn-queue",
                type=click.IntRange(min=1),
                default=1,
                show_default=True,
                help="Queue depth turns yellow.",
            ),
            click.option(
                "--warn-loop-lag",
                type=click.FloatRange(min=0.0),
                default=100.0,
                show_default=True,
                help="Loop lag (ms) turns yellow.",
            ),
        ]
    ):
        fn = decorator(fn)
    return fn


def _fleet_options(fn: F) -> F:
    """``--prometheus URL`` and the options that choose and show what is asked of it."""
    for decorator in reversed(
        [
            click.option(
                "--prometheus",
                "prometheus_url",
                metavar="URL",
                help="Read the fleet from this Prometheus server's query API instead of SOURCE.",
            ),
            click.option("--job", metavar="NAME", help="With --prometheus: only this scrape job."),
            click.option(
                "--selector",
                metavar="'{label=\"value\",...}'",
                help="With --prometheus: only the series these label matchers select.",
            ),
            click.option(
                "--prometheus-ca",
                type=click.Path(dir_okay=False),
                envvar="CONCMON_PROMETHEUS_CA",
                show_envvar=True,
                help="With --prometheus: verify its TLS certificate with this CA file.",
            ),
            click.option(
                "--show-queries",
                is_flag=True,
                help="With --prometheus: print the PromQL it runs, then exit.",
            ),
        ]
    ):
        fn = decorator(fn)
    return fn


def _context() -> click.Context | None:
    return click.get_current_context(silent=True)


def _window_option(fn: F) -> F:
    return click.option(
        "--window",
        default="1m",
        show_default=True,
        help="With --prometheus: the span of rates and interval peaks (two scrapes or more).",
    )(fn)


def _fleet(
    source: str | None, stale_intervals: float, window_s: float, opts: dict[str, Any]
) -> FleetSource | None:
    """The fleet source the options ask for, None without ``--prometheus``; with
    ``--show-queries`` the queries are printed and the command ends."""
    url = opts.pop("prometheus_url")
    job, selector, ca = opts.pop("job"), opts.pop("selector"), opts.pop("prometheus_ca")
    show_queries = opts.pop("show_queries")
    if url is None:
        for name, value in (
            ("--job", job),
            ("--selector", selector),
            ("--prometheus-ca", ca),
            ("--show-queries", show_queries),
            ("--per-instance", opts.get("per_instance")),
        ):
            if value:
                raise click.UsageError(f"{name} needs --prometheus URL", ctx=_context())
        return None
    if source is not None:
        raise click.UsageError(f"give SOURCE {source!r} or --prometheus, not both", ctx=_context())
    from concmon_cli.fleet import FleetSource, PrometheusClient
    from concmon_cli.promql import Matcher, Queries, job_matcher, parse_selector

    matchers: tuple[Matcher, ...] = (job_matcher(job),) if job is not None else ()
    if selector is not None:
        matchers += parse_selector(selector)
    queries = Queries(matchers, window_s)
    if show_queries:
        for query in queries.every():
            click.echo(f"# {query.name}\n{query.promql}")
        sys.exit(EXIT_OK)
    return FleetSource(PrometheusClient(url, ca_file=ca), queries, stale_intervals)


def _open(source: str | None, kind: str, stale_intervals: float) -> FileSource | UrlSource:
    opened = open_source(source, _kind(kind))
    if isinstance(opened, FileSource):
        opened.stale_intervals = stale_intervals
    return opened


def _kind(kind: str) -> Kind:
    if kind == "log":
        return "log"
    if kind == "jsonl":
        return "jsonl"
    return "auto"


def _thresholds(opts: dict[str, Any]) -> Thresholds:
    return Thresholds(
        warn_active=opts["warn_active"],
        crit_active=opts["crit_active"],
        warn_queue=opts["warn_queue"],
        warn_loop_lag_ms=opts["warn_loop_lag"],
    )


@click.group(cls=ConcmonGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="concmon", prog_name=PROG)
def cli() -> None:
    """Live per-endpoint concurrency of a web service, from its concmon reports.

    SOURCE is a log file (default logs/concmon.log), a JSON-lines file, or a live
    http://127.0.0.1:PORT/concurrency URL.
    """


@cli.command()
@_source_option
@_display_options
@_fleet_options
@_window_option
def show(*, source: str | None, kind: str, stale_intervals: float, window: str, **opts: Any) -> int:
    """The table once, from the latest report (read from the end of the file), or the fleet
    from Prometheus (--prometheus)."""
    fleet = _fleet(source, stale_intervals, parse_span(window, "--window"), opts)
    reading = (fleet or _open(source, kind, stale_intervals)).latest()
    members = WORKERS if fleet is None else INSTANCES
    console = make_console(no_color=opts["no_color"])
    console.print(
        view(
            reading.live,
            reading.total,
            Footer(
                reading.label,
                reading.skipped,
                reading.workers.retired,
                None if fleet is None else fleet.stale_note(),
                members=members,
            ),
            _thresholds(opts),
            terminal=console.is_terminal,
            per_worker=opts["per_worker"] or opts["per_instance"],
        )
    )
    return EXIT_OK


@cli.command()
@_source_option
@_display_options
@click.option(
    "--refresh",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="Seconds between two redraws.",
)
@click.option(
    "--count", type=click.IntRange(min=0), default=0, help="Stop after N redraws (0: never)."
)
@_fleet_options
def watch(
    *,
    source: str | None,
    kind: str,
    stale_intervals: float,
    refresh: float,
    count: int,
    **opts: Any,
) -> int:
    """The live table, redrawn as reports arrive; Ctrl-C to stop.

    A file that does not exist yet is waited for, and a rotated file is followed. With
    --prometheus, the fleet: rates and interval peaks over the refresh interval.
    """
    fleet = _fleet(source, stale_intervals, refresh, opts)
    opened = fleet or _open(source, kind, stale_intervals)
    stream = opened.stream(initial=True)
    label = opened.label
    console = make_console(no_color=opts["no_color"])
    workers = HostView(stale_intervals)
    thresholds = _thresholds(opts)
    members = WORKERS if fleet is None else INSTANCES

    def frame() -> Any:
        info = Footer(label, stream.skipped, workers.retired, stream.status, members=members)
        live = workers.live()
        if fleet is not None:
            from concmon_cli.fleet import marked

            live = [marked(s, getattr(stream, "stale", frozenset())) for s in live]
        return view(
            live,
            workers.total(),
            info,
            thresholds,
            terminal=console.is_terminal,
            per_worker=opts["per_worker"] or opts["per_instance"],
        )

    if fleet is not None:
        workers.extend(fleet.latest().live)  # a first answer, or the one-line error

    drawn = 0
    try:
        if console.is_terminal:
            from rich.live import Live

            with Live(console=console, auto_refresh=False, redirect_stdout=False) as screen:
                while True:
                    workers = stream.update(workers)
                    screen.update(frame(), refresh=True)
                    drawn += 1
                    if count and drawn >= count:
                        break
                    time.sleep(refresh)
        else:
            last_seen: tuple[object, ...] | None = None
            while True:
                workers = stream.update(workers)
                state = (tuple(s.timestamp for s in workers.live()), stream.status)
                if state != last_seen:
                    if last_seen is not None:
                        console.print()
                    console.print(frame())
                    sys.stdout.flush()
                    last_seen = state
                drawn += 1
                if count and drawn >= count:
                    break
                time.sleep(refresh)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a watch ends
    finally:
        stream.close()
    return EXIT_OK


@cli.command()
@_source_option
@click.option("--since", help="Only reports since then: 10m, 1h30m, or an ISO time.")
@click.option("--endpoint", "-e", help="The series of one endpoint.")
@click.option(
    "--rows",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="At most this many rows (reports are grouped into equal time buckets).",
)
@click.option("--no-color", is_flag=True, help="No colours (NO_COLOR also works).")
def history(
    *,
    source: str | None,
    kind: str,
    stale_intervals: float,
    since: str | None,
    endpoint: str | None,
    rows: int,
    no_color: bool,
) -> int:
    """The series over time, with a sparkline per endpoint for active and peak."""
    from concmon_cli.history import history_view, series

    cutoff = parse_since(since, "--since") if since is not None else None
    opened = _open(source, kind, stale_intervals)
    if not isinstance(opened, FileSource):
        raise CliError("history needs a log or JSON-lines file; a URL only has the present")
    if cutoff is not None:
        reports, skipped = opened.reports_since(cutoff)
    else:
        generator, decoder = opened.reports()
        reports = list(generator)
        skipped = decoder.skipped
    if not reports:
        when = f" since {cutoff.isoformat(timespec='seconds')}" if cutoff else ""
        raise CliError(f"no complete concmon report in {opened.path}{when}")
    if endpoint is not None and not any(endpoint in r.endpoints for r in reports):
        raise CliError(f"no endpoint named {endpoint!r} in these reports")
    points = series(reports, rows, stale_intervals)
    console = make_console(no_color=no_color)
    console.print(history_view(points, endpoint, console.is_terminal))
    footer = f"source {opened.path}  {len(reports)} reports"
    if skipped:
        footer += f"  {counted(skipped, 'unreadable line')} skipped"
    console.print(footer, style="dim")
    return EXIT_OK


@cli.group()
def export() -> None:
    """Snapshots for dashboards and scripts (json), Prometheus (prometheus), a Grafana dashboard."""


@export.command("json")
@_source_option
@click.option("--since", help="Every report since then, one per line: 10m, 1h, an ISO time.")
@click.option("--follow", "-f", is_flag=True, help="Then every new report as it arrives.")
@click.option("--per-worker", is_flag=True, help="The latest report of each worker, not the sum.")
@click.option(
    "--per-instance", is_flag=True, help="With --prometheus: each instance's line, not the sum."
)
@click.option(
    "--count", type=click.IntRange(min=0), default=0, help="With --follow: stop after N reports."
)
@click.option(
    "--poll",
    type=click.FloatRange(min=0.05),
    default=0.25,
    show_default=True,
    help="With --follow: seconds between two looks at the source.",
)
@_fleet_options
@_window_option
def export_json(
    *,
    source: str | None,
    kind: str,
    stale_intervals: float,
    since: str | None,
    follow: bool,
    per_worker: bool,
    count: int,
    poll: float,
    window: str,
    **opts: Any,
) -> int:
    """The latest snapshot as one JSON line, exactly as the jsonl sink writes it.

    With several workers the line is their sum (pid 0) unless --per-worker is given; with
    --prometheus, the fleet's sum unless --per-instance is given.
    """
    cutoff = parse_since(since, "--since") if since is not None else None
    fleet = _fleet(source, stale_intervals, parse_span(window, "--window"), opts)
    per_worker = per_worker or opts["per_instance"]
    opened = fleet or _open(source, kind, stale_intervals)
    out = sys.stdout
    written = 0
    if cutoff is not None:
        if not isinstance(opened, FileSource):
            raise CliError(
                "--since needs a log or JSON-lines file; a URL or Prometheus has the present"
            )
        reports, _ = opened.reports_since(cutoff)
        for report in reports:
            out.write(snapshot_line(report))
        written = len(reports)
    elif not follow:
        reading = opened.latest()
        for snapshot in reading.live if per_worker else [reading.total]:
            out.write(snapshot_line(snapshot))
        return EXIT_OK
    out.flush()
    if not follow:
        return EXIT_OK
    stream = opened.stream(initial=False)
    said_waiting = False
    try:
        while not count or written < count:
            snapshots = stream.poll()
            if stream.status is not None and not said_waiting:
                click.echo(f"{PROG}: {stream.status}", err=True)
                said_waiting = True
            for snapshot in snapshots:
                out.write(snapshot_line(snapshot))
                written += 1
                if count and written >= count:
                    break
            out.flush()
            if not count or written < count:
                time.sleep(poll)
    except KeyboardInterrupt:
        pass
    finally:
        stream.close()
    return EXIT_OK


@export.command("prometheus")
@_source_option
@click.option("--since", help="Add up the reports since then (queue waits, CPU): 10m, 1h.")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False),
    help="Write to this file atomically (for node_exporter's textfile collector).",
)
def export_prometheus(
    *, source: str | None, kind: str, stale_intervals: float, since: str | None, output: str | None
) -> int:
    """The latest reports in the Prometheus text format, workers added up."""
    try:
        from concmon.exporters.prometheus import exposition_from_snapshots
    except ImportError as exc:
        raise CliError(f"the Prometheus exporter needs prometheus-client ({exc})") from None
    cutoff = parse_since(since, "--since") if since is not None else None
    opened = _open(source, kind, stale_intervals)
    if isinstance(opened, UrlSource):
        if cutoff is not None:
            raise CliError("--since needs a log or JSON-lines file; a URL only has the present")
        reports = [opened.fetch()]
    elif cutoff is not None:
        reports, _ = opened.reports_since(cutoff)
        if not reports:
            raise CliError(f"no complete concmon report in {opened.path} since {since}")
    else:
        reports, _ = opened.recent()
    from concmon.exporters.config import load_exporter_settings
    from concmon.settings import ConfigError

    try:  # the same label switches as the live exporter (CONCMON_METRICS_*_LABEL)
        labels_off = load_exporter_settings().labels_off
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    text = exposition_from_snapshots(
        reports, stale_intervals=stale_intervals, labels_off=labels_off
    )
    if output is None:
        sys.stdout.write(text)
        return EXIT_OK
    _write_atomically(output, text)
    return EXIT_OK


@export.command("grafana")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False),
    help="Write to this file atomically instead of stdout.",
)
def export_grafana(*, output: str | None) -> int:
    """The Grafana dashboard for the Prometheus metrics, as JSON to import (docs/exporters.md)."""
    from importlib.resources import files

    text = files("concmon.exporters").joinpath("grafana-dashboard.json").read_text("utf-8")
    if output is None:
        sys.stdout.write(text)
        return EXIT_OK
    _write_atomically(output, text)
    return EXIT_OK


def _write_atomically(output: str, text: str) -> None:
    """``text`` into ``output`` under a temporary name, then renamed: readers never see half."""
    import os
    import tempfile
    from pathlib import Path

    target = Path(output)
    try:
        fd, temp = tempfile.mkstemp(dir=target.parent or ".", prefix=f".{target.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temp, target)
    except OSError as exc:
        raise CliError(f"cannot write {target}: {exc.strerror or exc}") from None


def _threshold_options(fn: F) -> F:
    """``--warn-X`` and ``--max-X`` for each figure check judges: warning and critical."""
    figures: list[tuple[str, Any, str]] = [
        ("active", click.IntRange(min=0), "this many active"),
        ("queue", click.IntRange(min=0), "this queue depth"),
        (
            "failed-rate",
            click.FloatRange(min=0.0, max=1.0),
            "this failed/completed ratio (0-1) over the last interval",
        ),
        ("loop-lag", click.FloatRange(min=0.0), "this loop lag (ms)"),
        ("age", click.STRING, "this age of the latest report (e.g. 30s)"),
        (
            "littles-law",
            click.FloatRange(min=0.0),
            "this many requests of concurrency Little's law leaves unexplained "
            "(stuck or not accounted; see docs/cli.md)",
        ),
    ]
    for name, kind, what in reversed(figures):
        fn = click.option(f"--max-{name}", type=kind, help=f"CRITICAL above {what}.")(fn)
        fn = click.option(f"--warn-{name}", type=kind, help=f"WARNING above {what}.")(fn)
    return fn


@cli.command()
@_source_option
@_threshold_options
@_fleet_options
@_window_option
def check(*, source: str | None, kind: str, stale_intervals: float, **opts: Any) -> int:
    """One status line and the exit code of a monitoring plugin (Nagios, Icinga, Sensu):
    0 OK, 1 WARNING (past a --warn-* threshold), 2 CRITICAL (past a --max-* threshold, or
    concmon switched off by its settings), 3 UNKNOWN (the source cannot be read).

    The line is ``STATE - text | perfdata`` (label=value[UOM];warn;crit;min;max).
    """
    try:
        return _check(source, kind, stale_intervals, opts)
    except CliError as exc:
        click.echo(f"UNKNOWN - {exc}")
        return EXIT_UNKNOWN


def _check(source: str | None, kind: str, stale_intervals: float, opts: dict[str, Any]) -> int:
    from datetime import UTC, datetime

    from concmon_cli.check import Finding, Limits, Threshold, evaluate
    from concmon_cli.durations import parse_timestamp

    def threshold(name: str) -> Threshold:
        key = name.replace("-", "_")
        warn, crit = opts[f"warn_{key}"], opts[f"max_{key}"]
        if name == "age":
            warn = parse_span(warn, "--warn-age") if warn is not None else None
            crit = parse_span(crit, "--max-age") if crit is not None else None
        if warn is not None and crit is not None and warn > crit:
            raise CliError(
                f"--warn-{name} {opts[f'warn_{key}']} is above --max-{name} "
                f"{opts[f'max_{key}']}: the warning comes before the critical"
            )
        return Threshold(warn, crit)

    limits = Limits(
        active=threshold("active"),
        queue=threshold("queue"),
        failed_rate=threshold("failed-rate"),
        loop_lag_ms=threshold("loop-lag"),
        age_s=threshold("age"),
        littles_law=threshold("littles-law"),
    )
    window = parse_span(opts["window"], "--window")
    fleet = _fleet(source, stale_intervals, window, {**opts, "per_instance": None})
    if fleet is not None:
        # The fleet is judged on what Prometheus holds, not on this machine's settings.
        reading = fleet.latest(previous=True)
        verdict = evaluate(reading.workers, limits, age_s=None)
        click.echo(verdict.line())
        return verdict.exit_code
    misconfigured = _misconfiguration()
    try:
        reading = _open(source, kind, stale_intervals).latest()
    except CliError:
        if misconfigured is None:
            raise
        # A switched-off concmon writes no reports: the setting is the news, not the silence.
        click.echo(f"CRITICAL - {misconfigured}")
        return EXIT_CRITICAL
    total = reading.total
    age = (datetime.now(UTC) - parse_timestamp(total.timestamp)).total_seconds()
    verdict = evaluate(reading.workers, limits, age_s=max(age, 0.0))
    if misconfigured is not None:
        verdict = verdict.with_finding(Finding("CRITICAL", misconfigured), first=True)
    click.echo(verdict.line())
    return verdict.exit_code


def _misconfiguration() -> str | None:
    """Why concmon would switch itself off in this environment, None when its settings read."""
    from concmon import ConfigError
    from concmon.settings import load_settings

    try:
        load_settings()
    except ConfigError as exc:
        return f"concmon is switched off by its settings here: {exc}"
    return None


@cli.command(context_settings={"show_default": True})
@click.argument("app")
@click.option("--host", default="127.0.0.1", help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, help="Port to listen on.")
@click.option("--workers", type=click.IntRange(min=1), default=1, help="Worker processes.")
@click.option("--reload", is_flag=True, help="Restart when the code changes (development).")
@click.option("--debug", is_flag=True, help="Development mode: 1 s reports, debug logs.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.0, min_open=True),
    help="Seconds between reports (MONITOR_UPDATE_INTERVAL).",
)
@click.option("--log-file", type=click.Path(dir_okay=False), help="Report file (CONCMON_LOG_FILE).")
@click.option("--json-path", default="/concurrency", help="Where the app serves the snapshot.")
@click.option(
    "--app-dir",
    type=click.Path(exists=True, file_okay=False),
    default=".",
    help="Directory to import APP from.",
)
@click.option(
    "--prometheus", is_flag=True, help="Serve Prometheus metrics at /metrics (run's middleware)."
)
@click.option(
    "--metrics-token",
    envvar="CONCMON_METRICS_TOKEN",
    show_envvar=True,
    help="Bearer token required on the snapshot and metrics paths; prefer the variable.",
)
@click.option(
    "--metrics-allow",
    help="Client addresses or networks allowed on those paths, comma-separated (10.0.0.0/8).",
)
def run(
    *,
    app: str,
    host: str,
    port: int,
    workers: int,
    reload: bool,
    debug: bool,
    interval: float | None,
    log_file: str | None,
    json_path: str,
    app_dir: str,
    prometheus: bool,
    metrics_token: str | None,
    metrics_allow: str | None,
) -> int:
    """Serve the ASGI app APP (module:attribute) with uvicorn, counted by concmon.

    The app's code is not changed: concmon's middleware wraps it in every worker, the
    snapshot is served at --json-path, and reports go to the log file. An app that calls
    install() itself is served as it is, with its own options. ENABLE_CONCURRENCY_MONITOR=false
    serves it uncounted. Works with --workers N and with --reload.
    """
    from pathlib import Path

    from concmon_cli.launcher import LaunchConfig, serve

    serve(
        LaunchConfig(
            app=app,
            host=host,
            port=port,
            workers=workers,
            reload=reload,
            debug=debug,
            interval=interval,
            log_file=Path(log_file) if log_file else None,
            json_path=json_path,
            app_dir=Path(app_dir),
            prometheus=prometheus,
            metrics_token=metrics_token,
            metrics_allow=metrics_allow,
        )
    )
    return EXIT_OK


@cli.command()
@click.option(
    "--duration",
    type=click.FloatRange(min=1.0, max=3600.0),
    default=20.0,
    show_default=True,
    help="Seconds before the demo ends by itself.",
)
@click.option(
    "--parallel",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Generations the simulated upstream serves at once.",
)
@click.option(
    "--error-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.05,
    show_default=True,
    help="Share of upstream calls that fail (502).",
)
@click.option(
    "--max-requests",
    type=click.IntRange(min=1),
    default=3000,
    show_default=True,
    help="Upper bound on the requests the clients send.",
)
@click.option("--no-color", is_flag=True, help="No colours (NO_COLOR also works).")
def demo(
    *, duration: float, parallel: int, error_rate: float, max_requests: int, no_color: bool
) -> int:
    """A small OpenAI-style proxy under a burst of load, with the live table.

    Everything runs on 127.0.0.1 and stops by itself after --duration seconds; Ctrl-C stops
    it sooner.
    """
    from concmon import get_monitor
    from concmon_cli.demo import run_demo, summary

    console = make_console(no_color=no_color)
    stats = run_demo(
        console,
        duration=duration,
        max_requests=max_requests,
        parallel=parallel,
        error_rate=error_rate,
    )
    console.print(summary(stats, get_monitor().snapshot()))
    console.print(
        "Your app: concmon-cli run module:app, then concmon-cli watch (see docs/cli.md).",
        style="dim",
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``concmon-cli`` console script."""
    cli.main(args=list(argv) if argv is not None else None, prog_name=PROG)


if __name__ == "__main__":
    main()
