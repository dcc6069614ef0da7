"""DogStatsD exporter: each report pushed to a Datadog agent over UDP.

StatsD is push-based, so this sink sends what each report closes: gauges for what is happening
now (active requests, the interval peak, queue depth, process figures) and counts for what
finished during the interval (requests by outcome, rejections, queue waits). Counts are sent as
the increase since the previous report, which is what a StatsD count means. The metrics are
those of :mod:`concmon.exporters.catalogue` that have a DogStatsD name.

Each distribution (request duration, time to first byte, ...) goes out as a DogStatsD
``distribution``: what the interval added to each bucket as one stand-in value inside that
bucket, sent with the sample rate ``1/count`` so that the agent weighs it as ``count`` values.
The stand-ins add up to the true sum, so the agent's count and sum are exact; its percentiles
come from values known only to their bucket (the value's position inside a bucket is not kept),
and the agent keeps the weight only as far as ``1/rate`` reads back as the count.

Several workers of one host send the same gauge names; the agent keeps only the last value of
a gauge per tag set and flush interval, so gauges carry a ``pid`` tag (sum over it for the host)
while counts, which the agent adds up, do not.

An agent that is down or an address that does not resolve loses metrics, never requests: the
datadog client drops the packets and this sink logs one line about it at most once a minute.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time

from datadog.dogstatsd.base import DogStatsd

from concmon.exporters.catalogue import HISTOGRAMS, METRICS, added_since, stand_ins
from concmon.exporters.config import ExporterSettings, load_exporter_settings
from concmon.hookspecs import hookimpl
from concmon.host import Figures, ProcessReports
from concmon.settings import ConfigError
from concmon.snapshot import Distribution, Snapshot

logger = logging.getLogger("concmon")

ERROR_LOG_INTERVAL = 60.0
"""Seconds between two messages about an unreachable agent."""

_sending = threading.local()


class _DropFilter(logging.Filter):
    """Turns the datadog client's per-packet warnings, while this sink sends, into a tally."""

    def filter(self, record: logging.LogRecord) -> bool:
        errors: list[str] | None = getattr(_sending, "errors", None)
        if errors is not None and record.levelno >= logging.WARNING:
            errors.append(record.getMessage())
            return False
        return True


_filter = _DropFilter()
logging.getLogger("datadog.dogstatsd").addFilter(_filter)


@functools.lru_cache(maxsize=4096)
def _tag(label: str, value: str) -> str:
    # DogStatsD separates tags with commas and fields with '|'; neither may appear in a tag.
    # Cached: label values (endpoints, queues) are few and recur in every report.
    return f"{label}:" + value.replace(",", "_").replace("|", "_").replace("\n", " ")


