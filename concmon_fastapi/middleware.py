"""``ConcMonMiddleware``: exact in-flight counting around any ASGI application.

A request is active from the moment the middleware receives it until the last body chunk has
been sent, the application raised, or the client went away. Everything a single request needs
lives in its own :class:`_Exchange` (the core's ticket among it); the middleware object holds
configuration and caches only, so interleaved requests can never mix their data, and a stack
built twice (or two instrumented applications, one mounted in the other) counts each request
once: the first instance to see a request marks its scope and every later one passes it
straight through.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final, TypedDict, Unpack

import anyio

from concmon import (
    ConcurrencyMonitor,
    ConfigError,
    EndpointGroup,
    Outcome,
    Ticket,
    get_monitor,
    hold_monitor,
    init_monitor,
    outcome_for,
    release_monitor,
)
from concmon.adapter_options import FailedStatus
from concmon.endpoints import TEXT, Answer, MachineEndpoints, answer, forwarding_header
from concmon.request_start import tell_waited
from concmon_fastapi.background import count_background_tasks
from concmon_fastapi.gate import AdmissionGate, ClientWatch, Verdict
from concmon_fastapi.options import Options, Scope
from concmon_fastapi.probe import start_probe, stop_probe
from concmon_fastapi.routes import (
    CATCH_ALL,
    NAMING_KEY,
    UNMATCHED,
    LateNaming,
    Naming,
    RouteNames,
    find_router,
)

logger = logging.getLogger("concmon")

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SCOPE_MARK: Final = NAMING_KEY
"""Scope key set by the instance that counts a request; later instances pass it through."""

_OK = Outcome.OK
_FAILED = Outcome.FAILED
_CANCELLED = Outcome.CANCELLED

_CAUSES_WALKED: Final = 8
"""How far down an exception's causes (and groups) the client's departure is looked for."""


class InstallOptions(TypedDict, total=False):
    """Keyword options of :func:`install` and :class:`ConcMonMiddleware` (docs/fastapi.md)."""

    exclude_paths: list[str] | tuple[str, ...] | frozenset[str] | set[str] | str
    names: dict[str, str]
    name_for: Callable[[Scope], str | None] | None
    failed_status: int | Callable[[int], bool] | None
    max_concurrency: int | None
    max_queue: int | None
    queue_timeout: float | None
    retry_after: int | None
    json_path: str | bool | None
    prometheus: bool
    metrics_path: str | None
    metrics_token: str | None
    metrics_allow: list[str] | tuple[str, ...] | str | None
    loop_lag_interval: float | None


class MiddlewareState:
    """What every instance built from one ``install()`` shares: options, gate and endpoints.

    Starlette builds its middleware stack lazily and may build it again; sharing this object
    keeps one admission gate, not one per build.
    """

    def __init__(self, options: Options) -> None:
        self.options = options
        self.gate = (
            AdmissionGate(options.max_concurrency, options.max_queue, options.queue_timeout)
            if options.max_concurrency is not None
            else None
        )
        self.endpoints = MachineEndpoints(options)
        self.started = False
        # Whether this app holds the process monitor (hold_monitor), and the lock for it.
        self.holding = False
        self.holding_lock = threading.Lock()
        self.startup_error: ConfigError | None = None
        self.monitor: ConcurrencyMonitor | None = None
        # The monitor's HTTP group while started, None otherwise: the one test per request.
        self.group: EndpointGroup | None = None


class _Exchange:
    """One HTTP request: its ticket, the server's ``send`` and ``receive``, the response status.

    ``pending`` is True until the first byte of the body has gone out: the head's moment is
    told to the ticket as the application sends it, the first byte's once the server's
    ``send`` returned (a client already gone makes it raise: no first byte).
    """

    __slots__ = ("_failed", "_receive", "_send", "late", "pending", "scope", "status", "ticket")

    def __init__(
        self, ticket: Ticket, scope: Scope, send: Send, receive: Receive, failed: FailedStatus
    ) -> None:
        self.ticket = ticket
        self.scope = scope
        self._send = send
        self._receive = receive
        self._failed = failed
        self.status = 0
        self.pending = True
        self.late: LateNaming | None = None  # named once the response starts (name_for)

    def finish(self, outcome: Outcome) -> None:
        _close(self.ticket, self.scope, outcome)

    def send(self, message: Message) -> Awaitable[None]:
        # Not a coroutine: every message but the first body chunk and the last is handed to the
        # server's own send and its awaitable returned as it is, so a streamed chunk costs no
        # frame of ours. If that send raises because the client is gone, the error travels up
        # through the application to ``__call__`` (see ``_outcome``).
        kind = message["type"]
        if kind == "http.response.body":
            if message.get("more_body", False):
                if self.pending and message.get("body"):
                    return self._first(message)
                return self._send(message)
            return self._last(message)
        if kind == "http.response.start":
            status = self.status = message["status"]
            self.ticket.respond(status)
            late = self.late
            if late is not None:
                late.tell(self.scope)
        elif kind == "http.response.pathsend":
            return self._last(message)
        return self._send(message)

    async def _first(self, message: Message) -> None:
        await self._send(message)
        self.pending = False
        self.ticket.first_byte()

    async def _last(self, message: Message) -> None:
        await self._send(message)
        if self.pending:  # the whole body went in this message, or it ended empty
            self.pending = False
            self.ticket.first_byte()
        rule = self._failed
        # Compared here, not by calling the rule: that call adds 9 % to the adapter's instructions.
        failed = self.status >= rule.threshold if rule.threshold is not None else rule(self.status)
        self.finish(_FAILED if failed else _OK)

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self.finish(_CANCELLED)  # a no-op once the response is complete
        return message


def _hold(state: MiddlewareState) -> ConcurrencyMonitor:
    """What blocks (plugins looked up, files opened, the reporter started): never on the loop.
    Held once per start, released by ``_stop``: another app's monitor keeps running."""
    with state.holding_lock:
        monitor = init_monitor() if state.holding else hold_monitor()
        state.holding = True
    state.endpoints.activate()
    return monitor


