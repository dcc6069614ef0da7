"""``ConcMonMiddleware``: exact in-flight counting of every Django request, sync and async.

A request is counted active from the moment the middleware (first in ``MIDDLEWARE``) receives
it, as routing, and is named in ``process_view``, which Django calls right after its URL
resolver chose a pattern: the name is ``request.resolver_match.route`` (the patterns of every
``include()`` joined), or the view name with ``naming="view"``. Nothing is matched a second
time. A request that never reached a view (no pattern resolved, another middleware answered
first) is named at its end from whatever Django resolved, else ``<unmatched>``.

Django turns an exception in a view into a response (a 500, or a 404 for ``Http404``), so the
status decides the outcome; an exception that still comes out (``DEBUG_PROPAGATE_EXCEPTIONS``,
a cancelled ASGI task) ends the request once, as failed or cancelled, and goes on up. A
streaming response (``StreamingHttpResponse``, ``FileResponse``) stays active until its last
chunk is produced or the client goes: its body is handed to the server through a thin
iterator that ends the request, the way Django's documentation wraps ``streaming_content``. A
``FileResponse`` that a WSGI server sends with ``wsgi.file_wrapper`` (sendfile) keeps it, and
ends when the server closes the response.

Each request's ticket is told its method at admission, the time it queued before Django (the
proxy's ``X-Request-Start``, option ``request_start_header``), its status as the response comes
back to the middleware (the head goes out then) and its first body byte: for a plain response
that same moment (the body is whole), for a streamed one the first non-empty chunk once the
server asks for the next (it has sent that one), or the end of a body without any.

Per-request state lives on the request (the ticket) and in the body iterator, never on the
middleware object. Under an ASGI server the admission gate of :mod:`concmon.gate` can hold
requests back (``max_concurrency``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Final

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.apps import apps
from django.core.exceptions import MiddlewareNotUsed
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.urls import ResolverMatch

from concmon import UNMATCHED, Outcome, Ticket, get_monitor, outcome_for
from concmon.endpoints import TEXT, Answer, answer, forwarding_header
from concmon.request_start import environ_key, tell_waited
from concmon_django import adapter as _adapter
from concmon_django.options import Options

logger = logging.getLogger("concmon")

TICKET_ATTRIBUTE: Final = "_concmon_ticket"
"""The request attribute holding the request's ticket while it is counted (also what tells an
inner instance that the request is counted already)."""

_OK: Final = Outcome.OK
_FAILED: Final = Outcome.FAILED
_CANCELLED: Final = Outcome.CANCELLED

_warned_not_installed = False
_warned_wsgi_gate = False

GetResponse = Callable[[HttpRequest], Any]


class Namer:
    """Turns what Django's resolver chose into the endpoint name (the ``naming`` option)."""

    __slots__ = ("_names", "_view", "unmatched")

    def __init__(self, options: Options) -> None:
        self._names = options.names
        self._view = options.naming == "view"
        self.unmatched = self._names.get(UNMATCHED, UNMATCHED)

    def __call__(self, match: ResolverMatch | None) -> str:
        if match is None:
            return self.unmatched
        name = match.view_name if self._view else match.route
        if not name:
            name = "/"  # the empty pattern (the site's root) has no text to show
        names = self._names
        return names.get(name, name) if names else name


class _End:
    """The end of one streamed request: after the last chunk, or as cancelled when the server
    closes the body early (the client went away) or drops it unread."""

    __slots__ = ("_inner", "_outcome", "_release", "_ticket", "_unrouted")

    def __init__(
        self,
        inner: Any,
        ticket: Ticket,
        outcome: Outcome,
        unrouted: str,
        release: Callable[[], None] | None,
    ) -> None:
        self._inner = inner
        self._ticket: Ticket | None = ticket
        self._outcome = outcome
        self._unrouted = unrouted
        self._release = release

    def end(self, outcome: Outcome) -> None:
        ticket = self._ticket
        if ticket is None:
            return
        self._ticket = None
        try:
            ticket.finish(outcome, self._unrouted)
        finally:
            release = self._release
            if release is not None:
                release()

    def close(self) -> None:
        self.end(_CANCELLED)  # nothing left to count once the last chunk ended it

    def __del__(self) -> None:
        self.end(_CANCELLED)


