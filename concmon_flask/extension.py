"""The Flask extension: ``ConcMon(app)`` or ``ConcMon().init_app(app)`` for app factories.

Flask already matches the URL once per request and keeps the rule on ``request.url_rule``;
matching it a second time would cost several times the whole counting budget. So the extension
wraps ``app.wsgi_app`` (the pairing of begin and finish lives in one WSGI call and the
response's ``close()``, where nothing can skip it) and names the request at the moment Flask
stores the match: the app's request class is given a ``view_args`` property whose setter
begins the count under ``url_rule``, stored just before it. That is right after matching and
before any of the app's own hooks, and it costs one property call (measured against the
alternatives: the ``request_started`` signal costs a blinker dispatch and a request-proxy
look-up, a URL value preprocessor makes Flask evaluate two request proxies). A request that
never reaches that point (a 404, a failing session backend) is counted as ``<unmatched>`` when
it ends.
"""

from __future__ import annotations

import logging
import operator
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from flask import Flask, Request

from concmon import ConcurrencyMonitor, init_monitor
from concmon_flask.options import Options, core_options, from_config
from concmon_flask.wsgi import ENVIRON_KEY, UNMATCHED_NAME, ConcMonWSGIMiddleware, Exchange

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger("concmon")

EXTENSION_KEY: Final = "concmon"
"""The key of the installed middleware in ``app.extensions``."""


_VIEW_ARGS: Final = "_concmon_view_args"


def naming_request_class(base: type[Request]) -> type[Request]:
    """``base`` whose ``view_args`` setter begins the request's count.

    Flask stores the match as ``request.url_rule, request.view_args = ...``: by the time
    ``view_args`` is set, ``url_rule`` is there to name the request. ``view_args`` rather than
    ``url_rule`` carries the property because Flask reads it once per request, where it reads
    ``url_rule`` several times: the getter stays off the hot path.
    """

    def set_view_args(self: Request, view_args: dict[str, Any] | None) -> None:
        self.__dict__[_VIEW_ARGS] = view_args
        exchange: Exchange | None = self.environ.get(ENVIRON_KEY)
        if exchange is not None and exchange.ticket is None:
            rule = self.url_rule
            exchange.open(rule.rule if rule is not None else UNMATCHED_NAME)

    namespace = {
        # The getter is C code: the stored value, or the class default of None below when
        # nothing was matched.
        "view_args": property(
            operator.attrgetter(_VIEW_ARGS), set_view_args, doc="The matched rule's arguments."
        ),
        _VIEW_ARGS: None,
        "__module__": __name__,
        "__qualname__": f"ConcMon{base.__qualname__}",
    }
    return type(f"ConcMon{base.__name__}", (base,), namespace)


def _without_cycle(app: Flask) -> WSGIApplication:
    """``app.wsgi_app`` for the middleware to call, holding ``app`` weakly.

    The middleware becomes ``app.wsgi_app``; holding the app's own bound method in return would
    make every app a reference cycle, freed only by the garbage collector instead of at zero
    references. A ``wsgi_app`` already wrapped by something else is called as it is.
    """
    wsgi_app = app.wsgi_app
    if getattr(wsgi_app, "__self__", None) is not app:
        return wsgi_app
    function = type(app).wsgi_app
    app_ref = weakref.ref(app)

    def call(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        app = app_ref()
        if app is None:
            raise ReferenceError("the Flask app of this middleware no longer exists")
        body: Iterable[bytes] = function(app, environ, start_response)
        return body

    return call


class FlaskMiddleware(ConcMonWSGIMiddleware):
    """The WSGI middleware of one Flask app; names requests by their URL rule."""

    def __init__(
        self, app: Flask, options: Options, monitor: ConcurrencyMonitor | None = None
    ) -> None:
        super().__init__(_without_cycle(app), endpoint=None, monitor=monitor, options=options)
        # Weakly, as in _without_cycle: the app holds this middleware.
        self._app = weakref.ref(app)
        self._request_class = self._install_request_class()
        self._watched = weakref.proxy(app)

    @property
    def flask_app(self) -> Flask:
        app = self._app()
        if app is None:
            raise ReferenceError("the Flask app of this middleware no longer exists")
        return app

    def _install_request_class(self) -> type[Request]:
        app = self.flask_app
        app.request_class = naming_request_class(app.request_class)
        return app.request_class

    def _request_class_changed(self) -> None:
        # The app swapped its request class after ConcMon(app): wrap the new one before this
        # request is built, so it is named and counted from its start like the others.
        logger.debug("concmon: %r changed its request_class; naming it too", self.flask_app)
        self._request_class = self._install_request_class()


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
            monitor = init_monitor(start_reporter=options.start_reporter, **core_options(values))
        if not monitor.enabled:
            logger.debug("concmon: monitoring is switched off; %r is left untouched", app.name)
            return
        middleware = FlaskMiddleware(app, options, monitor)
        app.wsgi_app = middleware  # type: ignore[method-assign]
        app.extensions[EXTENSION_KEY] = middleware