def _close(ticket: Ticket, scope: Scope, outcome: Outcome) -> None:
    naming: Naming | LateNaming | None = scope.get(SCOPE_MARK)
    kind = naming.__class__
    if (
        naming is not None
        and (kind is Naming or kind is LateNaming)
        and not ticket.routed
        and ticket.open
    ):
        ticket.finish(outcome, naming.finish_name(scope))  # no route told its name
    else:
        ticket.finish(outcome)  # a no-op once closed


def _outcome(exchange: _Exchange, exc: BaseException) -> Outcome:
    """How a request ended that raised ``exc`` out of the application.

    An ``OSError`` raised inside the server's ``send`` is the client going away: cancelled,
    also when the application turned it into an error of its own on the way up (Starlette
    raises ``ClientDisconnect`` from it) or gathered it into an exception group (a task group
    whose task was streaming). Any other ``OSError`` (an upstream connection refused, say) is
    the application's failure. The traceback tells them apart: it holds every frame the error
    passed through, the server's ``send`` among them if it came from there. Only the error
    path pays for the walk.
    """
    if exchange.status and _client_gone(exc, _code_of(exchange._send)):
        return _CANCELLED
    return outcome_for(type(exc))


def _client_gone(exc: BaseException, code: object, depth: int = 0) -> bool:
    error: BaseException | None = exc
    for _ in range(_CAUSES_WALKED):
        if error is None:
            return False
        if isinstance(error, OSError) and _passed_through(error, code):
            return True
        if (
            isinstance(error, BaseExceptionGroup)
            and depth < _CAUSES_WALKED
            and any(_client_gone(member, code, depth + 1) for member in error.exceptions)
        ):
            return True
        error = error.__cause__ or error.__context__
    return False


def _passed_through(error: BaseException, code: object) -> bool:
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code is code:
            return True
        tb = tb.tb_next
    return False


def _code_of(func: object) -> object:
    func = getattr(func, "__func__", func)
    code = getattr(func, "__code__", None)
    if code is None:  # a callable object: its __call__ method
        code = getattr(type(func).__call__, "__code__", None) if callable(func) else None
    return code


