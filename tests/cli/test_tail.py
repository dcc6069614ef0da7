"""Reading files backwards and following them: no line lost, doubled or read too early."""

from __future__ import annotations

import io
import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from concmon_cli.tail import UNREADABLE, Follower, reverse_lines

lines_st = st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=30)


@given(lines=lines_st, block=st.integers(min_value=1, max_value=64), tail=st.binary(max_size=20))
def test_reverse_lines_is_forward_reversed(lines: list[bytes], block: int, tail: bytes) -> None:
    """Any block size yields exactly the complete lines, last first; a torn last line is left."""
    tail = tail.replace(b"\n", b"")
    data = b"".join(line + b"\n" for line in lines) + tail
    got = list(reverse_lines(io.BytesIO(data), len(data), block_size=block))
    assert got == list(reversed(lines))


def test_overlong_lines_are_unreadable_not_kept() -> None:
    """A binary blob with no newline is reported as one unreadable line, never buffered whole."""
    data = b"first\n" + b"x" * 5000 + b"\nlast\n"
    got = list(reverse_lines(io.BytesIO(data), len(data), block_size=64, max_line=1000))
    assert got == [b"last", UNREADABLE, b"first"]


def test_follower_reads_appends_and_waits_for_complete_lines(tmp_path: Path) -> None:
    """Only complete lines come out; a half-written line waits for its newline."""
    path = tmp_path / "f.log"
    path.write_bytes(b"old\n")
    follower = Follower(path, from_end=True)
    assert follower.poll() == []
    with path.open("ab") as handle:
        handle.write(b"one\ntw")
        handle.flush()
        assert follower.poll() == [b"one"]
        handle.write(b"o\n")
    assert follower.poll() == [b"two"]
    follower.close()


def test_follower_waits_for_a_missing_file_then_reads_it_from_the_start(tmp_path: Path) -> None:
    """A file that appears later is read whole: its first report is not skipped."""
    path = tmp_path / "later.log"
    follower = Follower(path, from_end=True)
    assert follower.poll() == []
    path.write_bytes(b"a\nb\n")
    assert follower.poll() == [b"a", b"b"]
    follower.close()


def test_follower_survives_rename_and_recreate(tmp_path: Path) -> None:
    """logrotate's rename-and-recreate: the old file's rest, then the new file, nothing lost."""
    path = tmp_path / "r.log"
    path.write_bytes(b"")
    follower = Follower(path, from_end=True)
    assert follower.poll() == []
    with path.open("ab") as handle:
        handle.write(b"before\n")
    os.replace(path, tmp_path / "r.log.1")
    with (tmp_path / "r.log.1").open("ab") as handle:
        handle.write(b"late write to old\n")
    path.write_bytes(b"after\n")
    assert follower.poll() == [b"before", b"late write to old", b"after"]
    with path.open("ab") as handle:
        handle.write(b"more\n")
    assert follower.poll() == [b"more"]
    follower.close()


def test_follower_restarts_after_truncation(tmp_path: Path) -> None:
    """copytruncate shrinks the file in place; reading starts again from its beginning."""
    path = tmp_path / "t.log"
    path.write_bytes(b"a\nb\n")
    follower = Follower(path, from_end=True)
    follower.poll()
    path.write_bytes(b"c\n")
    assert follower.poll() == [b"c"]
    follower.close()
