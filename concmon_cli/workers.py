"""Several worker processes, one view: the CLI takes it from :mod:`concmon.host`.

Workers are added up in the core, by the one rule the exporters follow as well (counters of
every worker seen, gauges of the live ones); the CLI has no rule of its own. This module only
keeps the names readers of the CLI have imported from here.
"""

from concmon.host import STALE_INTERVALS, HostView, merge

__all__ = ["STALE_INTERVALS", "HostView", "merge"]
