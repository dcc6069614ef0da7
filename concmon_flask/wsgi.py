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

import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from concmon import UNMATCHED, ConcurrencyMonitor, Outcome, Ticket, get_monitor, outcome_for
from concmon.endpoints import MachineEndpoints, forwarding_header
from concmon.request_start import environ_key, seconds_waited
from concmon_flask.options import Options

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

ENVIRON_KEY: Final = "concmon.exchange"
"""The WSGI environ key marking a counted request (its :class:`Exchange` while the app runs)."""

UNMATCHED_NAME: Final = UNMATCHED
"""The one endpoint name every request that matched no route is counted under."""

_OK: Final = Outcome.OK
_FAILED: Final = Outcome.FAILED
_CANCELLED: Final = Outcome.CANCELLED

ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]


class Exchange:
    """Everything about one request, in one object: the core's ticket, the ``start_response``
    the application sees and the response iterable the server gets.

    The count may begin after the object exists: the Flask extension names the request only
    once Flask has matched its URL rule (``ticket`` is None until then); :meth:`open` begins
    it and tells it what is already known (the time queued before the application, the
    response head if it went out first).
    """

    __slots__ = (
        "_done",
        "_inner",
        "_owner",
        "ended",
        "environ",
        "error",
        "late",
        "method",
        "start_response",
        "status",
        "ticket",
        "waited",
    )

    def __init__(
        self, owner: ConcMonWSGIMiddleware, start_response: StartResponse, method: str
    ) -> None:
        self._owner = owner
        self.start_response = start_response
        self.method = method
        self.ticket: Ticket | None = None
        self.status = ""
        self.waited: float | None = None
        self.error: type[BaseException] | None = None
        self._inner: Iterable[bytes] = ()
        self._done = False
        self.ended = False
        # An ``endpoint`` that could not name the request at its start (it answered None):
        # asked again when the response starts, and at the end.
        self.late: Callable[[WSGIEnvironment], str | None] | None = None
        self.environ: WSGIEnvironment | None = None

    def open(self, name: str | None) -> Ticket:
        """Begin counting the request under ``name``, or as routing until it is named (None)."""
        group = self._owner._group
        if name is not None:
            ticket = self.ticket = group.begin(name, self.method)
        else:
            ticket = self.ticket = group.admit(self.method)
        if self.waited is not None:
            ticket.waited_before(self.waited)
        if self.status:  # the head went out before the request was named
            ticket.respond(_code(self.status))
        return ticket

    # -- start_response ------------------------------------------------------------------------

    def start(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], object]:
        """The ``start_response`` the application gets: records the status on its way."""
        self.status = status
        ticket = self.ticket
        if ticket is not None:
            ticket.respond(_code(status))
            late = self.late
            if late is not None and self.environ is not None:
                name = late(self.environ)
                if name is not None:
                    ticket.route(name)
        return self.start_response(status, headers, exc_info)

    # -- the response iterable -----------------------------------------------------------------

    def __iter__(self) -> Iterator[bytes]:
        # Plain loops, not ``yield from``: when this generator is collected after an early
        # close(), ``yield from`` would close the inner iterable a second time. Whether the
        # server read the body to its end tells a completed response from a client that went
        # away mid-stream. The first loop runs until the first non-empty chunk has been taken
        # by the server (it asks for the next one once it has written it); the second, for
        # the rest of a streamed body, does nothing but pass chunks on.
        try:
            chunks = iter(self._inner)
            for chunk in chunks:
                yield chunk
                if chunk:
                    break
            # The first byte has been written (or an empty body ended); the ticket exists
            # from the moment the server has the iterable.
            ticket = self.ticket
            if ticket is not None:
                ticket.first_byte()
            for chunk in chunks:
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
        ticket = self.ticket
        if ticket is None:
            return
        late = self.late
        if late is not None and not ticket.routed and self.environ is not None:
            try:
                name = late(self.environ) or UNMATCHED_NAME
            except BaseException:
                ticket.finish(_FAILED)  # a naming function that raises ends nothing open
                raise
            ticket.route(name)
        error = self.error
        if error is not None:
            ticket.finish(outcome_for(error))
            return
        status = self.status
        if status:
            owner = self._owner
            failed_from = owner._failed_from
            if failed_from is not None:
                # Status lines start with three digits, so comparing the strings compares the
                # codes, without parsing an int on every request.
                if status >= failed_from:
                    ticket.finish(_FAILED)
                    return
            else:
                try:
                    failed = owner._failed(_code(status))
                except BaseException:
                    # A status rule that raises must not leave the request active forever.
                    ticket.finish(_FAILED)
                    raise
                if failed:
                    ticket.finish(_FAILED)
                    return
        ticket.finish(_OK if self._done else _CANCELLED)


