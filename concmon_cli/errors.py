"""The one error type the commands raise, and the exit codes they document.

Every failure a user can cause (a missing file, a bad duration, an unreachable URL) becomes a
:class:`CliError` with one sentence; ``main`` prints it as one line on stderr and exits with its
code, so no traceback ever reaches a terminal or a cron mail. ``check`` speaks the monitoring
plugins' convention instead (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN), its status on stdout.
"""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
EXIT_UNREADABLE: Final = 2
"""The source could not be read, held no report, or an argument was invalid."""
EXIT_INTERRUPTED: Final = 130

EXIT_WARNING: Final = 1
"""``check``: a figure crossed its ``--warn-*`` threshold."""
EXIT_CRITICAL: Final = 2
"""``check``: a figure crossed its ``--max-*`` threshold, or concmon is switched off."""
EXIT_UNKNOWN: Final = 3
"""``check``: the source could not be read, or an argument was invalid."""


class CliError(Exception):
    """A problem the user can fix; ``str()`` is the whole message."""

    def __init__(self, message: str, code: int = EXIT_UNREADABLE) -> None:
        super().__init__(message)
        self.code = code
