"""The Flask extension: ``ConcMon(app)`` or ``ConcMon().init_app(app)`` for app factories.

Flask already matches the URL once per request and keeps the rule on ``request.url_rule``;
matching it a second time would cost several times the whole counting budget. So the extension
wraps ``app.wsgi_app`` (the pairing of begin and finish lives in one WSGI call and the
response's ``close()``, where nothing can skip it) and names the request from Flask's
``request_started`` signal, sent once per request right after matching and before any of the
app's own hooks (measured: cheaper than a URL value preprocessor, which makes Flask evaluate
two request proxies on every request). A request that never reaches that point (a failing
session backend) is named from the rule Flask left on the request, or counted as
``<unmatched>``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

from flask import Flask, request, request_started

from concmon import ConcurrencyMonitor, init_monitor
from concmon_flask.options import Options, from_config
from concmon_flask.wsgi import ENVIRON_KEY, UNMATCHED_NAME, ConcMonWSGIMiddleware, Exchange

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

logger = logging.getLogger("concmon")

EXTENSION_KEY: Final = "concmon"
"""The key of the installed middleware in ``app.extensions``."""


class FlaskMiddleware(ConcMonWSGIMiddleware):
    """The WSGI middleware of one Flask app; names requests by their URL rule."""

    def __init__(
        self, app: Flask, options: Options, monitor: ConcurrencyMonitor | None = None
    ) -> None:
        super().__init__(app.wsgi_app, endpoint=None, monitor=monitor, options=options)
        self.flask_app = app

    def name_request(self, sender: Flask, **extra: Any) -> None:
        """Begin counting under the matched rule (a ``request_started`` receiver)."""
        try:
            req = request._get_current_object()  # type: ignore[attr-defined]
            exchange: Exchange | None = req.environ.get(ENVIRON_KEY)
            if exchange is not None and exchange.ticket is None:
                rule = req.url_rule
                exchange.ticket = self._group.begin(
                    rule.rule if rule is not None else UNMATCHED_NAME
                )
        except Exception:  # counting must never fail a request
            logger.exception("concmon: could not name a request; it is counted when it ends")

    def begin_late(self, exchange: Exchange, environ: WSGIEnvironment) -> None:
        rule = getattr(environ.get("werkzeug.request"), "url_rule", None)
        name = getattr(rule, "rule", None)
        exchange.ticket = self._group.begin(name if isinstance(name, str) else UNMATCHED_NAME)


class ConcMon:
    """Counts every request of a Flask app per URL rule, and starts concmon's reporting.

    Options are keyword arguments or ``app.config["CONCMON_<NAME>"]`` keys (keywords win); see
    docs/flask.md. A bad value raises :class:`concmon.ConfigError` here, not on a request.
    Installing twice on one app changes nothing; one ``ConcMon`` may serve several apps.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        monitor: ConcurrencyMonitor | None = None,
        **options: Any,
    ) -> None:
        Options.parse(options)  # fail at the call that has the typo, not at init_app
        self._options = options
        self._monitor = monitor
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        if EXTENSION_KEY in app.extensions:
            logger.debug("concmon: already installed on %r; nothing to do", app.name)
            return
        values = from_config(app.config)
        values.update(self._options)
        options = Options.parse(values)
        monitor = self._monitor
        if monitor is None:
            monitor = init_monitor(start_reporter=options.start_reporter, **options.core)
        if not monitor.enabled:
            logger.debug("concmon: monitoring is switched off; %r is left untouched", app.name)
            return
        middleware = FlaskMiddleware(app, options, monitor)
        request_started.connect(middleware.name_request, app, weak=False)
        app.wsgi_app = middleware  # type: ignore[method-assign]
        app.extensions[EXTENSION_KEY] = middleware