class ConcMonMiddleware:
    """Pure ASGI middleware counting every HTTP request and WebSocket of ``app``.

    Usable around any ASGI application; ``install(app)`` adds it to a FastAPI or Starlette
    app. On the lifespan startup it starts the process monitor (``concmon.init_monitor``) and
    the event-loop probe, and on shutdown it flushes the final report; lifespan messages pass
    through untouched, and without lifespan everything starts on the first request.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        state: MiddlewareState | None = None,
        **options: Unpack[InstallOptions],
    ) -> None:
        self.app = app
        if state is None:
            state = MiddlewareState(Options.parse(options))
        elif options:
            raise ConfigError("concmon_fastapi: pass either state= or options, not both")
        self._state = state
        opts = state.options
        # Own paths (True) and excluded ones (False): one look-up per request for both.
        self._special: dict[str, bool] = dict.fromkeys(opts.excluded, False)
        self._special.update(dict.fromkeys(state.endpoints.paths, True))
        self._prefixes = opts.excluded_prefixes
        self._failed = opts.failed_status
        self._name_for = opts.name_for
        self._gate = state.gate
        self._names: RouteNames | None = None
        self._router = find_router(app) if opts.name_for is None else None
        self._fixed_name = opts.names.get(CATCH_ALL, CATCH_ALL)
        header = opts.request_start_header
        self._request_start = header.encode("latin-1") if header is not None else None

    # -- starting and stopping ------------------------------------------------------------------

    async def _start(self) -> ConcurrencyMonitor:
        """At lifespan startup: the blocking part in a worker thread, awaited."""
        return self._started(await anyio.to_thread.run_sync(_hold, self._state))

    def _start_lazily(self) -> ConcurrencyMonitor:
        """On the first request of a server without lifespan: count it at once and start the
        reporting in a thread of its own. Waiting for it here would stall the loop, or reorder
        the application's own tasks."""
        monitor = self._started(get_monitor())
        # The thread holds the shared state only, not this middleware: the app it wraps stays
        # free to go while the reporting starts.
        thread = threading.Thread(target=_hold, args=(self._state,), name="concmon-start")
        thread.daemon = True
        thread.start()
        return monitor

    def _started(self, monitor: ConcurrencyMonitor) -> ConcurrencyMonitor:
        state = self._state
        if state.options.max_concurrency is not None:
            monitor.max_concurrency = state.options.max_concurrency
        count_background_tasks()
        interval = state.options.loop_lag_interval
        if interval is not None:
            start_probe(interval)
        state.monitor = monitor
        state.group = monitor.http
        state.started = True
        return monitor

    def _monitor(self) -> ConcurrencyMonitor:
        state = self._state
        monitor = state.monitor
        if monitor is None or not state.started:
            monitor = self._start_lazily()
        return monitor

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self._state

        async def lifespan_send(message: Message) -> None:
            kind = message["type"]
            if kind in (
                "lifespan.shutdown.complete",
                "lifespan.shutdown.failed",
                "lifespan.startup.failed",
            ):
                await self._stop()
            await send(message)

        try:
            await self._start()
        except ConfigError as exc:
            state.startup_error = exc
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        await self.app(scope, receive, lifespan_send)

    async def _stop(self) -> None:
        state = self._state
        if not state.started:
            return
        state.started = False
        state.group = None
        await stop_probe()
        with state.holding_lock:
            holding, state.holding = state.holding, False
        if holding:
            await anyio.to_thread.run_sync(release_monitor)

    # -- names ------------------------------------------------------------------------------

    def _route_names(self) -> RouteNames | None:
        """The router's templates, None when requests are named otherwise (``name_for``, or
        an application without a router)."""
        names = self._names
        if names is None and self._router is not None:
            names = self._names = RouteNames(self._router, self._state.options.names)
        return names

    def _fixed(self, scope: Scope) -> str | None:
        name_for = self._name_for
        return name_for(scope) if name_for is not None else self._fixed_name

    def _admit(self, group: EndpointGroup, scope: Scope) -> Ticket:
        """The request's ticket; with a router, counted as routing until its route tells, and
        so with a ``name_for`` that cannot name it yet (it answered None)."""
        names = self._route_names()
        method = scope.get("method", "")
        if names is None:
            name = self._fixed(scope)
            if name is not None:
                return group.begin(name, method)
            ticket = group.admit(method)
            assert self._name_for is not None
            scope[SCOPE_MARK] = LateNaming(ticket, self._name_for, UNMATCHED)
            return ticket
        ticket = group.admit(method)
        scope[SCOPE_MARK] = Naming(ticket, names)
        return ticket

    # -- the ASGI interface -----------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or SCOPE_MARK in scope:
            return await self._other(scope, receive, send)
        scope[SCOPE_MARK] = True
        special = self._special.get(scope["path"])
        if special is not None:
            if special:
                return await self._serve_own(scope, send)
            return await self.app(scope, receive, send)
        if self._prefixes and scope["path"].startswith(self._prefixes):
            return await self.app(scope, receive, send)
        group = self._state.group
        if group is None:
            group = self._start_lazily().http
        gate = self._gate
        if gate is not None and not gate.enter():
            queued = await self._queue(gate, group, scope, receive, send)
            if queued is None:
                return None
            receive = queued
        try:
            ticket = self._admit(group, scope)
            header = self._request_start
            if header is not None:
                for key, value in scope.get("headers", ()):
                    if key == header:
                        tell_waited(ticket, value)
                        break
            exchange = _Exchange(ticket, scope, send, receive, self._failed)
            if self._name_for is not None:
                late = scope[SCOPE_MARK]
                if late.__class__ is LateNaming:
                    exchange.late = late
            try:
                await self.app(scope, exchange.receive, exchange.send)
            except BaseException as exc:
                exchange.finish(_outcome(exchange, exc))
                raise
            # Returned without completing the response: the server answers 500 or cuts the
            # connection; the client did not get what it asked for.
            exchange.finish(_FAILED)  # a no-op when the response was completed
        finally:
            if gate is not None:
                gate.release()

    async def _queue(
        self, gate: AdmissionGate, group: EndpointGroup, scope: Scope, receive: Receive, send: Send
    ) -> Receive | None:
        """Wait at the gate: once admitted, the ``receive`` the application reads (what was
        read while queued comes first); None for a request that never goes in, turned away
        with a 503 or its client gone."""
        monitor = self._monitor()
        # A client waiting for "100 Continue" would be told to send its body by a read.
        watch = None if _header(scope, b"expect") else ClientWatch(receive)
        arrived = group.clock()
        verdict = await gate.acquire(monitor, watch)
        if verdict is Verdict.ADMITTED:
            return receive if watch is None else watch.receive
        # Never routed: counted under the name no route handled.
        names = self._route_names()
        name = names.unmatched if names is not None else (self._fixed(scope) or UNMATCHED)
        if verdict is Verdict.REJECTED:
            monitor.reject(name)
            await self._reject(send)
        else:  # left while queued: ended cancelled without ever being active
            group.abandon(name, group.clock() - arrived, scope.get("method", ""))
        return None

    async def _other(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if SCOPE_MARK in scope:
            return await self.app(scope, receive, send)
        if kind == "websocket":
            scope[SCOPE_MARK] = True
            return await self._websocket(scope, receive, send)
        if kind == "lifespan":
            return await self._lifespan(scope, receive, send)
        return await self.app(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        monitor = self._state.monitor
        if monitor is None or not self._state.started:
            monitor = self._monitor()
        ticket = self._admit(monitor.websocket, scope)
        try:
            await self.app(scope, receive, send)
        except BaseException as exc:
            _close(ticket, scope, _websocket_outcome(exc))
            raise
        _close(ticket, scope, _OK)

    async def _reject(self, send: Send) -> None:
        retry = str(self._state.options.retry_seconds)
        body = b"Service Unavailable: the server is at its concurrency limit\n"
        await _send_answer(send, answer(503, body, TEXT, (("Retry-After", retry),)))

    # -- the machine endpoints --------------------------------------------------------------

    async def _serve_own(self, scope: Scope, send: Send) -> None:
        if not self._state.started:
            self._monitor()
        client = scope.get("client")
        names = (bytes(k).decode("latin-1").lower() for k, _ in scope.get("headers", ()))
        reply = await anyio.to_thread.run_sync(
            functools.partial(self._state.endpoints.answer, forwarded_by=forwarding_header(names)),
            scope["path"],
            scope["method"],
            client[0] if client else None,
            _header(scope, b"authorization"),
            _header(scope, b"accept"),
        )
        await _send_answer(send, reply)


def _websocket_outcome(exc: BaseException) -> Outcome:
    if type(exc).__name__ == "WebSocketDisconnect":
        return _CANCELLED  # the client went away while the app was still using the socket
    return outcome_for(type(exc))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def _send_answer(send: Send, reply: Answer) -> None:
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body, "more_body": False})


__all__ = ["SCOPE_MARK", "ConcMonMiddleware", "InstallOptions", "MiddlewareState"]