class DogStatsDSink:
    """The ``dogstatsd`` sink: gauges and counts with endpoint tags, sent on every report."""

    name = "dogstatsd"

    def __init__(self, settings: ExporterSettings | None = None) -> None:
        self._settings = settings
        self.client: DogStatsd | None = None
        self.address: tuple[str, int] | None = None
        self._previous: dict[tuple[str, tuple[str, ...]], float] = {}
        self._sent: dict[tuple[str, tuple[str, ...]], Distribution] = {}
        self._labels_off: frozenset[str] = frozenset()
        self._reports: ProcessReports | None = None
        self._last_error_log: float | None = None
        self._lock = threading.Lock()
        self.dropped_reports = 0

    @hookimpl
    def concmon_configure(self) -> None:
        try:
            config = self._settings or load_exporter_settings()
        except ConfigError as exc:
            logger.error("%s; the dogstatsd sink stays off, counting goes on", exc)
            return
        self.address = (config.statsd_host, config.statsd_port)
        self._labels_off = config.labels_off
        try:
            socket.getaddrinfo(config.statsd_host, config.statsd_port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            self._complain(f"the address does not resolve ({exc.strerror or exc})")
        self.client = DogStatsd(
            host=config.statsd_host,
            port=config.statsd_port,
            namespace=config.statsd_namespace,
            constant_tags=list(config.statsd_tags),
            disable_telemetry=True,
            origin_detection_enabled=False,
        )

    def _complain(self, problem: str) -> None:
        now = time.monotonic()
        if self._last_error_log is not None and now - self._last_error_log < ERROR_LOG_INTERVAL:
            return
        self._last_error_log = now
        host, port = self.address or ("?", 0)
        logger.error(
            "concmon: DogStatsD agent at %s:%d is unreachable: %s (CONCMON_STATSD_HOST / "
            "CONCMON_STATSD_PORT); metrics are dropped, requests are served and counted",
            host,
            port,
            problem,
        )

    def _count(self, client: DogStatsd, metric: str, value: float, tags: list[str]) -> None:
        key = (metric, tuple(tags))
        previous = self._previous.get(key, 0)
        # A smaller value means the counters restarted (a reset or a new process): all of it
        # is new.
        delta = value - previous if value >= previous else value
        self._previous[key] = value
        if delta > 0:
            client.increment(metric, delta, tags=tags)

    def _distribution(
        self, client: DogStatsd, metric: str, now: Distribution, tags: list[str]
    ) -> None:
        key = (metric, tuple(tags))
        added = added_since(now, self._sent.get(key))
        self._sent[key] = now
        for value, n in stand_ins(added):
            # The client drops a sampled packet at random; this one stands for n values and
            # must always go: sent unsampled, with the rate that tells the agent its weight.
            client._report(metric, "d", value, tags, 1.0 / n, sampling=False)

    def send(self, snapshot: Snapshot) -> None:
        """Send one report's metrics in as few datagrams as fit."""
        client = self.client
        if client is None:
            return
        pid = f"pid:{os.getpid()}"
        errors: list[str] = []
        with self._lock:
            _sending.errors = errors
            try:
                client.open_buffer()
                try:
                    self._send(client, snapshot, pid)
                finally:
                    client.close_buffer()
            finally:
                _sending.errors = None
        if errors:
            self.dropped_reports += 1
            self._complain(errors[-1].removeprefix("Error submitting packet: "))

    def _figures(self, snapshot: Snapshot) -> Figures:
        """The report's figures, with queue waits added up over the reports sent so far."""
        reports = self._reports
        if reports is not None and snapshot is reports.latest:
            return reports.figures()
        same_process = reports is not None and reports.latest.pid == snapshot.pid
        if reports is not None and same_process and reports.step(snapshot) == "later":
            reports.add(snapshot)
        else:
            reports = self._reports = ProcessReports(snapshot)  # a new process, or a new series
        return reports.figures()

    def _send(self, client: DogStatsd, snapshot: Snapshot, pid: str) -> None:
        figures = self._figures(snapshot)
        for metric in METRICS:
            if metric.statsd is None:
                continue
            labels, values = metric.series(figures, self._labels_off)
            for key, value in values.items():
                tags = [_tag(label, v) for label, v in zip(labels, key, strict=True)]
                if metric.kind == "gauge":
                    client.gauge(metric.statsd, value, tags=[*tags, pid])
                else:
                    self._count(client, metric.statsd, value, tags)
        for histogram in HISTOGRAMS:
            if histogram.statsd is None:
                continue
            for key, distribution in histogram.read(figures).items():
                tags = [_tag(label, v) for label, v in zip(histogram.labels, key, strict=True)]
                self._distribution(client, histogram.statsd, distribution, tags)

    @hookimpl
    def concmon_report(self, snapshot: Snapshot) -> None:
        self.send(snapshot)

    @hookimpl
    def concmon_shutdown(self, snapshot: Snapshot) -> None:
        try:
            self.send(snapshot)
        finally:
            client, self.client = self.client, None
            if client is not None:
                client.close_socket()
