"""Endpoint names for ASGI requests, read from the choice the application's own router made.

Starlette's and FastAPI's routers record their choice in the scope as they hand a request
over: the chosen route under ``"route"`` (Starlette's router, FastAPI's own routes) and what
handles it under ``"endpoint"`` (both; FastAPI's router records only this for plain routes and
mounts). The application is handed a :class:`RoutedScope`, a plain ``dict`` that notices these
two writes, so a request is named by the route that really handles it, at the moment it is
handed over, and no routing rule is ever evaluated a second time.

A route object is turned into its template once, from a walk of the route tree that only reads
it (mount and include prefixes joined to each route's ``path_format``). A request that no route
handled (a 404, a slash redirect, an answer from a middleware) is counted under
``<unmatched>``; until the router has chosen, it is counted as routing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, Final

from concmon import UNMATCHED, Ticket

__all__ = ["CATCH_ALL", "UNMATCHED", "Naming", "RouteNames", "RoutedScope", "find_router"]

CATCH_ALL: Final = "/{path:path}"
"""The name of every request to an application that has no router to read templates from."""

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

    __slots__ = ("obj", "routes_below", "templates")

    def __init__(self, obj: object, routes_below: bool) -> None:
        self.obj = obj  # kept alive, so its id is never reused while it is a key
        self.routes_below = routes_below
        self.templates: list[str] = []


class RouteNames:
    """The template of every route object under one router, found by walking its tree."""

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
        """Walk the route tree again (routes added after ``install`` are found this way)."""
        entries: dict[int, _Entry] = {}
        self._walk(self._router.routes, "", entries, 0)
        self._entries = entries

    def entry(self, obj: object) -> _Entry | None:
        """What ``obj`` (a route or an endpoint the router handed over) stands for."""
        found = self._entries.get(id(obj))
        if found is not None or id(obj) in self._misses or len(self._misses) >= _MISSES_KEPT:
            return found
        self.refresh()  # a route added since the last walk
        found = self._entries.get(id(obj))
        if found is None:
            self._misses[id(obj)] = obj
        return found

    # -- the walk (reads the tree, never matches) ----------------------------------------------

    def _walk(self, routes: Iterable[Any], prefix: str, out: dict[int, _Entry], depth: int) -> None:
        if depth > 32:
            return
        for route in routes:
            if _IncludedRouter is not None and isinstance(route, _IncludedRouter):
                for context in _iter_contexts([route]):
                    original = context.original_route
                    self._visit(original, prefix + (context.path or ""), out, depth)
                    _add(
                        out, getattr(context, "starlette_route", None), prefix + context.path, None
                    )
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
        self._add_endpoint(out, route, template, below)
        if below is not None:
            self._walk(below, template, out, depth + 1)

    def _add_endpoint(
        self, out: dict[int, _Entry], route: Any, template: str, below: list[Any] | None
    ) -> None:
        # FastAPI's router hands plain routes and mounts over by their endpoint alone.
        for attr in ("endpoint", "app"):
            obj = route.__dict__.get(attr) if hasattr(route, "__dict__") else None
            if obj is not None and not isinstance(obj, (str, int, float)):
                _add(out, obj, template, below)


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


class Naming:
    """One request's naming: its ticket, moved to the chosen route as the router hands over."""

    __slots__ = ("_names", "_pending", "_prefix", "ticket")

    def __init__(self, ticket: Ticket, names: RouteNames) -> None:
        self.ticket = ticket
        self._names = names
        self._prefix = ""  # the template of the last mount chosen on the way down
        self._pending: str | None = None  # a choice between inclusions, for lack of better

    def handed(self, scope: Scope, obj: object) -> None:
        """The router handed the request to ``obj`` (a route, or an endpoint)."""
        if self.ticket.routed:
            return
        names = self._names
        entry = names.entry(obj)
        if entry is None:
            path = getattr(obj, "path", None)
            if isinstance(path, str):  # a route the walk could not see (made by the router)
                self.ticket.route(names.display(self._prefix + path))
            return
        templates = entry.templates
        template = templates[0]
        if len(templates) > 1:
            # One route object under several prefixes: FastAPI names the inclusion it went
            # through, a mount the prefix it passed.
            chosen = _effective(scope, obj)
            if chosen is not None:
                chosen = self._prefix + chosen
            else:
                chosen = next(
                    (t for t in templates if self._prefix and t.startswith(self._prefix)), None
                )
            if chosen is None:
                self._pending = template
                return
            template = chosen
        if entry.routes_below:
            self._prefix = template
            return
        self.ticket.route(names.display(template))

    def finish_name(self) -> str:
        """The name a request that was never routed is counted under."""
        pending = self._pending
        return self._names.display(pending) if pending is not None else self._names.unmatched


def _effective(scope: Scope, obj: object) -> str | None:
    if _EFFECTIVE_KEY is None:
        return None
    own = scope.get("fastapi")
    context = own.get(_EFFECTIVE_KEY) if isinstance(own, dict) else None
    if context is None or getattr(context, "original_route", None) is not obj:
        return None
    path = getattr(context, "path", None)
    return path if isinstance(path, str) else None


class RoutedScope(dict[str, Any]):
    """The scope as the application sees it: an ordinary ``dict`` that notices the router's
    choice. Only ``__setitem__`` and ``update`` are its own, the two ways routers record it."""

    __slots__ = ("naming",)

    naming: Naming

    def __setitem__(self, key: str, value: Any) -> None:
        dict.__setitem__(self, key, value)
        if key == "route":
            self.naming.handed(self, value)

    def update(self, other: Any = (), /, **more: Any) -> None:
        dict.update(self, other, **more)
        if type(other) is dict:  # what the routers pass: their child scope
            route = other.get("route")
            if route is not None:
                self.naming.handed(self, route)
            else:
                endpoint = other.get("endpoint")
                if endpoint is not None:
                    self.naming.handed(self, endpoint)
