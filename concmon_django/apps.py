"""The Django app: ``"concmon_django"`` in ``INSTALLED_APPS`` starts concmon once per process.

``ready()`` runs in every process that sets Django up, and ``manage.py runserver`` sets it up
twice: in the autoreloader's parent, which only watches files and restarts its child, and in
the child that serves (``RUN_MAIN=true``). The parent is left alone: it serves nothing, so it
must neither count nor report. Worker processes forked from a preloaded master (gunicorn
``--preload``) get their own reporter from the core's fork handlers.
"""

from __future__ import annotations

import sys

from django.apps import AppConfig
from django.core.signals import setting_changed


def reloader_parent(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> bool:
    """Whether this process is ``runserver``'s autoreloader parent (never a serving process)."""
    from django.utils import autoreload

    argv = sys.argv if argv is None else argv
    if environ is None:
        import os

        environ = dict(os.environ)
    command = argv[1] if len(argv) > 1 else ""
    return (
        command == "runserver"
        and "--noreload" not in argv
        and environ.get(autoreload.DJANGO_AUTORELOAD_ENV) != "true"
    )


class ConcMonConfig(AppConfig):
    """Starts the process monitor and registers concmon's system checks."""

    name = "concmon_django"
    label = "concmon_django"
    verbose_name = "concmon"

    def ready(self) -> None:
        from concmon_django import adapter, checks

        checks.register()
        setting_changed.connect(adapter.forget, dispatch_uid="concmon_django.forget")
        if reloader_parent():
            return
        configured = adapter.current()
        if configured is not None:
            configured.start()
