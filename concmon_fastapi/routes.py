"""Endpoint names for ASGI requests, told by the route the application's own router chose.

A router hands a request over by calling the chosen route's ``handle``. Each route of the
application tells the request its name at that moment: its ``handle`` is wrapped, once, by a
:class:`_Telling` that moves the request's ticket to the route's template and calls the
original. No routing rule is ever evaluated a second time, and the name is the one of the
route that really handles the request, whatever the router's rules (mounts, Host routes, a
route class with its own matching, 405s).

Templates are read once from a walk of the route tree, which only reads it (declared paths
joined to the mount and include prefixes above them). A route added after that walk is not
wrapped yet: a request it handled is named at its end from what the router recorded in the
scope (``"route"``, or ``"endpoint"`` for FastAPI's plain routes and mounts), and the walk runs
again so the next one is told. A request that no route handled (a 404, a slash redirect, an
answer from a middleware) is counted under ``<unmatched>``; until the router has chosen, it is
counted as routing.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any, Final

from concmon import UNMATCHED, Outcome, Ticket

__all__ = [
    "CATCH_ALL",
    "NAMING_KEY",
    "UNMATCHED",
    "LateNaming",
    "Naming",
    "RouteNames",
    "find_router",
]

CATCH_ALL: Final = "/{path:path}"
"""The name of every request to an application that has no router to read templates from."""

NAMING_KEY: Final = "concmon.counted"
"""Scope key holding the request's :class:`Naming` (also what tells an inner instance that
the request is counted already)."""

_MISSES_KEPT: Final = 1024
"""Objects that named nothing, remembered so that each one triggers one re-walk at most."""

Scope = MutableMapping[str, Any]

try:  # FastAPI records which inclusion of a router a request came through (a router included
    # twice serves one route object under two prefixes).
    from fastapi import routing as _fastapi_routing

    _EFFECTIVE_KEY: str | None = getattr(
        _fastapi_routing, "_FASTAPI_EFFECTIVE_ROUTE_CONTEXT_KEY", None
    )
    _IncludedRouter: type | None = getattr(_fastapi_routing, "_IncludedRouter", None)
    _iter_contexts: Any = getattr(_fastapi_routing, "iter_route_contexts", None)
except ImportError:  # plain Starlette
    _EFFECTIVE_KEY, _IncludedRouter, _iter_contexts = None, None, None


def find_router(app: Any, depth: int = 64) -> Any | None:
    """The object holding the route list under ``app`` (a Starlette/FastAPI app or router).

    Walks the ``.app`` chain that ASGI middleware keep, so it works from outside the app and
    from inside its middleware stack alike. ``None`` for an application without a router.
    """
    obj = app
    for _ in range(depth):
        if obj is None:
            return None
        routes = getattr(obj, "routes", None)
        if isinstance(routes, list):
            return obj
        obj = getattr(obj, "app", None)
    return None


class _Entry:
    """What one route object (or its endpoint) stands for: its templates, and whether a router
    below it chooses again (a mount of a router, a Host)."""

    __slots__ = ("_target", "name", "routes_below", "templates")

    def __init__(self, obj: object, routes_below: bool) -> None:
        # Held weakly where it can be, so a route and its entry make no cycle; a key whose
        # object is gone (its id reused) is told apart by ``obj``.
        try:
            self._target: Callable[[], object] = weakref.ref(obj)
        except TypeError:
            self._target = lambda: obj
        self.routes_below = routes_below
        self.templates: list[str] = []
        # The name itself when there is nothing to choose (one template, no router below).
        self.name: str | None = None

    @property
    def obj(self) -> object:
        return self._target()


class _Telling:
    """A route's ``handle``, telling the request which route it is as the router hands over.

    It holds its route weakly and finds the class's ``handle`` on each call, so a route is
    freed as it would be without concmon (no cycle through its own attribute).
    """

    __slots__ = ("_route", "entry")

    def __init__(self, route: Any, entry: _Entry) -> None:
        self._route = weakref.ref(route)
        self.entry = entry

    def __call__(self, scope: Scope, receive: Any, send: Any) -> Awaitable[None]:
        naming = scope.get(NAMING_KEY)
        if naming.__class__ is Naming:
            naming.handed(scope, self.entry)
        route: Any = self._route()
        handling: Awaitable[None] = type(route).handle(route, scope, receive, send)
        return handling  # the route's own awaitable: no frame of ours while it runs


class RouteNames:
    """The template of every route object under one router, found by walking its tree; the
    walk also makes every route it finds tell its name (see :class:`_Telling`)."""

    def __init__(self, router: Any, names: Mapping[str, str] | None = None) -> None:
        self._router = router
        self._names = dict(names or {})
        self.unmatched = self._names.get(UNMATCHED, UNMATCHED)
        self._entries: dict[int, _Entry] = {}
        self._misses: dict[int, object] = {}
        self.refresh()

    def display(self, template: str) -> str:
        return self._names.get(template, template)

    def refresh(self) -> None:
        """Walk the route tree again (routes added since are found, and told, this way)."""
        entries: dict[int, _Entry] = {}
        self._walk(self._router.routes, "", entries, 0)
        self._entries = entries
        for entry in entries.values():
            if len(entry.templates) == 1 and not entry.routes_below:
                entry.name = self.display(entry.templates[0])
            _tell(entry)

    def entry(self, obj: object) -> _Entry | None:
        """What ``obj`` (a route or an endpoint the router recorded) stands for."""
        found = self._entries.get(id(obj))
        if found is not None and found.obj is obj:
            return found
        if id(obj) in self._misses or len(self._misses) >= _MISSES_KEPT:
            return None
        self.refresh()  # a route added since the last walk
        found = self._entries.get(id(obj))
        if found is None or found.obj is not obj:
            self._misses[id(obj)] = obj
            return None
        return found

    # -- the walk (reads the tree, never matches) ----------------------------------------------

    def _walk(self, routes: Iterable[Any], prefix: str, out: dict[int, _Entry], depth: int) -> None:
        if depth > 32:
            return
        for route in routes:
            if _IncludedRouter is not None and isinstance(route, _IncludedRouter):
                for context in _iter_contexts([route]):
                    template = prefix + (context.path or "")
                    self._visit(context.original_route, template, out, depth)
                    _add(out, getattr(context, "starlette_route", None), template, None)
                continue
            path = getattr(route, "path", None)
            self._visit(route, prefix + path if isinstance(path, str) else prefix, out, depth)

    def _visit(self, route: Any, template: str, out: dict[int, _Entry], depth: int) -> None:
        """Record ``route`` (its declared path joined to the prefixes above it: ``template``)."""
        from starlette.routing import Host, Mount

        below = _routes_below(route)
        if isinstance(route, Mount) and below is None:
            template += "/{path}"  # an application of its own below the prefix
        elif not isinstance(route, (Mount, Host)) and not isinstance(
            getattr(route, "path", None), str
        ):
            template = self.unmatched  # a route without a path to name it by
        _add(out, route, template, below)
        # What FastAPI's router records of a plain route or a mount: its endpoint.
        for attr in ("endpoint", "app"):
            obj = vars(route).get(attr) if hasattr(route, "__dict__") else None
            if obj is not None:
                _add(out, obj, template, below)
        if below is not None:
            self._walk(below, template, out, depth + 1)


def _routes_below(route: Any) -> list[Any] | None:
    """The routes of the router a Mount or Host hands over to, None for any other route."""
    from starlette.routing import Host, Mount

    if not isinstance(route, (Mount, Host)):
        return None
    routes = getattr(route, "routes", None)
    return routes if isinstance(routes, list) and routes else None


def _add(out: dict[int, _Entry], obj: object, template: str, below: list[Any] | None) -> None:
    if obj is None:
        return
    entry = out.get(id(obj))
    if entry is None:
        entry = out[id(obj)] = _Entry(obj, below is not None)
    if template not in entry.templates:
        entry.templates.append(template)


def _tell(entry: _Entry) -> None:
    """Make the route of ``entry`` tell its name when handed a request (once per route)."""
    route: Any = entry.obj
    if not hasattr(route, "matches") or not hasattr(route, "__dict__"):
        return  # an endpoint, or not a route
    current = vars(route).get("handle")
    if isinstance(current, _Telling):
        current.entry = entry  # walked again: the newest templates
    elif current is None and callable(getattr(type(route), "handle", None)):
        route.handle = _Telling(route, entry)


class Naming:
    """One request's naming: its ticket, moved to the chosen route as the router hands over."""

    __slots__ = ("_names", "_pending", "_prefix", "ticket")

    def __init__(self, ticket: Ticket, names: RouteNames) -> None:
        self.ticket = ticket
        self._names = names
        self._prefix = ""  # the template of the last mount chosen on the way down
        self._pending: str | None = None  # a choice between prefixes, for lack of better

    def handed(self, scope: Scope, entry: _Entry) -> None:
        """The router handed the request to the route of ``entry``."""
        name = entry.name
        if name is None:  # a mount, or one route under several prefixes
            template = self._choose(scope, entry)
            if template is None:
                return
            name = self._names.display(template)
        self.ticket.route(name)  # only the first route told counts

    def _choose(self, scope: Scope, entry: _Entry) -> str | None:
        """The template the request is counted under, None while a router below chooses."""
        templates = entry.templates
        template = templates[0]
        if len(templates) > 1:
            # One route object under several prefixes: FastAPI names the inclusion it went
            # through, a mount the prefix it passed.
            chosen = _effective(scope, entry.obj)
            if chosen is not None:
                chosen = self._prefix + chosen
            else:
                chosen = next(
                    (t for t in templates if self._prefix and t.startswith(self._prefix)), None
                )
            if chosen is None:
                self._pending = template
                return None
            template = chosen
        if entry.routes_below:
            self._prefix = template
            return None
        return template

    def finish_name(self, scope: Scope) -> str:
        """The name of a request no route told: from what the router recorded in the scope
        (a route added after the walk), else ``<unmatched>``."""
        names = self._names
        for key in ("route", "endpoint"):
            obj = scope.get(key)
            entry = names.entry(obj) if obj is not None else None
            if entry is not None and not entry.routes_below:
                template = self._choose(scope, entry)
                if template is not None:
                    return names.display(template)
        pending = self._pending
        return names.display(pending) if pending is not None else names.unmatched


