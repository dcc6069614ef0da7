"""The worker processes of one host, found for a single scrape through a shared directory.

Each worker writes its own figures to ``<dir>/concmon-<pid>-<token>.json`` (to a temporary name,
then renamed, so a reader never sees half a file) and holds an exclusive ``flock`` on
``<dir>/concmon-<pid>-<token>.lock`` for as long as it lives. The kernel drops that lock when
the process dies, however it dies (SIGKILL included), which is how a reader tells a dead worker
from a live one without trusting pids that may have been reused.

The worker serving a scrape reads its own figures live and the others from their files, and
:func:`concmon.host.combine` adds them up: the files of live workers, and the archive as the
gone ones. A dead worker's counters are folded, under an exclusive directory lock, into
``<dir>/concmon-archive.json`` (by the same function) and its files removed: its active
requests leave the sum, its totals stay in it, and thousands of recycled workers leave one
archive behind, not thousands of files. Readers take the directory lock shared, so a scrape
never sees a worker both in the archive and in its own file, nor in neither.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

from concmon.host import Figures, combine
from concmon.snapshot import Snapshot

logger = logging.getLogger("concmon")

PREFIX: Final = "concmon-"
ARCHIVE_NAME: Final = "concmon-archive.json"
DIRECTORY_LOCK: Final = "concmon.lock"
FOLDED_KEPT: Final = 1024
"""Ids of folded workers remembered, so that a fold interrupted between writing the archive
and removing the worker's file is never counted twice."""

FORMAT: Final = 2
_VOLATILE: Final = ("timestamp", "uptime_s", "interval_s")
"""Snapshot fields that change while nothing happens; a state file is not rewritten for them."""
_BAD_FIGURES = (TypeError, ValueError, KeyError, AttributeError, IndexError)


def _figures_json(figures: Figures) -> dict[str, Any]:
    return {
        "snapshot": dict(figures.snapshot.to_dict()),
        "queue_waits": {name: [c, s] for name, (c, s) in figures.queue_waits.items()},
        "cpu_seconds": figures.cpu_seconds,
        "limit": figures.limit,
    }


def _figures_from_json(data: Any) -> Figures:
    """Raises one of ``_BAD_FIGURES`` when ``data`` is not what :func:`_figures_json` wrote."""
    cpu, limit = data.get("cpu_seconds"), data.get("limit")
    return Figures(
        Snapshot.from_dict(data["snapshot"]),
        queue_waits={
            str(name): (int(v[0]), float(v[1])) for name, v in data["queue_waits"].items()
        },
        cpu_seconds=None if cpu is None else float(cpu),
        limit=None if limit is None else int(limit),
    )


