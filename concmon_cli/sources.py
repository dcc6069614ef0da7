"""Where reports come from: the tagged log file, the JSON-lines file, or a live URL.

Files are parsed only through the core's own readers (:class:`concmon.logformat.ReportAssembler`
for the log, :meth:`concmon.snapshot.Snapshot.from_dict` for JSON lines), so the CLI can never
disagree with the writers. Unreadable lines are skipped and counted, never fatal.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Final, Literal, Protocol

from concmon.host import STALE_INTERVALS, HostView
from concmon.logformat import ReportAssembler
from concmon.snapshot import WORKERS_SCHEMA, WORKERS_SUFFIX, Snapshot, SnapshotFormatError
from concmon_cli.durations import parse_timestamp
from concmon_cli.errors import CliError
from concmon_cli.extras import require
from concmon_cli.tail import Follower, reverse_lines
from concmon_cli.wording import counted

Kind = Literal["auto", "log", "jsonl"]
DEFAULT_SOURCE: Final = "logs/concmon.log"
"""Where the app's ``logfile`` sink writes unless ``CONCMON_LOG_FILE`` says otherwise: relative
to the directory the app runs in, so ``concmon-cli watch`` started there finds it."""
SCAN_LIMIT: Final = 32 * 1024 * 1024
"""Bytes of unreadable lines read back past the last report found before giving up."""
URL_TIMEOUT: Final = 5.0


class Decoder(Protocol):
    @property
    def skipped(self) -> int: ...

    def feed(self, line: bytes) -> Snapshot | None: ...


class LogDecoder:
    """Tagged log lines to snapshots, through the core's own assembler."""

    def __init__(self) -> None:
        self._assembler = ReportAssembler()

    @property
    def skipped(self) -> int:
        return self._assembler.skipped

    def feed(self, line: bytes) -> Snapshot | None:
        return self._assembler.feed(line)


class JsonLinesDecoder:
    """One ``concmon.snapshot/2`` (or older ``/1``) object per line; anything else is counted
    as skipped."""

    def __init__(self) -> None:
        self.skipped = 0

    def feed(self, line: bytes) -> Snapshot | None:
        if not line.strip():
            return None
        try:
            snapshot = Snapshot.from_dict(json.loads(line))
            parse_timestamp(snapshot.timestamp)
        except (ValueError, SnapshotFormatError, RecursionError):
            self.skipped += 1
            return None
        return snapshot


@dataclass(frozen=True)
class Reading:
    """What one look at a source found."""

    label: str
    workers: HostView
    skipped: int

    @property
    def live(self) -> list[Snapshot]:
        return self.workers.live()

    @property
    def total(self) -> Snapshot:
        """The host: the live workers' gauges and every worker's counters (concmon.host)."""
        total = self.workers.total()
        if total is None:
            raise CliError(f"no complete concmon report in {self.label}")
        return total


class Source(Protocol):
    label: str

    def latest(self) -> Reading: ...

    def stream(self, *, initial: bool) -> Stream: ...


class Stream(Protocol):
    status: str | None

    @property
    def skipped(self) -> int: ...

    def poll(self) -> list[Snapshot]: ...

    def update(self, workers: HostView) -> HostView: ...

    def close(self) -> None: ...


