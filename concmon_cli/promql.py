"""The PromQL the fleet view runs, built from a selector and a window, and nothing else.

Every query is an instant query over the metrics the Prometheus exporter publishes
(:mod:`concmon.exporters.catalogue`), split by ``instance`` so one answer gives each replica
and their sum. The queries are pure strings: ``--show-queries`` prints exactly what is sent, so
a user can paste it into Grafana or the Prometheus console. Interval peaks and averages are taken
over one window, the refresh interval of the view; the latency histograms and the request
counter are read raw, now and one window earlier (``offset``), so the view takes the window's
bucket counts and rate as exact differences and estimates percentiles as the local table does.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final

from concmon.exporters.catalogue import HISTOGRAMS as CATALOGUE_HISTOGRAMS
from concmon_cli.errors import CliError

SPLIT: Final = "instance"
"""The label that tells replicas apart: Prometheus gives every target one."""

_PREFIXES: Final = {"endpoints": "", "websockets": "ws_", "background": "bg_"}

HISTOGRAMS: Final = tuple(
    (_PREFIXES[h.section], h.distribution, h.prometheus, h.labels[0])
    for h in CATALOGUE_HISTOGRAMS
    if h.prometheus is not None
)
"""(section prefix, distribution of :class:`~concmon.snapshot.EndpointStats`, histogram, its
name label): the catalogue's histograms, whose buckets make each instance's distributions."""

_NAME: Final = r"[a-zA-Z_][a-zA-Z0-9_]*"
_STRING: Final = r'"(?:[^"\\\n]|\\.)*"' + r"|'(?:[^'\\\n]|\\.)*'" + r"|`[^`]*`"
_MATCHER: Final = re.compile(rf"\s*({_NAME})\s*(=~|!~|!=|=)\s*({_STRING})\s*")


@dataclass(frozen=True, slots=True)
class Matcher:
    label: str
    op: str
    value: str
    """The value as written, quotes included (PromQL reads it again, escapes and all)."""

    def __str__(self) -> str:
        return f"{self.label}{self.op}{self.value}"


def parse_selector(text: str, option: str = "--selector") -> tuple[Matcher, ...]:
    """The label matchers of ``{label="value", ...}``; a one-line CliError naming the problem.

    Only matchers are accepted (no metric name, no functions), so the selector can be added
    to every query the view runs.
    """
    body = text.strip()
    if not (body.startswith("{") and body.endswith("}")):
        raise CliError(
            f"{option} {text!r} is not a label selector: write it as "
            "'{label=\"value\", ...}' (=, !=, =~ or !~)"
        )
    inner = body[1:-1].strip()
    matchers: list[Matcher] = []
    pos = 0
    while pos < len(inner):
        found = _MATCHER.match(inner, pos)
        if found is None:
            raise CliError(
                f"{option} {text!r}: cannot read a matcher at {inner[pos:]!r} "
                '(expected label="value" with =, !=, =~ or !~, separated by commas)'
            )
        matchers.append(Matcher(found.group(1), found.group(2), found.group(3)))
        pos = found.end()
        if pos < len(inner):
            if inner[pos] != ",":
                raise CliError(f"{option} {text!r}: expected a comma at {inner[pos:]!r}")
            pos += 1
            if not inner[pos:].strip():
                break  # PromQL allows a trailing comma
    if any(m.label == "__name__" for m in matchers):
        raise CliError(f"{option} {text!r}: the metric name is chosen by each query, not here")
    return tuple(matchers)


def job_matcher(job: str) -> Matcher:
    """``job="NAME"``, the value quoted as PromQL reads it."""
    escaped = job.replace("\\", "\\\\").replace('"', '\\"')
    return Matcher("job", "=", f'"{escaped}"')


def window(seconds: float) -> str:
    """A range for ``[...]``: whole seconds, at least one."""
    return f"{max(1, math.ceil(seconds - 1e-9))}s"


@dataclass(frozen=True, slots=True)
class Query:
    """One instant query and the labels its result is split by."""

    name: str
    """What the figure is, as the fleet view names it (also printed by ``--show-queries``)."""
    promql: str
    by: tuple[str, ...]


class Queries:
    """Every query of one fleet view: the selector added to each metric, over one window."""

    def __init__(self, matchers: tuple[Matcher, ...], window_s: float) -> None:
        self.matchers = matchers
        self.window_s = window_s
        self.range = window(window_s)

    @property
    def selector(self) -> str:
        return "{" + ", ".join(str(m) for m in self.matchers) + "}"

    def _series(self, metric: str) -> str:
        return metric + (self.selector if self.matchers else "")

    def _sum(
        self, metric: str, *labels: str, op: str = "sum", inner: str = "", earlier: bool = False
    ) -> Query:
        by = (SPLIT, *labels)
        series = self._series(metric)
        if inner:
            series = f"{inner}({series}[{self.range}])"
        if earlier:
            series = f"{series} offset {self.range}"
        return Query("", f"{op} by ({', '.join(by)}) ({series})", by)

    def _named(self, name: str, query: Query) -> Query:
        return Query(name, query.promql, query.by)

    def up(self) -> Query:
        """Whether Prometheus could scrape each target the selector names, at its last try."""
        return Query("up", f"max by ({SPLIT}) ({self._series('up')})", (SPLIT,))

    def figures(self) -> tuple[Query, ...]:
        """The queries whose answers make each instance's snapshot."""
        ep = "endpoint"
        n = self._named
        return (
            n("processes", self._sum("concmon_processes")),
            n("active", self._sum("concmon_requests_active", ep)),
            n("peak", self._sum("concmon_requests_peak", ep)),
            n(
                "interval_peak",
                self._sum("concmon_requests_peak", ep, op="max", inner="max_over_time"),
            ),
            n("avg_active", self._sum("concmon_requests_active", ep, inner="avg_over_time")),
            n("finished", self._sum("concmon_requests_total", ep, "method", "status", "outcome")),
            n("finished_before", self._sum("concmon_requests_total", ep, earlier=True)),
            n("rejected", self._sum("concmon_requests_rejected_total", ep)),
            n("routing", self._sum("concmon_requests_routing")),
            n("limit", self._sum("concmon_requests_limit")),
            n("ws_active", self._sum("concmon_websocket_connections_active", ep)),
            n("ws_finished", self._sum("concmon_websocket_connections_total", ep, "outcome")),
            n(
                "ws_finished_before",
                self._sum("concmon_websocket_connections_total", ep, earlier=True),
            ),
            n("bg_active", self._sum("concmon_background_tasks_active", "task")),
            n("bg_finished", self._sum("concmon_background_tasks_total", "task", "outcome")),
            n(
                "bg_finished_before",
                self._sum("concmon_background_tasks_total", "task", earlier=True),
            ),
            n("queue_depth", self._sum("concmon_queue_depth", "queue")),
            n(
                "queue_peak",
                self._sum("concmon_queue_depth", "queue", op="max", inner="max_over_time"),
            ),
            n(
                "queue_waited",
                self._sum("concmon_queue_wait_seconds_count", "queue", inner="increase"),
            ),
            n(
                "queue_wait_s",
                self._sum("concmon_queue_wait_seconds_sum", "queue", inner="increase"),
            ),
            n("cpu_cores", self._sum("concmon_process_cpu_seconds_total", inner="rate")),
            n("memory_bytes", self._sum("concmon_process_resident_memory_bytes")),
            n("threads", self._sum("concmon_process_threads")),
            n("open_fds", self._sum("concmon_process_open_fds")),
            n("loop_lag_s", self._sum("concmon_event_loop_lag_seconds", op="max")),
            n("sink_errors", self._sum("concmon_sink_errors_total", "sink")),
            *self.histograms(),
        )

    def histograms(self) -> tuple[Query, ...]:
        """Each histogram's cumulative buckets (by ``le``) and sum, now and one window earlier.

        Raw series, no ``rate``: the counts are integers, so the window's are exact
        differences, as a reporter's interval is.
        """
        queries: list[Query] = []
        for prefix, distribution, metric, label in HISTOGRAMS:
            name = f"{prefix}{distribution}"
            for earlier, suffix in ((False, ""), (True, "_before")):
                queries += [
                    self._named(
                        f"{name}_buckets{suffix}",
                        self._sum(f"{metric}_bucket", label, "le", earlier=earlier),
                    ),
                    self._named(
                        f"{name}_sum{suffix}", self._sum(f"{metric}_sum", label, earlier=earlier)
                    ),
                ]
        return tuple(queries)

    def every(self) -> tuple[Query, ...]:
        """All the queries one refresh runs, in the order ``--show-queries`` prints them."""
        return (self.up(), *self.figures())
