"""Thresholds for alerting: the state of the latest report, as a monitoring plugin says it.

The exit codes and the status line follow the Nagios plugin convention that Icinga, Sensu,
Zabbix agents and most health checkers read: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, one line
``STATE - text | perfdata`` where perfdata is ``label=value[UOM];warn;crit;min;max`` items
separated by spaces, so graphers can plot each figure with its thresholds.

The failure rate is taken over the last interval (the difference between each worker's two
latest reports) when the source holds two reports per worker, and over the process lifetime
otherwise, so a burst of errors an hour ago does not keep an alert firing forever.

Little's law (``--warn-littles-law`` / ``--max-littles-law``, off unless asked) is checked on
each live worker's own report, whose interval is one span of time (see
:mod:`concmon.littles_law`); the figure is the worst endpoint's unexplained concurrency, in
requests, so 1 is about one request stuck for a whole interval.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Final, Literal

from concmon.host import HostView
from concmon.littles_law import LittleCheck, check_littles_law
from concmon.snapshot import Snapshot
from concmon_cli.errors import EXIT_CRITICAL, EXIT_OK, EXIT_UNKNOWN, EXIT_WARNING, CliError

State = Literal["OK", "WARNING", "CRITICAL", "UNKNOWN"]
EXIT_CODES: Final[dict[State, int]] = {
    "OK": EXIT_OK,
    "WARNING": EXIT_WARNING,
    "CRITICAL": EXIT_CRITICAL,
    "UNKNOWN": EXIT_UNKNOWN,
}


@dataclass(frozen=True)
class Threshold:
    """Above ``warn`` is a warning, above ``crit`` critical; ``None`` checks nothing."""

    warn: float | None = None
    crit: float | None = None

    def state(self, value: float | None) -> State:
        if value is None:
            return "OK"
        if self.crit is not None and value > self.crit:
            return "CRITICAL"
        if self.warn is not None and value > self.warn:
            return "WARNING"
        return "OK"

    def limit(self, state: State) -> float | None:
        return self.crit if state == "CRITICAL" else self.warn

    @property
    def checks(self) -> bool:
        return self.warn is not None or self.crit is not None


@dataclass(frozen=True)
class Limits:
    active: Threshold = Threshold()
    queue: Threshold = Threshold()
    failed_rate: Threshold = Threshold()
    loop_lag_ms: Threshold = Threshold()
    age_s: Threshold = Threshold()
    littles_law: Threshold = Threshold()


@dataclass(frozen=True)
class Finding:
    state: State
    text: str


@dataclass(frozen=True)
class Verdict:
    total: Snapshot
    failed_rate: float
    rate_scope: str
    age_s: float | None
    limits: Limits
    findings: tuple[Finding, ...]
    littles_law: tuple[int, LittleCheck] | None = None
    """The worst (pid, endpoint check) of the live workers, when Little's law is checked."""

    @property
    def state(self) -> State:
        states = {f.state for f in self.findings}
        for state in ("CRITICAL", "WARNING"):
            if state in states:
                return state
        return "OK"

    @property
    def ok(self) -> bool:
        return self.state == "OK"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.state]

    def with_finding(self, finding: Finding, *, first: bool = False) -> Verdict:
        findings = (finding, *self.findings) if first else (*self.findings, finding)
        return replace(self, findings=findings)

    def line(self) -> str:
        """One status line: ``STATE - what | perfdata``."""
        t = self.total
        state = self.state
        if state == "OK":
            lag = "-" if t.system.loop_lag_ms is None else f"{t.system.loop_lag_ms:.1f}ms"
            text = (
                f"active={t.active} queue={t.queue_depth} "
                f"failed_rate={self.failed_rate:.4f} ({self.rate_scope}) loop_lag={lag}"
            )
        else:
            text = "; ".join(
                f.text if f.state == state else f"{f.text} ({f.state.lower()})"
                for f in self.findings
            )
        if t.sink_errors:
            # A failing or stuck sink (one too late for its reports) shows here, so a check
            # reading the files the healthy sinks write still sees it.
            errors = ",".join(f"{name}:{count}" for name, count in sorted(t.sink_errors.items()))
            text += f" sink_errors={errors}"
        return f"{state} - {text} | {self.perfdata()}"

    def perfdata(self) -> str:
        t, lim = self.total, self.limits
        lag = t.system.loop_lag_ms
        items = [
            _perf("active", t.active, "", lim.active),
            _perf("queue", t.queue_depth, "", lim.queue),
            _perf("failed_rate", round(self.failed_rate, 4), "", lim.failed_rate, top=1),
            _perf("loop_lag", None if lag is None else round(lag, 1), "ms", lim.loop_lag_ms),
        ]
        if self.age_s is not None:
            items.append(_perf("age", round(self.age_s, 1), "s", lim.age_s))
        if lim.littles_law.checks:
            worst = self.littles_law
            value = None if worst is None else worst[1].unexplained
            items.append(_perf("littles_law", value, "", lim.littles_law))
        return " ".join(items)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _perf(
    label: str, value: float | None, uom: str, limit: Threshold, top: float | None = None
) -> str:
    """``label=value[UOM];warn;crit;min;max``, empty fields left off the end; ``U`` when the
    figure is unknown (no loop-lag probe)."""
    shown = "U" if value is None else f"{value:g}{uom}"
    fields = [shown, _number(limit.warn), _number(limit.crit), "0", _number(top)]
    return f"{label}=" + ";".join(fields).rstrip(";")


