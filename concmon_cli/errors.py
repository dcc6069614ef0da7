"""The one error type the commands raise, and the exit codes they document.

Every failure a user can cause (a missing file, a bad duration, an unreachable URL) becomes a
:class:`CliError` with one sentence; ``main`` prints it as one line on stderr and exits with its
code, so no traceback ever reaches a terminal or a cron mail.
"""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
EXIT_THRESHOLD: Final = 1
"""``check`` found a figure past its threshold."""
EXIT_UNREADABLE: Final = 2
"""The source could not be read, held no report, or an argument was invalid."""
EXIT_INTERRUPTED: Final = 130


class CliError(Exception):
    """A problem the user can fix; ``str()`` is the whole message."""

    def __init__(self, message: str, code: int = EXIT_UNREADABLE) -> None:
        super().__init__(message)
        self.code = code
