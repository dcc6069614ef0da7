"""The fleet: every replica of a service, read from the Prometheus server that scrapes them.

Each refresh runs the instant queries of :mod:`concmon_cli.promql` at one evaluation time and
turns the answers into one :class:`~concmon.snapshot.Snapshot` per ``instance``; the replicas
are then added up by the host rule of :mod:`concmon.host` (counters of every instance seen,
gauges of the live ones), so the table, ``check`` and ``export json`` read a fleet exactly as
they read the workers of one host. The latency histograms are read as raw bucket counts, now
and one window earlier, into the snapshots' lifetime and interval distributions, so the
table's percentiles are the same estimate from the buckets as for one host. Anything speaking
Prometheus's HTTP query API works (Prometheus, Thanos, Mimir, VictoriaMetrics).

An instance Prometheus can no longer scrape (``up`` is 0, its series marked stale) is shown as
stale with the figures last seen, and gone once it has been silent for the stale window; a
gone instance keeps its totals, as a gone worker does. Credentials come from the environment
only (``CONCMON_PROMETHEUS_TOKEN``, or ``CONCMON_PROMETHEUS_USER`` and
``CONCMON_PROMETHEUS_PASSWORD``) and TLS certificates are verified.
"""

from __future__ import annotations

import base64
import json
import math
import os
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

from concmon.host import STALE_INTERVALS, HostView
from concmon.snapshot import (
    DISTRIBUTIONS,
    Distribution,
    EndpointStats,
    QueueStats,
    Snapshot,
    SystemStats,
)
from concmon.system import MIB
from concmon_cli.errors import CliError
from concmon_cli.promql import HISTOGRAMS, Queries, Query
from concmon_cli.sources import Reading

TIMEOUT: Final = 10.0
TOKEN_VARIABLE: Final = "CONCMON_PROMETHEUS_TOKEN"
USER_VARIABLE: Final = "CONCMON_PROMETHEUS_USER"
PASSWORD_VARIABLE: Final = "CONCMON_PROMETHEUS_PASSWORD"
CA_VARIABLE: Final = "CONCMON_PROMETHEUS_CA"

Labels = tuple[str, ...]
Answer = dict[Labels, float]
"""The label values (in the query's ``by`` order) -> the value of that series."""


def authorization(environ: Mapping[str, str] | None = None) -> str | None:
    """The ``Authorization`` header the environment asks for, None for none; a one-line
    CliError when the variables contradict each other."""
    env = os.environ if environ is None else environ
    token = env.get(TOKEN_VARIABLE, "").strip()
    user = env.get(USER_VARIABLE, "")
    password = env.get(PASSWORD_VARIABLE, "")
    if token and (user or password):
        raise CliError(
            f"set either {TOKEN_VARIABLE} (bearer token) or {USER_VARIABLE} and "
            f"{PASSWORD_VARIABLE} (basic auth), not both"
        )
    if token:
        return f"Bearer {token}"
    if user or password:
        if not (user and password):
            missing = PASSWORD_VARIABLE if user else USER_VARIABLE
            raise CliError(
                f"basic auth needs {USER_VARIABLE} and {PASSWORD_VARIABLE}: {missing} is empty"
            )
        pair = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        return f"Basic {pair}"
    return None


