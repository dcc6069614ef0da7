"""concmon for Django: exact per-URL-pattern concurrency under runserver, WSGI and ASGI servers.

Add ``"concmon_django"`` to ``INSTALLED_APPS`` and
``"concmon_django.middleware.ConcMonMiddleware"`` first in ``MIDDLEWARE``; options go in the
``CONCMON`` setting. docs/django.md describes the options and how the numbers are counted.
"""

from concmon import UNMATCHED
from concmon_django.options import SETTING, Options

__all__ = ["SETTING", "UNMATCHED", "Options"]
