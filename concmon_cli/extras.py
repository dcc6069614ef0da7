"""Which optional dependencies a command needs, and the one line that says how to get them.

Reading reports from a file works in every install (click and rich are core). Serving an app,
the demo and reading a live URL need packages from an extra; a command that lacks one stops
with a :class:`CliError` naming the package and the ``pip install`` line, never a traceback.
"""

from __future__ import annotations

from importlib.util import find_spec

from concmon_cli.errors import CliError


def require(what: str, extra: str, *modules: str) -> None:
    """Raise a one-line :class:`CliError` when one of ``modules`` is not installed."""
    for module in modules:
        if find_spec(module) is None:
            raise CliError(f"{what} needs {module}: pip install 'concmon[{extra}]'")