class PrometheusClient:
    """Instant queries against ``/api/v1/query``, with the standard library's HTTP client."""

    def __init__(self, url: str, *, ca_file: str | None = None) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise CliError(f"--prometheus {url!r} is not an http:// or https:// URL")
        self.url = url.rstrip("/")
        self._auth = authorization()
        self._context: ssl.SSLContext | None = None
        if parsed.scheme == "https" or ca_file:
            try:
                self._context = ssl.create_default_context(cafile=ca_file or None)
            except (OSError, ssl.SSLError) as exc:
                raise CliError(f"cannot read the CA file {ca_file}: {exc}") from None

    def query(self, query: Query, at: float) -> Answer:
        """The vector ``query`` answers at ``at`` (Unix seconds), split by ``query.by``."""
        form = urllib.parse.urlencode({"query": query.promql, "time": f"{at:.3f}"})
        request = urllib.request.Request(
            f"{self.url}/api/v1/query",
            data=form.encode("ascii"),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        if self._auth is not None:
            request.add_header("Authorization", self._auth)
        data = self._answer(request, query)
        result = data.get("data", {}).get("result") if isinstance(data.get("data"), dict) else None
        if data.get("data", {}).get("resultType") != "vector" or not isinstance(result, list):
            raise CliError(f"{self.url} did not answer {query.name} with a vector")
        answer: Answer = {}
        for item in result:
            try:
                metric, value = item["metric"], float(item["value"][1])
                labels = tuple(str(metric.get(label, "")) for label in query.by)
            except (KeyError, IndexError, TypeError, ValueError):
                raise CliError(
                    f"{self.url} answered {query.name} with a malformed sample"
                ) from None
            if not math.isnan(value):  # a ratio or quantile of nothing: as no answer
                answer[labels] = value
        return answer

    def _answer(self, request: urllib.request.Request, query: Query) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT, context=self._context) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            body = exc.read()
            if exc.code in (401, 403):
                raise CliError(
                    f"Prometheus at {self.url} answered HTTP {exc.code}: set {TOKEN_VARIABLE}, "
                    f"or {USER_VARIABLE} and {PASSWORD_VARIABLE}, to credentials it accepts"
                ) from None
            error = _error_of(body)
            if error is not None:
                raise CliError(
                    f"Prometheus at {self.url} rejected the query for {query.name}: {error}"
                ) from None
            raise CliError(
                f"Prometheus at {self.url} answered HTTP {exc.code} to a query"
            ) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ssl.SSLCertVerificationError):
                why = (
                    f"its TLS certificate is not trusted ({reason.verify_message}); "
                    "give its CA with --prometheus-ca"
                )
            else:
                why = str(getattr(reason, "strerror", None) or reason)
            raise CliError(f"cannot reach Prometheus at {self.url}: {why}") from None
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot reach Prometheus at {self.url}: {exc}") from None
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict) or "status" not in data:
            raise CliError(f"{self.url} does not answer Prometheus's query API (/api/v1/query)")
        if data["status"] != "success":
            raise CliError(
                f"Prometheus at {self.url} rejected the query for {query.name}: {_error_of(body)}"
            )
        return data


def _error_of(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict) and "error" in data:
        return f"{data.get('errorType', 'error')}: {data['error']}"
    return None


@dataclass(frozen=True)
class FleetScan:
    """One refresh: a snapshot per instance with concmon series, and who is stale."""

    at: float
    instances: dict[str, Snapshot]
    stale: frozenset[str]
    """Instances Prometheus scrapes but could not at its last try (``up`` is 0)."""


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def _count(value: float | None) -> int:
    return 0 if value is None else max(round(value), 0)


def _by_instance(answers: Mapping[str, Answer]) -> dict[str, dict[str, Answer]]:
    """instance -> query name -> the series of that instance (labels kept as answered)."""
    split: dict[str, dict[str, Answer]] = {}
    for name, answer in answers.items():
        for labels, value in answer.items():
            split.setdefault(labels[0], {}).setdefault(name, {})[labels] = value
    return split


def _outcomes(finished: Answer) -> dict[str, dict[str, int]]:
    """name -> outcome -> count (the last label is the outcome; any between are summed)."""
    out: dict[str, dict[str, int]] = {}
    for labels, value in finished.items():
        by = out.setdefault(labels[1], {})
        by[labels[-1]] = by.get(labels[-1], 0) + _count(value)
    return out


