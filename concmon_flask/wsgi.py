"""Counting for any WSGI application: a request is active until its response is closed.

PEP 3333 ends a request when the server calls ``close()`` on the response iterable, not when
the application returns it: a streamed body is still being produced long after that. So the
middleware hands the server a thin wrapper around the application's iterable and finishes the
request's ticket in ``close()``; a server that never calls ``close()`` is covered too, because
the wrapper finishes the ticket when it is garbage-collected.

Everything about one request lives in one :class:`Exchange`, never on the middleware, so
interleaved requests on many threads cannot mix their data. While the application runs, the
exchange is also reachable from the WSGI environ, which is how the Flask extension names the
request once Flask has matched it; the environ key also means that two counting layers around
one app (a plain middleware outside a Flask app that counts too) count each request once: the
inner one sees the key and stays out of the way.
"""

from __future__ import annotations

import hmac
import importlib
import ipaddress
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol

from concmon import ConcurrencyMonitor, Outcome, Ticket, get_monitor, outcome_for
from concmon.system import SystemSampler
from concmon_flask.options import Network, Options

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger("concmon")

ENVIRON_KEY: Final = "concmon.exchange"
"""The WSGI environ key marking a counted request (its :class:`Exchange` while the app runs)."""

UNMATCHED_NAME: Final = "<unmatched>"
"""The one endpoint name every request that matched no route is counted under."""

_OK: Final = Outcome.OK
_FAILED: Final = Outcome.FAILED
_CANCELLED: Final = Outcome.CANCELLED

ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]


class Exchange(Ticket):
    """Everything about one request, in one object: the core's ticket, the ``start_response``
    the application sees and the response iterable the server gets.

    A request therefore costs one allocation of ours (plus the generator that relays the
    body). The count may begin after the object exists: the Flask extension names the request
    only once Flask has matched its URL rule (``begun`` says whether it has).
    """

    __slots__ = (
        "_done",
        "_inner",
        "_owner",
        "begun",
        "ended",
        "error",
        "start_response",
        "status",
    )

    _done: bool
    _inner: Iterable[bytes]
    _owner: ConcMonWSGIMiddleware
    begun: bool
    ended: bool
    error: type[BaseException] | None
    start_response: StartResponse
    status: str

    # -- start_response ------------------------------------------------------------------------

    def start(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], object]:
        """The ``start_response`` the application gets: records the status on its way."""
        self.status = status
        return self.start_response(status, headers, exc_info)

    # -- the response iterable -----------------------------------------------------------------

    def __iter__(self) -> Iterator[bytes]:
        # A plain loop, not ``yield from``: when this generator is collected after an early
        # close(), ``yield from`` would close the inner iterable a second time. Whether the
        # server read the body to its end tells a completed response from a client that went
        # away mid-stream.
        try:
            for chunk in self._inner:  # noqa: UP028 (see above)
                yield chunk
        except GeneratorExit:
            raise
        except BaseException as exc:
            if self.error is None:
                self.error = type(exc)
            raise
        self._done = True

    def close(self) -> None:
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()
        except BaseException as exc:
            if self.error is None:
                self.error = type(exc)
            raise
        finally:
            self.end()

    def __del__(self) -> None:
        # The server never called close() (a WSGI contract breach, or an abandoned request):
        # the request must not stay active forever.
        if not self.ended:
            self.end()

    # -- the end -------------------------------------------------------------------------------

    def end(self) -> None:
        """Count the request's end, once; its outcome is an exception, else the status rule,
        else whether the body was read to its end (a dropped client is cancelled)."""
        if self.ended:
            return
        self.ended = True
        if not self.begun:
            return
        error = self.error
        if error is not None:
            self.finish(outcome_for(error))
            return
        status = self.status
        if status:
            owner = self._owner
            rule = owner._rule
            if rule is None:
                # Status lines start with three digits, so comparing the strings compares the
                # codes, without parsing an int on every request.
                if status >= owner._failed_from:
                    self.finish(_FAILED)
                    return
            else:
                try:
                    failed = rule(int(status[:3]) if status[:3].isdigit() else 0)
                except BaseException:
                    # A status rule that raises must not leave the request active forever.
                    self.finish(_FAILED)
                    raise
                if failed:
                    self.finish(_FAILED)
                    return
        self.finish(_OK if self._done else _CANCELLED)