def _sniff(path: Path) -> Literal["log", "jsonl"]:
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    try:
        with path.open("rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            for n, line in enumerate(reverse_lines(handle, end)):
                stripped = line.strip()
                if stripped.startswith(b"{"):
                    return "jsonl"
                if b" pid=" in stripped or n > 20:
                    break
    except OSError:
        pass
    return "log"


class FileSource:
    """A report file written by the ``logfile`` or the ``jsonl`` sink (and its ``.1`` backup)."""

    def __init__(
        self, path: Path, kind: Kind = "auto", stale_intervals: float = STALE_INTERVALS
    ) -> None:
        self.path = path
        self.label = str(path)
        self._kind = kind
        self.stale_intervals = stale_intervals

    @property
    def kind(self) -> Literal["log", "jsonl"]:
        if self._kind == "auto":
            self._kind = _sniff(self.path)
        return self._kind

    def decoder(self) -> Decoder:
        return JsonLinesDecoder() if self.kind == "jsonl" else LogDecoder()

    def check_readable(self, *, missing_ok: bool = False) -> None:
        """Raise a one-line CliError when the path cannot be a report file."""
        path = self.path
        if path.is_dir():
            raise CliError(f"{path} is a directory, not a report file")
        if not path.exists():
            if missing_ok:
                return
            raise CliError(
                f"{path} does not exist (is the logfile or jsonl sink writing there? "
                "see CONCMON_LOG_FILE / CONCMON_JSONL_FILE)"
            )
        if not os.access(path, os.R_OK):
            raise CliError(f"cannot read {path}: permission denied")

    def _open(self) -> tuple[BinaryIO, int]:
        self.check_readable()
        try:
            handle = self.path.open("rb")
        except OSError as exc:
            raise CliError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        return handle, handle.seek(0, os.SEEK_END)

    def _backup(self) -> Path:
        return self.path.with_name(self.path.name + ".1")

    def recent_reports(self, handle: BinaryIO, end: int, decoder: Decoder) -> list[Snapshot]:
        """The reports near the end of the file, oldest first, read back only as far as needed.

        Reading stops once a report is older than the newest one by more than the stale
        window plus one interval: anything before that belongs to workers that are gone, and
        the report before each live worker's latest (for rates over the last interval) has
        been seen. When the file starts inside that window, its rotated ``.1`` is read too.
        """
        found: list[Snapshot] = []
        newest: datetime | None = None
        window = 0.0
        consumed = consumed_at_last = 0
        done = False
        sources: list[tuple[BinaryIO, int]] = [(handle, end)]
        opened: list[BinaryIO] = []
        try:
            while sources and not done:
                current, current_end = sources.pop(0)
                for line in reverse_lines(current, current_end):
                    consumed += len(line) + 1
                    snapshot = decoder.feed(line)
                    if snapshot is None:
                        if consumed - consumed_at_last > SCAN_LIMIT:
                            done = True  # nothing but unreadable lines for a long way back
                            break
                        continue
                    consumed_at_last = consumed
                    when = parse_timestamp(snapshot.timestamp)
                    if newest is None:
                        newest = when
                    window = max(window, (self.stale_intervals + 1) * snapshot.interval_s)
                    if when < newest - timedelta(seconds=window):
                        done = True
                        break
                    found.append(snapshot)
                if not done and current is handle:
                    backup = self._backup()
                    try:
                        extra: BinaryIO = backup.open("rb")
                    except OSError:
                        continue
                    opened.append(extra)
                    sources.append((extra, extra.seek(0, os.SEEK_END)))
        finally:
            for extra in opened:
                extra.close()
        found.reverse()
        return found

    def recent(self) -> tuple[list[Snapshot], int]:
        """The last reports of every live worker, oldest first, and the lines skipped."""
        handle, end = self._open()
        with handle:
            if end == 0:
                raise CliError(f"{self.path} is empty: no report has been written yet")
            decoder = self.decoder()
            found = self.recent_reports(handle, end, decoder)
        if not found:
            skipped = (
                f" ({counted(decoder.skipped, 'unreadable line')} skipped)"
                if decoder.skipped
                else ""
            )
            raise CliError(f"no complete concmon report in {self.path}{skipped}")
        return found, decoder.skipped

    def latest(self) -> Reading:
        found, skipped = self.recent()
        workers = HostView(self.stale_intervals)
        workers.extend(found)
        return Reading(self.label, workers, skipped)

    def reports(self) -> tuple[Iterator[Snapshot], Decoder]:
        """Every report of the file from its start (for ``history`` and ``export --since``)."""
        handle, end = self._open()
        decoder = self.decoder()

        def generate() -> Iterator[Snapshot]:
            with handle:
                offset = 0
                handle.seek(0)
                while offset < end:
                    line = handle.readline(end - offset)
                    offset += len(line)
                    if not line.endswith(b"\n"):
                        break
                    snapshot = decoder.feed(line.rstrip(b"\n"))
                    if snapshot is not None:
                        yield snapshot

        return generate(), decoder

    def reports_since(self, since: datetime) -> tuple[list[Snapshot], int]:
        """Reports newer than ``since``, oldest first, reading back from the end only."""
        handle, end = self._open()
        decoder = self.decoder()
        found: list[Snapshot] = []
        with handle:
            for line in reverse_lines(handle, end):
                snapshot = decoder.feed(line)
                if snapshot is None:
                    continue
                # Workers append in time order, give or take one interval between processes.
                when = parse_timestamp(snapshot.timestamp)
                if when < since - timedelta(seconds=snapshot.interval_s):
                    break
                if when >= since:
                    found.append(snapshot)
        found.sort(key=lambda s: parse_timestamp(s.timestamp))
        return found, decoder.skipped

    def stream(self, *, initial: bool) -> FileStream:
        self.check_readable(missing_ok=True)
        return FileStream(self, initial=initial)


class FileStream:
    """New reports of a file as they are appended; waits for a file that does not exist yet."""

    def __init__(self, source: FileSource, *, initial: bool) -> None:
        self.source = source
        self._follower = Follower(source.path, from_end=True)
        self._initial = initial
        self._decoder: Decoder | None = None
        self._back_skipped = 0
        self.status: str | None = None

    @property
    def skipped(self) -> int:
        live = self._decoder.skipped if self._decoder is not None else 0
        return self._back_skipped + live

    def update(self, workers: HostView) -> HostView:
        """``workers`` with the reports appended since the last poll."""
        workers.extend(self.poll())
        return workers

    def poll(self) -> list[Snapshot]:
        path = self.source.path
        if self._decoder is None:
            if path.is_dir():
                raise CliError(f"{path} is a directory, not a report file")
            opened = self._follower.open()
            if opened is None:
                self.status = waiting_message(path)
                return []
            self._decoder = self.source.decoder()
            snapshots: list[Snapshot] = []
            handle, end = opened
            if self._initial and end > 0:
                back = self.source.decoder()
                # Every recent report, not only the live workers' latest: the watcher's host
                # view then knows the workers gone meanwhile and keeps their totals.
                snapshots = self.source.recent_reports(handle, end, back)
                self._back_skipped = back.skipped
            self.status = None
            return snapshots + self._feed(self._follower.poll())
        return self._feed(self._follower.poll())

    def _feed(self, lines: list[bytes]) -> list[Snapshot]:
        assert self._decoder is not None
        out = []
        for line in lines:
            snapshot = self._decoder.feed(line)
            if snapshot is not None:
                out.append(snapshot)
        return out

    def close(self) -> None:
        self._follower.close()


class UrlSource:
    """The live ``/concurrency`` endpoint of a running app (one worker answers per request)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.label = url

    def _get(self, url: str) -> Any:
        require("reading a URL", "cli", "httpx")
        import httpx

        try:
            response = httpx.get(url, timeout=URL_TIMEOUT)
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise CliError(f"cannot reach {url}: {reason}") from None
        if response.status_code == 404 and url != self.url:
            return None  # a server without the per-worker answer
        if response.status_code != 200:
            raise CliError(f"{url} answered HTTP {response.status_code}, not a snapshot")
        try:
            data = response.json()
        except ValueError as exc:
            raise CliError(f"{url} did not return a concmon snapshot: {exc}") from None
        if isinstance(data, dict) and data.get("enabled") is False:
            raise CliError(f"{self.url}: monitoring is switched off in that application")
        return data

    def fetch(self) -> Snapshot:
        """The snapshot of whichever worker answered the URL."""
        try:
            return Snapshot.from_dict(self._get(self.url))
        except ValueError as exc:
            raise CliError(f"{self.url} did not return a concmon snapshot: {exc}") from None

    def host(self) -> HostView | None:
        """Every worker of the host from one answer (``<url>/workers``), None from a server
        that has no such answer."""
        url = self.url.rstrip("/") + WORKERS_SUFFIX
        data = self._get(url)
        if data is None:
            return None
        try:
            if data.get("schema") != WORKERS_SCHEMA:
                raise ValueError(f"schema {data.get('schema')!r}")
            live = [Snapshot.from_dict(item) for item in data["workers"]]
            finished = [Snapshot.from_dict(item) for item in data["finished"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CliError(f"{url} did not return concmon's per-worker answer: {exc}") from None
        workers = HostView(None)  # the answer says who is live: nothing is taken for gone
        workers.extend(live)
        for snapshot in finished:
            workers.add_finished(snapshot)
        return workers

    def latest(self) -> Reading:
        workers = self.host()
        if workers is None:
            workers = HostView()
            workers.add(self.fetch())
        return Reading(self.label, workers, 0)

    def stream(self, *, initial: bool) -> UrlStream:
        return UrlStream(self)


class UrlStream:
    """Polls the URL; an unreachable server is a status to show, not an error to stop on."""

    def __init__(self, source: UrlSource) -> None:
        self.source = source
        self.skipped = 0
        self.status: str | None = None
        self._whole: bool | None = None  # whether the server answers every worker at once

    def poll(self) -> list[Snapshot]:
        try:
            snapshot = self.source.fetch()
        except CliError as exc:
            self.status = str(exc)
            return []
        self.status = None
        return [snapshot]

    def update(self, workers: HostView) -> HostView:
        """The host after one poll: the whole host from the per-worker answer when the server
        has one (every redraw shows every worker), else ``workers`` with the worker that
        answered added."""
        if self._whole is not False:
            try:
                host = self.source.host()
            except CliError as exc:
                self.status = str(exc)
                return workers
            self._whole = host is not None
            if host is not None:
                self.status = None
                return host
        workers.extend(self.poll())
        return workers

    def close(self) -> None:
        pass


def waiting_message(path: Path) -> str:
    """What a reader says while the file it follows does not exist yet: which file (and where,
    for a relative path), and how to point it elsewhere."""
    where = "" if path.is_absolute() else f" in {Path.cwd()}"
    return (
        f"waiting for {path} to appear{where} (the app writes it as it starts; another file "
        "or the app's http://127.0.0.1:PORT/concurrency URL: give it as SOURCE, or set "
        "CONCMON_LOG_FILE)"
    )


def default_source() -> str:
    """The app's log as the app finds it: ``CONCMON_LOG_FILE`` if set here, else
    ``logs/concmon.log`` in the current directory."""
    return os.environ.get("CONCMON_LOG_FILE", "").strip() or DEFAULT_SOURCE


def open_source(spec: str | None, kind: Kind = "auto") -> FileSource | UrlSource:
    """A source from the command line: an http(s) URL, or a file path (default: the app's
    log, :func:`default_source`)."""
    spec = spec or default_source()
    if spec.startswith(("http://", "https://")):
        return UrlSource(spec)
    if "://" in spec:
        raise CliError(f"{spec!r}: only http:// and https:// URLs or file paths are sources")
    return FileSource(Path(spec), kind)