def _effective(scope: Scope, obj: object) -> str | None:
    if _EFFECTIVE_KEY is None:
        return None
    own = scope.get("fastapi")
    context = own.get(_EFFECTIVE_KEY) if isinstance(own, dict) else None
    if context is None or getattr(context, "original_route", None) is not obj:
        return None
    path = getattr(context, "path", None)
    return path if isinstance(path, str) else None


class LateNaming:
    """One request named by a ``name_for`` that could not name it yet (it answered None: the
    application's router had not chosen): asked again when the response starts, and at the
    end, when None means ``<unmatched>``."""

    __slots__ = ("_name_for", "_unmatched", "ticket")

    def __init__(
        self, ticket: Ticket, name_for: Callable[[Scope], str | None], unmatched: str
    ) -> None:
        self.ticket = ticket
        self._name_for = name_for
        self._unmatched = unmatched

    def tell(self, scope: Scope) -> None:
        """The response starts: the router has chosen by now, if it ever does."""
        name = self._name_for(scope)
        if name is not None:
            self.ticket.route(name)

    def finish_name(self, scope: Scope) -> str:
        try:
            name = self._name_for(scope)
        except BaseException:
            self.ticket.finish(Outcome.FAILED, self._unmatched)  # nothing stays active
            raise
        return name if name is not None else self._unmatched
