"""Reading report files from their end, and following them as they grow and rotate.

A log can be a gigabyte long while the answer is in its last few kilobytes, so nothing here
reads a file from the start unless asked to: :func:`reverse_lines` seeks back one block at a
time and yields complete lines newest first, and :class:`Follower` remembers an offset and
returns only what was appended since. The last line of a file that has no newline yet is still
being written; both leave it alone until it is complete.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final

BLOCK_SIZE: Final = 64 * 1024
MAX_LINE: Final = 8 * 1024 * 1024
"""Longer lines are not reports (a binary file, a runaway writer); each counts as unreadable."""

UNREADABLE: Final = b"\xff"
"""Stands in for a line too long to keep; it is not UTF-8, so every decoder counts it skipped."""


def reverse_lines(
    handle: BinaryIO, end: int, block_size: int = BLOCK_SIZE, max_line: int = MAX_LINE
) -> Iterator[bytes]:
    """The complete lines of ``handle[:end]``, last first, without their newlines."""
    pos = end
    buf = b""  # bytes from ``pos`` up to what has been yielded (or dropped) already
    at_end = True  # the unterminated tail after the last newline is still being dropped
    skipping = False  # inside an over-long line whose start lies further back
    while pos > 0:
        size = min(block_size, pos)
        pos -= size
        handle.seek(pos)
        buf = handle.read(size) + buf
        if at_end or skipping:
            nl = buf.rfind(b"\n")
            if nl < 0:
                if len(buf) > max_line:
                    buf = b""
                continue
            if skipping:
                yield UNREADABLE
                skipping = False
            at_end = False
            buf = buf[:nl]
        parts = buf.split(b"\n")
        buf = parts[0]
        yield from reversed(parts[1:])
        if len(buf) > max_line:
            skipping = True
            buf = b""
    if skipping:
        yield UNREADABLE
    elif not at_end:
        yield buf


class Follower:
    """New complete lines of one path, across appends, truncation and rename-and-recreate.

    ``poll()`` never blocks: it returns what is there (possibly nothing). A path that does not
    exist yet is simply empty until it appears. When the path is renamed away and a new file
    created (logrotate), the rest of the old file is read first, then the new file from its
    start, so no line is lost or read twice.
    """

    def __init__(self, path: Path, *, from_end: bool = True) -> None:
        self.path = path
        self._handle: BinaryIO | None = None
        self._inode: tuple[int, int] | None = None
        self._offset = 0
        self._partial = b""
        self._from_end = from_end

    def open(self) -> tuple[BinaryIO, int] | None:
        """Open the path now and return the handle with the offset following starts from."""
        if self._handle is None:
            self._open_current(at_end=self._from_end)
            self._from_end = False  # a file that appears later is read from its start
        if self._handle is None:
            return None
        return self._handle, self._offset

    def _open_current(self, *, at_end: bool) -> bool:
        try:
            handle = self.path.open("rb")
        except (FileNotFoundError, NotADirectoryError):
            return False
        st = os.fstat(handle.fileno())
        self._handle = handle
        self._inode = (st.st_dev, st.st_ino)
        self._offset = st.st_size if at_end else 0
        self._partial = b""
        return True

    def _read_available(self) -> list[bytes]:
        handle = self._handle
        if handle is None:
            return []
        size = os.fstat(handle.fileno()).st_size
        if size < self._offset:  # truncated in place (copytruncate): start over
            self._offset = 0
            self._partial = b""
        if size == self._offset:
            return []
        handle.seek(self._offset)
        data = handle.read(size - self._offset)
        self._offset += len(data)
        chunks = (self._partial + data).split(b"\n")
        self._partial = chunks.pop()
        if len(self._partial) > MAX_LINE:
            self._partial = b""
            chunks.append(UNREADABLE)
        return chunks

    def _moved(self) -> bool:
        try:
            st = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            return True
        return (st.st_dev, st.st_ino) != self._inode

    def poll(self) -> list[bytes]:
        """Every line completed since the previous call (the first call opens the path)."""
        if self._handle is None:
            opened = self._open_current(at_end=self._from_end)
            self._from_end = False  # a file that appears later is read from its start
            if not opened:
                return []
        lines = self._read_available()
        if self._moved():
            lines += self._read_available()
            if self._partial:
                lines.append(self._partial)  # the old file will not grow any more
            self.close()
            if self._open_current(at_end=False):
                lines += self._read_available()
        return lines

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        self._handle = None
        self._inode = None