def failed_rate(workers: HostView) -> tuple[float, str]:
    """Failed over completed, over the last interval where two reports allow it.

    The interval is that of the live workers (a gone worker finished nothing in it); the
    lifetime rate is the host's, gone workers' totals included.
    """
    live = workers.live()
    pairs = [(s, workers.previous_of(s)) for s in live]
    if pairs and all(prev is not None for _, prev in pairs):
        failed = sum(s.failed - prev.failed for s, prev in pairs if prev is not None)
        done = sum(s.completed - prev.completed for s, prev in pairs if prev is not None)
        if failed >= 0 and done >= 0:  # a restarted worker resets its counters
            return (failed / done if done else 0.0), "last interval"
    total = _host(workers)
    return (total.failed / total.completed if total.completed else 0.0), "lifetime"


def worst_littles_law(workers: HostView) -> tuple[int, LittleCheck] | None:
    """The endpoint of a live worker furthest from Little's law, with the worker's pid; None
    when no report can be checked (no interval, or written before durations had buckets)."""
    checks = [(s.pid, c) for s in workers.live() for c in check_littles_law(s)]
    return max(checks, key=lambda pc: pc[1].unexplained, default=None)


def _host(workers: HostView) -> Snapshot:
    total = workers.total()
    if total is None:
        raise CliError("no complete concmon report to check")
    return total


def evaluate(workers: HostView, limits: Limits, age_s: float | None = None) -> Verdict:
    """Each figure against its thresholds; ``age_s`` is how old the latest report is."""
    total = _host(workers)
    rate, scope = failed_rate(workers)
    findings: list[Finding] = []

    def judge(
        threshold: Threshold, value: float | None, say: str, unit: str = "", note: str = ""
    ) -> None:
        state = threshold.state(value)
        if state != "OK":
            limit = _number(threshold.limit(state))
            findings.append(Finding(state, f"{say} > {limit}{unit}{note}"))

    judge(limits.active, total.active, f"active {total.active}")
    judge(limits.queue, total.queue_depth, f"queue {total.queue_depth}")
    judge(limits.failed_rate, rate, f"failed rate {rate:.4f}", note=f" ({scope})")
    lag = total.system.loop_lag_ms
    judge(limits.loop_lag_ms, lag, f"loop lag {lag or 0:.1f}ms", "ms")
    if age_s is not None:
        judge(limits.age_s, age_s, f"latest report is {age_s:.0f}s old", "s")
    worst = worst_littles_law(workers) if limits.littles_law.checks else None
    if worst is not None:
        pid, little = worst
        # A name may hold anything; as a JSON string it stays on the line, and "|" would end
        # the text where the perfdata begins.
        name = json.dumps(little.endpoint, ensure_ascii=True).replace("|", "\\u007c")
        judge(
            limits.littles_law,
            little.unexplained,
            f"Little's law: {name} (pid {pid}) has {little.unexplained:g} requests "
            f"of concurrency unexplained (mean {little.mean_active:g} active, "
            f"rate x mean duration {little.explained:.3g})",
        )
    return Verdict(total, rate, scope, age_s, limits, tuple(findings), worst)