class _Body(_End):
    """A synchronous streaming body (WSGI, or a sync iterator Django consumes under ASGI)."""

    __slots__ = ()

    def __iter__(self) -> Iterator[bytes]:
        # A generator resumes for less than a __next__ method costs per chunk. One never
        # started, or closed early, is ended by close() (Django's response.close() calls it)
        # or when collected: a generator's own body would not run then.
        return self._chunks()

    def _chunks(self) -> Iterator[bytes]:
        # Two plain loops (see the Flask adapter's Exchange.__iter__): the first until a
        # non-empty chunk has been taken by the server, which asks for the next one once it
        # has sent it; the second only passes chunks on.
        try:
            chunks = iter(self._inner)
            for chunk in chunks:
                yield chunk
                if chunk:
                    break
            ticket = self._ticket
            if ticket is not None:
                ticket.first_byte()
            for chunk in chunks:
                yield chunk
        except GeneratorExit:
            raise
        except BaseException as exc:
            self.end(outcome_for(type(exc)))
            raise
        self.end(self._outcome)


class _AsyncBody(_End):
    """The same for an asynchronous streaming body (served under ASGI): Django's handler asks
    for the next chunk once it has sent the last one to the server."""

    __slots__ = ()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        inner: AsyncIterator[bytes] = self._inner
        try:
            async for chunk in inner:
                yield chunk
                if chunk:
                    break
            ticket = self._ticket
            if ticket is not None:
                ticket.first_byte()
            async for chunk in inner:
                yield chunk
        except GeneratorExit:
            raise
        except BaseException as exc:
            self.end(outcome_for(type(exc)))
            raise
        self.end(self._outcome)


class _Closing:
    """Ends a request when Django closes its response (a file the server sends by sendfile)."""

    __slots__ = ("_body",)

    def __init__(self, body: _End) -> None:
        self._body = body

    def __call__(self) -> None:
        self._body.end(self._body._outcome)