def _responses(finished: Answer) -> dict[str, dict[str, int]]:
    """name -> ``"GET 2xx ok"`` -> count, from the series with method and status labels.

    Requests lost in a dead worker are in no response (as in a worker's snapshot); without
    the labels (switched off in the exporter) nothing is known.
    """
    out: dict[str, dict[str, int]] = {}
    for (_, name, method, status, outcome), value in finished.items():
        count = _count(value)
        if method and status and outcome != "lost" and count:
            key = f"{method} {status} {outcome}"
            by = out.setdefault(name, {})
            by[key] = by.get(key, 0) + count
    return out


def _named(answer: Answer) -> dict[str, float]:
    return {labels[1]: value for labels, value in answer.items()}


def _histogram(buckets: Answer, sums: Answer) -> dict[str, Distribution]:
    """name -> the distribution its cumulative ``le`` buckets and its sum give (exact counts;
    the maximum is not exported, so it is unknown)."""
    totals = _named(sums)
    cumulative: dict[str, dict[float, float]] = {}
    for (_, name, le), value in buckets.items():
        try:
            bound = float(le)  # "+Inf" too
        except ValueError:
            continue
        cumulative.setdefault(name, {})[bound] = value
    found: dict[str, Distribution] = {}
    for name, by_bound in cumulative.items():
        bounds = tuple(sorted(b for b in by_bound if math.isfinite(b) and b > 0))
        counts: list[int] = []
        below = 0
        for bound in (*bounds, math.inf):
            upto = max(_count(by_bound.get(bound, below)), below)
            counts.append(upto - below)
            below = upto
        found[name] = Distribution(bounds, tuple(counts), max(totals.get(name, 0.0), 0.0), None)
    return found


def _distributions(
    a: Mapping[str, Answer], prefix: str
) -> dict[str, dict[str, Distribution | None]]:
    """field of :class:`EndpointStats` -> name -> distribution, for one section: the lifetime
    ones as read now, the interval's as their difference with the reading one window ago."""
    fields: dict[str, dict[str, Distribution | None]] = {}
    for section, distribution, _metric, _label in HISTOGRAMS:
        if section != prefix:
            continue
        key = f"{prefix}{distribution}"
        now = _histogram(a.get(f"{key}_buckets", {}), a.get(f"{key}_sum", {}))
        then = _histogram(a.get(f"{key}_buckets_before", {}), a.get(f"{key}_sum_before", {}))
        fields[f"{distribution}_all"] = dict(now)
        fields[distribution] = {
            name: d if name not in then else d.minus(then[name]) for name, d in now.items()
        }
    return fields


def _section(a: Mapping[str, Answer], prefix: str, window_s: float) -> dict[str, EndpointStats]:
    """One section (``""`` endpoints, ``ws_``, ``bg_``) of one instance's answers."""
    actives = _named(a.get(f"{prefix}active", {}))
    finished = a.get(f"{prefix}finished", {})
    outcomes = _outcomes(finished)
    before = {name: _count(v) for name, v in _named(a.get(f"{prefix}finished_before", {})).items()}
    http = not prefix
    responses = _responses(finished) if http else {}
    peaks = _named(a.get("peak", {})) if http else {}
    interval = _named(a.get("interval_peak", {})) if http else {}
    averages = _named(a.get("avg_active", {})) if http else {}
    rejections = _named(a.get("rejected", {})) if http else {}
    distributions = _distributions(a, prefix)
    names = sorted(set(actives) | set(outcomes) | set(rejections))
    section: dict[str, EndpointStats] = {}
    for name in names:
        now = _count(actives.get(name))
        by = outcomes.get(name, {})
        completed = sum(by.values())
        # Prometheus keeps no lifetime peak: the peak gauge and the window's highest stand in.
        high = max(now, _count(peaks.get(name)), _count(interval.get(name)))
        found: dict[str, Any] = {
            field: by_name.get(name) for field, by_name in distributions.items()
        }
        duration: Distribution | None = found.get("duration")
        mean_s = None if duration is None else duration.mean_s
        section[name] = EndpointStats(
            active=now,
            peak=high,
            interval_peak=high,
            avg_active=round(averages.get(name, float(now)), 3),
            total=completed + now,
            completed=completed,
            failed=by.get("failed", 0),
            cancelled=by.get("cancelled", 0),
            rejected=_count(rejections.get(name)),
            avg_ms=_ms(mean_s),
            lost=by.get("lost", 0),
            # A counter reset inside the window counts as nothing, as the buckets do.
            rate=round(max(completed - before.get(name, 0), 0) / window_s, 3),
            responses=responses.get(name, {}),
            **found,
        )
    return section