class MultiProcessError(OSError):
    """The multi-process directory cannot be used; the message says why and what to do."""


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    """The file's object, or None if it vanished meanwhile or does not hold one."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None


class MultiProcessStore:
    """This worker's state file and lock, and the sum of every worker in the directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.pid = os.getpid()
        self.instance = f"{self.pid}-{secrets.token_hex(6)}"
        self.state_path = directory / f"{PREFIX}{self.instance}.json"
        self.lock_path = directory / f"{PREFIX}{self.instance}.lock"
        self._lock = threading.Lock()
        self._last_written = ""
        self._closed = False
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._dir_lock_path = directory / DIRECTORY_LOCK
            self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise MultiProcessError(
                f"multi-process directory {str(directory)!r} is not usable "
                f"({exc.strerror or exc}); make it writable by the workers or unset "
                "CONCMON_PROMETHEUS_MULTIPROC_DIR"
            ) from None
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        # Workers that died since the last scrape are folded now, so that a host that recycles
        # workers and is never scraped still keeps a bounded directory.
        with contextlib.suppress(OSError):
            self.fold_dead()

    # -- this worker ---------------------------------------------------------------------------

    def write(self, figures: Figures) -> None:
        """Publish this worker's figures for the other workers' scrapes (only when changed)."""
        data = _figures_json(figures)
        text = json.dumps(
            {"format": FORMAT, "instance": self.instance, "figures": data},
            separators=(",", ":"),
        )
        for name in _VOLATILE:
            data["snapshot"].pop(name)
        content = json.dumps(data, separators=(",", ":"))
        with self._lock:
            if self._closed or content == self._last_written:
                return
            _write_atomically(self.state_path, text)
            self._last_written = content

    def close(self, final: Figures | None = None) -> None:
        """Fold this worker's final figures into the archive, remove its files, let go its lock.

        A worker leaving gracefully thus takes nothing with it and leaves nothing behind. Where
        the fold cannot be done (an unwritable archive), its final figures stay in its state
        file and the next scrape folds them.
        """
        if final is not None:
            with contextlib.suppress(OSError):
                self.write(final)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if final is not None:
                with contextlib.suppress(OSError), self._directory_lock(fcntl.LOCK_EX):
                    self._fold([(self.instance, self.state_path)])
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)

    def forget_after_fork(self) -> None:
        """In a forked child: let go of the parent's lock descriptor without unlocking it."""
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)
        self._closed = True

    # -- the whole host ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _directory_lock(self, mode: int) -> Iterator[int]:
        fd = os.open(self._dir_lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, mode)
            yield fd
        finally:
            os.close(fd)

    def _others(self) -> list[tuple[str, Path]]:
        found = []
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        for name in names:
            if name.startswith(PREFIX) and name.endswith(".json") and name != ARCHIVE_NAME:
                instance = name[len(PREFIX) : -len(".json")]
                if instance != self.instance:
                    found.append((instance, self.directory / name))
        return found

    def _alive(self, instance: str) -> bool:
        try:
            fd = os.open(self.directory / f"{PREFIX}{instance}.lock", os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return True
            raise
        finally:
            os.close(fd)
        return False

    def fold_dead(self) -> None:
        """Fold every dead worker's files into the archive (they are gone for good)."""
        with self._directory_lock(fcntl.LOCK_SH):
            others = self._others()
            dead = [(i, p) for i, p in others if not self._alive(i)]
        if dead:
            with self._directory_lock(fcntl.LOCK_EX):
                self._fold([(i, p) for i, p in self._others() if not self._alive(i)])

    def collect(self, own: Callable[[], Figures]) -> Figures:
        """Every worker of the host added up, with this worker's figures read live."""
        with self._directory_lock(fcntl.LOCK_SH):
            others = self._others()
            dead = [(i, p) for i, p in others if not self._alive(i)]
        if dead:
            with self._directory_lock(fcntl.LOCK_EX):
                # The lock was let go in between: look again before folding anything.
                others = self._others()
                self._fold([(i, p) for i, p in others if not self._alive(i)])
                return self._sum(own)
        with self._directory_lock(fcntl.LOCK_SH):
            return self._sum(own)

    def _sum(self, own: Callable[[], Figures]) -> Figures:
        live, archived = self._parts(own)
        return combine(live, archived)

    def _parts(self, own: Callable[[], Figures]) -> tuple[list[Figures], list[Figures]]:
        live = [own()]
        for _, path in self._others():
            data = _read_json(path)
            if data is not None:
                with contextlib.suppress(*_BAD_FIGURES):
                    live.append(_figures_from_json(data["figures"]))
        return live, self._archived()

    def workers(self, own: Callable[[], Figures]) -> tuple[list[Figures], list[Figures]]:
        """Each live worker's figures (this one's read live) and the finished workers' folded
        total: the parts :meth:`collect` adds up, for a per-worker view."""
        with self._directory_lock(fcntl.LOCK_SH):
            return self._parts(own)

    def _archived(self) -> list[Figures]:
        archive = _read_json(self.directory / ARCHIVE_NAME)
        if archive is not None:
            with contextlib.suppress(*_BAD_FIGURES):
                return [_figures_from_json(archive["figures"])]
        return []

    def _fold(self, dead: list[tuple[str, Path]]) -> None:
        if not dead:
            return
        archive_path = self.directory / ARCHIVE_NAME
        folded: list[str] = [str(i) for i in (_read_json(archive_path) or {}).get("folded", [])]
        seen = set(folded)
        gone = self._archived()
        for instance, path in dead:
            data = _read_json(path)
            if data is not None and instance not in seen:
                with contextlib.suppress(*_BAD_FIGURES):
                    gone.append(_figures_from_json(data["figures"]))
                    folded.append(instance)
                    seen.add(instance)
        archive = {
            "format": FORMAT,
            "figures": _figures_json(combine([], gone)) if gone else None,
            "folded": folded[-FOLDED_KEPT:],
        }
        _write_atomically(archive_path, json.dumps(archive, separators=(",", ":")))
        for instance, path in dead:
            for leftover in (path, self.directory / f"{PREFIX}{instance}.lock"):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
        logger.debug("concmon: folded %d finished worker(s) into %s", len(dead), archive_path)
