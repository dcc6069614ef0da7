"""An append-only report file that several processes can share and logrotate can move.

Every report is one ``write`` on an ``O_APPEND`` descriptor, so reports from several worker
processes never interleave within a line. Before each write the file's inode is compared with
the descriptor's: when something renamed or deleted the file (logrotate's default
rename-and-recreate), the writer reopens the path and nothing is lost. Size rotation is done
under an advisory lock on a hidden sibling ``.NAME.lock`` file so two workers never rotate
the same file twice.

A report line is whole or absent to a reader. A write cut short (a full disk, a file size
limit) leaves a partial line at the end of the file; the next report then starts with a
newline, so only the partial line is unreadable (readers skip it) and the next report parses.
Whether the file ends inside a line is read from its last byte, so this holds when another
process's write was the one cut short.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]


class SinkWriteError(OSError):
    """The report could not be written; the message names the file and the reason."""


class AppendFile:
    def __init__(self, path: Path, max_bytes: int = 0, backup_count: int = 0) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self._fd: int | None = None
        self._readable = False
        self._cut_short = False
        self._lock = threading.Lock()

    def _open(self) -> int:
        flags = os.O_APPEND | os.O_CREAT
        try:
            fd = os.open(self.path, os.O_RDWR | flags, 0o644)
            self._readable = True
        except PermissionError:  # a write-only file: rely on what this process saw
            fd = os.open(self.path, os.O_WRONLY | flags, 0o644)
            self._readable = False
        return fd

    def _ends_inside_a_line(self, fd: int, size: int) -> bool:
        if size == 0:
            return False
        if self._readable:
            try:
                return os.pread(fd, 1, size - 1) != b"\n"
            except OSError:
                pass
        return self._cut_short

    def _close_fd(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    @contextlib.contextmanager
    def _interprocess_lock(self) -> Iterator[None]:
        if fcntl is None or not self.max_bytes:
            yield
            return
        lock_path = self.path.with_name(f".{self.path.name}.lock")
        fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _current_fd(self) -> int:
        fd = self._fd
        if fd is not None:
            try:
                moved = os.stat(self.path).st_ino != os.fstat(fd).st_ino
            except FileNotFoundError:
                moved = True
            if not moved:
                return fd
            self._close_fd()
        self._fd = self._open()
        return self._fd

    def _rotate(self) -> None:
        self._close_fd()
        if self.backup_count <= 0:
            os.truncate(self.path, 0)
            return
        for i in range(self.backup_count - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))

    def write(self, text: str) -> None:
        data = text.encode("utf-8")
        try:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock, self._interprocess_lock():
                fd = self._current_fd()
                size = os.fstat(fd).st_size
                if self.max_bytes and size > 0 and size + len(data) > self.max_bytes:
                    self._rotate()
                    fd = self._current_fd()
                    size = 0
                out = b"\n" + data if self._ends_inside_a_line(fd, size) else data
                self._cut_short = True  # until the whole write is known to have landed
                written = os.write(fd, out)
                if written != len(out):
                    raise OSError(28, "short write (is the disk full?)")
                self._cut_short = False
        except OSError as exc:
            self._close_fd()
            reason = exc.strerror or str(exc)
            message = f"cannot write reports to {self.path}: {reason}"
            raise SinkWriteError(exc.errno, message) from None

    def close(self) -> None:
        with self._lock:
            self._close_fd()