def _one(answer: Answer | None) -> float | None:
    return None if not answer else next(iter(answer.values()))


def _bounds(*sections: Mapping[str, EndpointStats]) -> tuple[float, ...]:
    """The bucket bounds of the first distribution found (a monitor's are all the same)."""
    for section in sections:
        for stats in section.values():
            for name in DISTRIBUTIONS:
                found = stats.distribution(name, lifetime=True)
                if found is not None and found.bounds:
                    return found.bounds
    return ()


def instance_snapshot(
    instance: str, a: Mapping[str, Answer], at: float, window_s: float
) -> Snapshot:
    """The snapshot of one instance from its answers to one refresh (see :class:`Queries`;
    a scan splits the answers by instance first)."""
    endpoints = _section(a, "", window_s)
    websockets = _section(a, "ws_", window_s)
    background = _section(a, "bg_", window_s)
    depth, peaks = _named(a.get("queue_depth", {})), _named(a.get("queue_peak", {}))
    waited, wait_s = _named(a.get("queue_waited", {})), _named(a.get("queue_wait_s", {}))
    queues: dict[str, QueueStats] = {}
    for name in sorted(set(depth) | set(waited)):
        count = _count(waited.get(name))
        seconds = wait_s.get(name)
        queues[name] = QueueStats(
            depth=_count(depth.get(name)),
            peak=max(_count(depth.get(name)), _count(peaks.get(name))),
            waited=count,
            wait_avg_ms=_ms(seconds / count) if count and seconds is not None else None,
        )
    active = sum(e.active for e in endpoints.values())
    completed = sum(e.completed for e in endpoints.values())
    limit = _one(a.get("limit"))
    cpu = _one(a.get("cpu_cores"))
    memory = _one(a.get("memory_bytes"))
    threads, fds = _one(a.get("threads")), _one(a.get("open_fds"))
    lag = _one(a.get("loop_lag_s"))
    return Snapshot(
        timestamp=datetime.fromtimestamp(at, UTC).isoformat(),
        pid=0,
        host=instance,
        uptime_s=0.0,
        interval_s=window_s,
        active=active,
        peak=sum(e.peak for e in endpoints.values()),
        interval_peak=sum(e.interval_peak for e in endpoints.values()),
        avg_active=round(sum(e.avg_active for e in endpoints.values()), 3),
        total=completed + active,
        completed=completed,
        failed=sum(e.failed for e in endpoints.values()),
        cancelled=sum(e.cancelled for e in endpoints.values()),
        rejected=sum(e.rejected for e in endpoints.values()),
        queue_depth=sum(q.depth for q in queues.values()),
        queue_peak=sum(q.peak for q in queues.values()),
        routing=_count(_one(a.get("routing"))),
        saturation=round(active / limit, 4) if limit else None,
        endpoints=endpoints,
        websockets=websockets,
        background=background,
        queues=queues,
        system=SystemStats(
            cpu_percent=None if cpu is None else round(cpu * 100.0, 1),
            memory_mb=None if memory is None else round(memory / MIB, 1),
            threads=None if threads is None else _count(threads),
            open_fds=None if fds is None else _count(fds),
            loop_lag_ms=_ms(lag),
        ),
        sink_errors={name: _count(v) for name, v in _named(a.get("sink_errors", {})).items()},
        lost=sum(e.lost for e in endpoints.values()),
        rate=round(sum(e.rate for e in endpoints.values()), 3),
        buckets_s=_bounds(endpoints, websockets, background),
    )