class ConcMonMiddleware:
    """Counts every request Django handles; put it first in ``MIDDLEWARE``.

    Sync and async capable: Django hands it the chain in the mode the server runs (WSGI or
    ASGI) and no thread hop is added in either. When concmon is switched off (a bad option, or
    ``CONCMON_ENABLED=false``) it removes itself from the chain (``MiddlewareNotUsed``).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        global _warned_not_installed, _warned_wsgi_gate
        configured = _adapter.current()
        if configured is None:
            raise MiddlewareNotUsed("concmon is switched off")
        if not apps.is_installed("concmon_django") and not _warned_not_installed:
            _warned_not_installed = True
            logger.warning(
                "concmon_django: add 'concmon_django' to INSTALLED_APPS: without it the "
                "reporter starts on the first request instead of at start-up, and "
                "manage.py check cannot check the set-up"
            )
            configured.start()
        monitor = get_monitor()
        if not monitor.enabled:
            raise MiddlewareNotUsed("concmon is switched off")
        self.get_response = get_response
        options = configured.options
        self._adapter = configured
        self._group = monitor.http
        self._namer = Namer(options)
        self._unmatched = self._namer.unmatched
        self._by_route = options.naming == "route"
        self._names = options.names
        failed = options.failed_status
        self._failed = failed
        self._threshold = failed.threshold
        self._special: dict[str, bool] = dict.fromkeys(options.excluded, False)
        self._special.update(dict.fromkeys(configured.endpoints.paths, True))
        self._prefixes = options.excluded_prefixes
        header = options.request_start_header
        # Django keeps request headers in META under their WSGI names, under ASGI too.
        self._request_start = environ_key(header) if header is not None else None
        self._async = iscoroutinefunction(get_response)
        self.process_view: Callable[..., Any]
        if self._async:
            markcoroutinefunction(self)
            self.process_view = self._process_view_async
            self._gate = configured.gate()
        else:
            self.process_view = self._process_view
            self._gate = None
            if options.max_concurrency is not None and not _warned_wsgi_gate:
                _warned_wsgi_gate = True
                logger.warning(
                    "concmon_django: max_concurrency applies under an ASGI server only; "
                    "this WSGI deployment is not limited"
                )

    # -- naming: Django calls this right after its resolver chose ------------------------------

    def _process_view(
        self, request: HttpRequest, view: object, args: object, kwargs: object
    ) -> None:
        ticket: Ticket | None = request.__dict__.get(TICKET_ATTRIBUTE)
        if ticket is not None:
            # Namer.__call__ inlined for the default naming: once per request.
            match = request.resolver_match
            if self._by_route and match is not None:
                name = match.route or "/"
                names = self._names
                ticket.route(names.get(name, name) if names else name)
            else:
                ticket.route(self._namer(match))

    async def _process_view_async(
        self, request: HttpRequest, view: object, args: object, kwargs: object
    ) -> None:
        ticket: Ticket | None = request.__dict__.get(TICKET_ATTRIBUTE)
        if ticket is not None:
            ticket.route(self._namer(request.resolver_match))

    # -- the sync path -----------------------------------------------------------------------

    def __call__(self, request: HttpRequest) -> Any:
        if self._async:
            return self.__acall__(request)
        if TICKET_ATTRIBUTE in request.__dict__:  # counted by an outer chain already
            return self.get_response(request)
        path = request.path_info
        special = self._special
        if special and path in special:
            if special[path]:
                return _response(self._answer_own(request))
            return self.get_response(request)
        if self._prefixes and path.startswith(self._prefixes):
            return self.get_response(request)
        ticket = self._admit(request)
        try:
            response = self.get_response(request)
        except BaseException as exc:
            ticket.finish(outcome_for(type(exc)), self._namer(request.resolver_match))
            raise
        ticket.respond(response.status_code)
        if response.streaming:
            return self._stream(request, ticket, response, None)
        self._finish_whole(ticket, response.status_code)
        return response

    def _admit(self, request: HttpRequest) -> Ticket:
        """Count the request as routing (process_view names it), with the proxy's stamp."""
        ticket = self._group.admit(request.method or "")
        request.__dict__[TICKET_ATTRIBUTE] = ticket
        header = self._request_start
        if header is not None:
            stamp = request.META.get(header)
            if stamp is not None:
                tell_waited(ticket, stamp)
        return ticket

    def _finish_whole(self, ticket: Ticket, status: int) -> None:
        """A response with its whole body: the first byte goes with the head; failed by status.

        Resolved requests were routed in process_view: ``unmatched`` names the rest.
        """
        ticket.first_byte()
        threshold = self._threshold
        failed = status >= threshold if threshold is not None else self._failed(status)
        ticket.finish(_FAILED if failed else _OK, self._unmatched)

    # -- the async path ----------------------------------------------------------------------

    async def __acall__(self, request: HttpRequest) -> Any:
        get_response: Callable[[HttpRequest], Awaitable[Any]] = self.get_response
        if TICKET_ATTRIBUTE in request.__dict__:
            return await get_response(request)
        path = request.path_info
        special = self._special
        if special and path in special:
            if special[path]:
                reply = await sync_to_async(self._answer_own, thread_sensitive=False)(request)
                return _response(reply)
            return await get_response(request)
        if self._prefixes and path.startswith(self._prefixes):
            return await get_response(request)
        gate = self._gate
        if gate is not None and not gate.enter():
            rejected = await self._queue(gate, request.method or "")
            if rejected is not None:
                return rejected
        release = gate.release if gate is not None else None
        try:
            ticket = self._admit(request)
            try:
                response = await get_response(request)
            except BaseException as exc:
                ticket.finish(outcome_for(type(exc)), self._namer(request.resolver_match))
                raise
            ticket.respond(response.status_code)
            if response.streaming:
                response = self._stream(request, ticket, response, release)
            else:
                self._finish_whole(ticket, response.status_code)
        except BaseException:
            if release is not None:
                release()
            raise
        if release is not None and not response.streaming:
            release()
        return response

    async def _queue(self, gate: Any, method: str) -> HttpResponse | None:
        """Wait at the gate; None once admitted, the 503 for a request turned away.

        Django's ASGI handler cancels the request when its client hangs up: a request
        cancelled while queued leaves the queue (the gate passes on a slot handed to it).
        """
        from concmon.gate import Verdict

        monitor = get_monitor()
        name = self._namer.unmatched
        group = self._group
        arrived = group.clock()
        try:
            verdict = await gate.acquire(monitor)
        except BaseException:
            group.abandon(name, group.clock() - arrived, method)
            raise
        if verdict is Verdict.ADMITTED:
            return None
        monitor.reject(name)
        body = b"Service Unavailable: the server is at its concurrency limit\n"
        retry = str(self._adapter.options.retry_seconds)
        return _response(answer(503, body, TEXT, (("Retry-After", retry),)))

    # -- the end of a request ----------------------------------------------------------------

    def _stream(
        self,
        request: HttpRequest,
        ticket: Ticket,
        response: HttpResponseBase,
        release: Callable[[], None] | None,
    ) -> HttpResponseBase:
        """Hand a streaming response on with a body that ends the request after its last
        chunk, or when the client goes."""
        status = response.status_code
        threshold = self._threshold
        failed = status >= threshold if threshold is not None else self._failed(status)
        outcome = _FAILED if failed else _OK
        unrouted = self._unmatched
        assert isinstance(response, StreamingHttpResponse)
        closers: list[Callable[[], object]] | None = getattr(response, "_resource_closers", None)
        if (
            closers is not None
            and getattr(response, "file_to_stream", None) is not None
            and "wsgi.file_wrapper" in request.META
        ):
            # The server sends the file itself and closes the response after it; nothing of
            # the application runs between the head and the file's first byte.
            ticket.first_byte()
            closers.append(_Closing(_End(None, ticket, outcome, unrouted, release)))
            return response
        body: _Body | _AsyncBody
        if response.is_async:
            body = _AsyncBody(None, ticket, outcome, unrouted, release)
        else:
            body = _Body(None, ticket, outcome, unrouted, release)
        inner = getattr(response, "_iterator", None)
        if closers is not None and inner is not None:
            # The chunks as the response holds them: ``streaming_content`` would pass each
            # through ``make_bytes`` a second time, which costs more than the counting. The
            # response closes the body as it closes its own resources.
            body._inner = inner
            chunks = body if isinstance(body, _AsyncBody) else iter(body)
            setattr(response, "_iterator", chunks)  # noqa: B010 - not in Django's stubs
            closers.append(body.close)
        else:  # the documented way, for a response class without those
            body._inner = response.streaming_content
            response.streaming_content = body
        return response

    # -- the machine endpoints ---------------------------------------------------------------

    def _answer_own(self, request: HttpRequest) -> Answer:
        meta = request.META
        return self._adapter.endpoints.answer(
            request.path_info,
            request.method or "GET",
            meta.get("REMOTE_ADDR"),
            meta.get("HTTP_AUTHORIZATION"),
            meta.get("HTTP_ACCEPT"),
            forwarded_by=forwarding_header(
                k[5:].lower().replace("_", "-") for k in meta if k[:5] == "HTTP_"
            ),
        )


def _response(reply: Answer) -> HttpResponse:
    response = HttpResponse(reply.body, status=reply.status)
    for key, value in reply.headers:
        response[key] = value
    return response


__all__ = ["TICKET_ATTRIBUTE", "ConcMonMiddleware", "Namer"]
