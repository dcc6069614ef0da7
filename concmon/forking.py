"""What ``fork()`` does to concmon, in one place and one order.

gunicorn ``--preload`` and multiprocessing fork a process that may be counting and reporting on
other threads. Every lock those threads may hold is taken before the fork, in the order the
code itself takes them (the runtime's, then a report's, then the counting lock), and released
in the reverse order afterwards. The child then starts from fresh counters under its own pid
and, if the parent was reporting, with a reporter thread of its own.

A plugin with process state of its own (the Prometheus exporter's multi-process store) registers
its own child handler when it is loaded; the interpreter runs it after these.
"""

from __future__ import annotations

import os

from concmon import monitor, reporter, runtime


def _before() -> None:
    runtime.before_fork()
    reporter.before_fork()
    monitor.before_fork()


def _after_in_parent() -> None:
    monitor.after_fork_in_parent()
    reporter.after_fork_in_parent()
    runtime.after_fork_in_parent()


def _after_in_child() -> None:
    monitor.after_fork_in_child()
    reporter.after_fork_in_child()
    runtime.after_fork_in_child()  # last: it starts the child's reporter


os.register_at_fork(
    before=_before, after_in_parent=_after_in_parent, after_in_child=_after_in_child
)