class FleetSource:
    """The replicas a selector names on one Prometheus server, as a source of the CLI."""

    def __init__(
        self,
        client: PrometheusClient,
        queries: Queries,
        stale_intervals: float = STALE_INTERVALS,
    ) -> None:
        self.client = client
        self.queries = queries
        self.stale_intervals = stale_intervals
        self.stale: frozenset[str] = frozenset()
        self.label = (
            f"prometheus {client.url} {queries.selector if queries.matchers else '(every job)'}"
        )

    def scan(self, at: float | None = None) -> FleetScan:
        """Every query at one evaluation time; a CliError when nothing there is concmon's."""
        at = time.time() if at is None else at
        up = self.client.query(self.queries.up(), at)
        answers = {q.name: self.client.query(q, at) for q in self.queries.figures()}
        present = {labels[0] for labels in answers["processes"]}
        stale = frozenset(labels[0] for labels, value in up.items() if value < 1)
        if not present and not stale:
            where = self.queries.selector if self.queries.matchers else "any job"
            raise CliError(
                f"Prometheus at {self.client.url} has no concmon series for {where} "
                "(is it scraping the apps' /metrics? see docs/fleet.md)"
            )
        window_s = self.queries.window_s
        split = _by_instance(answers)
        instances = {
            name: instance_snapshot(name, split.get(name, {}), at, window_s)
            for name in sorted(present - stale)
        }
        return FleetScan(at, instances, stale)

    def latest(self, *, previous: bool = False) -> Reading:
        """The fleet now; with ``previous``, each instance's figures one window ago as well,
        so rates over the last window can be taken (``check``)."""
        scan = self.scan()
        if not scan.instances:
            raise CliError(
                f"every concmon instance on Prometheus at {self.client.url} is stale: "
                + ", ".join(sorted(scan.stale))
            )
        workers = HostView(None)
        if previous:
            try:
                before = self.scan(scan.at - self.queries.window_s)
            except CliError:
                before = None  # nothing a window ago: the rates are the lifetime's
            if before is not None:
                workers.extend(before.instances.values())
        workers.extend(scan.instances.values())
        self.stale = scan.stale
        return Reading(self.label, workers, 0)

    def stale_note(self) -> str | None:
        """What the footer says of the instances Prometheus could not scrape, if any."""
        if not self.stale:
            return None
        return "stale (Prometheus cannot scrape them): " + ", ".join(sorted(self.stale))

    def stream(self, *, initial: bool) -> FleetStream:
        return FleetStream(self)


class FleetStream:
    """One scan per poll; an instance that stops being scraped is stale, then gone.

    The stream's :class:`HostView` takes each scan's snapshots in: an instance without a fresh
    one keeps its last (marked stale) until it has been silent for ``stale_intervals`` windows,
    then it is gone, its totals kept and its requests in flight counted as lost.
    """

    def __init__(self, source: FleetSource) -> None:
        self.source = source
        self.skipped = 0
        self.status: str | None = None
        self.stale: frozenset[str] = frozenset()
        self._seen: set[str] = set()

    def poll(self) -> list[Snapshot]:
        try:
            scan = self.source.scan()
        except CliError as exc:
            self.status = str(exc)
            return []
        self._seen |= set(scan.instances)
        self.stale = frozenset((self._seen - set(scan.instances)) | (scan.stale & self._seen))
        self.status = None
        return list(scan.instances.values())

    def update(self, workers: HostView) -> HostView:
        if workers.stale_intervals != self.source.stale_intervals:
            workers.stale_intervals = self.source.stale_intervals
        workers.extend(self.poll())
        live = {s.host for s in workers.live()}
        self.stale = self.stale & live
        return workers

    def close(self) -> None:
        pass


def marked(snapshot: Snapshot, stale: frozenset[str]) -> Snapshot:
    """``snapshot`` with ``(stale)`` after its instance name when it is stale."""
    if snapshot.host in stale:
        return replace(snapshot, host=f"{snapshot.host} (stale)")
    return snapshot