_new = object.__new__


def path_endpoint(environ: WSGIEnvironment) -> str:
    """The default endpoint name of a plain WSGI app: the request path.

    Paths are unbounded (every id makes a new name); the monitor caps distinct names at
    ``CONCMON_MAX_ENDPOINTS`` and counts the rest under ``<overflow>``. Pass ``endpoint=`` with
    a function returning route templates when the app has them.
    """
    return str(environ.get("PATH_INFO") or "/")


class _Responder(Protocol):
    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]: ...


def _respond(
    start_response: StartResponse,
    status: str,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    *,
    headers: Iterable[tuple[str, str]] = (),
    head: bool = False,
) -> list[bytes]:
    start_response(
        status,
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            *headers,
        ],
    )
    return [] if head else [body]


class ConcMonWSGIMiddleware:
    """Counts every request of a WSGI application in concmon's process monitor.

    Use it for any WSGI app (``app = ConcMonWSGIMiddleware(app)``); Flask apps get the same
    through :class:`concmon_flask.ConcMon`, which names requests by their URL rule. ``endpoint``
    names a request from its environ (default: the path). The remaining keywords are the
    adapter options of docs/flask.md. The process monitor must already exist or is created on
    first use; call :func:`concmon.init_monitor` to start reporting.
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        endpoint: Callable[[WSGIEnvironment], str] | None = path_endpoint,
        monitor: ConcurrencyMonitor | None = None,
        options: Options | None = None,
        **values: Any,
    ) -> None:
        if options is None:
            options = Options.parse(values)
        elif values:
            raise TypeError("pass either options= or option keywords, not both")
        self.app = app
        self.options = options
        self.monitor = monitor if monitor is not None else get_monitor()
        self._group = self.monitor.http
        self._endpoint = endpoint
        threshold = getattr(options.failed_status, "threshold", None)
        if isinstance(threshold, int):
            self._failed_from, self._rule = str(threshold), None
        else:
            self._failed_from, self._rule = "", options.failed_status
        self._prefixes = options.excluded_prefixes
        # Paths handled before counting: the monitor's own endpoints, and excluded paths (None).
        self._special: dict[str, _Responder | None] = dict.fromkeys(options.excluded)
        self._sampler: SystemSampler | None = None
        # The Flask extension sets these two: a request class swapped by the app after
        # install is noticed with two attribute reads per request (no call).
        self._watched: Any = None
        self._request_class: Any = None
        self._sampler_lock = threading.Lock()
        self._exposition: Callable[[str | None], tuple[bytes, str]] | None = None
        if options.json_path is not None:
            self._special[options.json_path] = self._serve_json
        if options.prometheus:
            self._exposition = _load_exposition()
            self._special[options.metrics_path] = self._serve_metrics

    # -- the request path -------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if ENVIRON_KEY in environ:  # an outer layer counts this request already
            return self.app(environ, start_response)
        watched = self._watched
        if watched is not None and watched.request_class is not self._request_class:
            self._request_class_changed()
        path = environ.get("PATH_INFO", "")
        special = self._special
        if special and path in special:
            own = special[path]
            if own is not None:
                return own(environ, start_response)
            return self.app(environ, start_response)
        if self._prefixes and path.startswith(self._prefixes):
            return self.app(environ, start_response)
        exchange: Exchange = _new(Exchange)
        exchange._owner = self
        exchange._done = exchange.ended = False
        exchange.error = None
        exchange.status = ""
        exchange.start_response = start_response
        environ[ENVIRON_KEY] = exchange
        endpoint = self._endpoint
        if endpoint is None:
            exchange.begun = False  # named once the application has matched the request
        else:
            self._group.admit(exchange, endpoint(environ))
            exchange.begun = True
        try:
            result = self.app(environ, exchange.start)
        except BaseException as exc:
            if not exchange.begun:
                self.begin_late(exchange)
            exchange.error = type(exc)
            exchange.end()
            raise
        if not exchange.begun:
            self.begin_late(exchange)
        # From here the exchange holds the body, and a streamed body can hold the request and
        # its environ: the environ keeps only the mark, so that a server dropping the response
        # without close() frees the exchange at once (and ends the request) rather than leaving
        # a reference cycle for the garbage collector to find.
        environ[ENVIRON_KEY] = None
        exchange._inner = result
        return exchange

    def begin_late(self, exchange: Exchange) -> None:
        """Begin a request that nothing named while the application ran."""
        self._group.admit(exchange, UNMATCHED_NAME)
        exchange.begun = True

    def _request_class_changed(self) -> None:
        """Overridden by the Flask extension, which watches its app's request class."""

    # -- the monitor's own endpoints ----------------------------------------------------------

    def _serve_json(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _respond(
                start_response, "405 Method Not Allowed", b"", headers=[("Allow", "GET, HEAD")]
            )
        with self._sampler_lock:
            if self._sampler is None:
                self._sampler = SystemSampler()
            system = self._sampler.sample()
        body = json.dumps(self.monitor.snapshot(system).to_dict(), separators=(",", ":"))
        return _respond(
            start_response,
            "200 OK",
            body.encode(),
            content_type="application/json",
            head=method == "HEAD",
        )

    def _serve_metrics(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _respond(
                start_response, "405 Method Not Allowed", b"", headers=[("Allow", "GET, HEAD")]
            )
        options = self.options
        if options.metrics_allow is not None and not _allowed(
            environ.get("REMOTE_ADDR"), options.metrics_allow
        ):
            return _respond(start_response, "403 Forbidden", b"client address not allowed\n")
        if options.metrics_token is not None and not _authorized(
            environ.get("HTTP_AUTHORIZATION"), options.metrics_token
        ):
            return _respond(
                start_response,
                "401 Unauthorized",
                b"a valid bearer token is required\n",
                headers=[("WWW-Authenticate", 'Bearer realm="metrics"')],
            )
        assert self._exposition is not None
        body, content_type = self._exposition(environ.get("HTTP_ACCEPT"))
        return _respond(
            start_response, "200 OK", body, content_type=content_type, head=method == "HEAD"
        )


def _allowed(address: object, networks: tuple[Network, ...]) -> bool:
    if not isinstance(address, str):
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


def _authorized(header: object, token: str) -> bool:
    if not isinstance(header, str):
        return False
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode(), token.encode())


def _load_exposition() -> Callable[[str | None], tuple[bytes, str]]:
    from concmon import ConfigError

    try:
        prometheus = importlib.import_module("concmon.exporters.prometheus")
    except ImportError as exc:
        raise ConfigError(
            "concmon_flask: prometheus=True needs the Prometheus exporter "
            f"({exc}); install it with: pip install concmon[prometheus]"
        ) from None
    exposition: Callable[[str | None], tuple[bytes, str]] | None = getattr(
        prometheus, "exposition", None
    )
    activate = getattr(prometheus, "activate", None)
    if activate is not None:
        # In multi-process mode every worker publishes from its start (a worker forked from a
        # preloaded master picks this up under its own pid), so scrapes of any worker see all.
        activate()
    if exposition is None:
        raise ConfigError(
            "concmon_flask: prometheus=True needs concmon.exporters.prometheus.exposition; "
            "install a matching version with: pip install concmon[prometheus]"
        )
    return exposition