def _code(status: str) -> int:
    """The status code of a WSGI status line (``"200 OK"``); 0 for a line without one."""
    code = status[:3]
    return int(code) if code.isdigit() else 0


def path_endpoint(environ: WSGIEnvironment) -> str:
    """The default endpoint name of a plain WSGI app: the request path.

    Paths are unbounded (every id makes a new name); the monitor caps distinct names at
    ``CONCMON_MAX_ENDPOINTS`` and counts the rest under ``<overflow>``. Pass ``endpoint=`` with
    a function returning route templates when the app has them.
    """
    return str(environ.get("PATH_INFO") or "/")


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
        endpoint: Callable[[WSGIEnvironment], str | None] | None = path_endpoint,
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
        self.monitor = monitor = monitor if monitor is not None else get_monitor()
        self._group = self.monitor.http
        self._endpoint = endpoint
        threshold = options.failed_status.threshold
        # The rule's threshold as text compares with a WSGI status line directly.
        self._failed_from = str(threshold) if threshold is not None else None
        self._failed = options.failed_status
        self._prefixes = options.excluded_prefixes
        header = options.request_start_header
        self._request_start = environ_key(header) if header is not None else None
        self._endpoints = MachineEndpoints(options, lambda: monitor)
        # In multi-process mode every worker publishes from its start (a worker forked from a
        # preloaded master picks this up under its own pid), so scrapes of any worker see all.
        self._endpoints.activate()
        # Paths handled before counting: the monitor's own endpoints (True), excluded (False).
        self._special: dict[str, bool] = dict.fromkeys(options.excluded, False)
        self._special.update(dict.fromkeys(self._endpoints.paths, True))
        # The Flask extension sets these two: a request class swapped by the app after
        # install is noticed with two attribute reads per request (no call).
        self._watched: Any = None
        self._request_class: Any = None

    # -- the request path -------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if ENVIRON_KEY in environ:  # an outer layer counts this request already
            return self.app(environ, start_response)
        watched = self._watched
        if watched is not None and watched.request_class is not self._request_class:
            self._request_class_changed()
        path = environ.get("PATH_INFO", "")
        special = self._special
        if special and path in special:  # the test of an empty dict spares hashing the path
            if special[path]:
                return self._serve_own(environ, start_response)
            return self.app(environ, start_response)
        if self._prefixes and path.startswith(self._prefixes):
            return self.app(environ, start_response)
        exchange = Exchange(self, start_response, environ.get("REQUEST_METHOD", ""))
        environ[ENVIRON_KEY] = exchange
        header = self._request_start
        if header is not None:
            stamp = environ.get(header)
            if stamp is not None:
                exchange.waited = seconds_waited(stamp, time.time())
        endpoint = self._endpoint
        if endpoint is not None:
            name = endpoint(environ)
            exchange.open(name)
            if name is None:  # the application routes first: counted as routing until then
                exchange.late = endpoint
                exchange.environ = environ
        # else: named once the application has matched the request
        try:
            result = self.app(environ, exchange.start)
        except BaseException as exc:
            if exchange.ticket is None:
                exchange.open(UNMATCHED_NAME)
            exchange.error = type(exc)
            exchange.end()
            raise
        if exchange.ticket is None:  # nothing named it while the application ran
            exchange.open(UNMATCHED_NAME)
        # From here the exchange holds the body, and a streamed body can hold the request and
        # its environ: the environ keeps only the mark, so that a server dropping the response
        # without close() frees the exchange at once (and ends the request) rather than leaving
        # a reference cycle for the garbage collector to find.
        environ[ENVIRON_KEY] = None
        exchange._inner = result
        return exchange

    def _request_class_changed(self) -> None:
        """Overridden by the Flask extension, which watches its app's request class."""

    # -- the monitor's own endpoints ----------------------------------------------------------

    def _serve_own(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        reply = self._endpoints.answer(
            environ.get("PATH_INFO", ""),
            environ.get("REQUEST_METHOD", "GET"),
            environ.get("REMOTE_ADDR"),
            environ.get("HTTP_AUTHORIZATION"),
            environ.get("HTTP_ACCEPT"),
            forwarded_by=forwarding_header(
                k[5:].lower().replace("_", "-") for k in environ if k[:5] == "HTTP_"
            ),
        )
        start_response(reply.status_line, list(reply.headers))
        return [reply.body]
