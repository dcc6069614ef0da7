"""concmon-cli: the live table, history, export and alerting for concmon reports; the launcher.

The command is :func:`concmon_cli.main.main`; the readers in :mod:`concmon_cli.sources` and the
renderers in :mod:`concmon_cli.render` are usable on their own. Workers are added up by
:mod:`concmon.host`, as in the exporters.
"""

from concmon_cli.errors import CliError
from concmon_cli.sources import FileSource, Reading, UrlSource, open_source

__all__ = ["CliError", "FileSource", "Reading", "UrlSource", "open_source"]
