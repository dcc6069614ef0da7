"""Endpoint names for ASGI requests: the route template, found once, at the start of a request.

The name has to be known when a request begins (it is the key its counters live under until it
ends), which is before the application's router has run. Running the router's own matching a
second time would cost several microseconds per request, so the route tree is compiled once
into a :class:`RouteTable` that reproduces the router's choice:

* paths of routes without parameters go into one dictionary per method, checked against every
  route declared before them, so the common case is two dictionary lookups;
* everything else walks precompiled regular expressions in routing order, descending into
  mounted routers, with Starlette's rules: the first full match wins, a path that matches with
  the wrong method is remembered (it answers 405) unless a later route matches fully, and a
  mount captures every path under its prefix (a 404 under a mount is ``<unmatched>``).

Route classes whose ``matches`` is their own are asked directly, so custom routing stays
exact. A table is rebuilt when the application's route list grows (checked only when a path
found no route, so the hot path pays nothing for it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any, Final

UNMATCHED: Final = "<unmatched>"
"""The one name every path that no route matches is counted under."""

CATCH_ALL: Final = "/{path:path}"
"""The name of every request to an application that has no router to read templates from."""

_HTTP_METHODS: Final = (
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "PATCH",
    "OPTIONS",
    "TRACE",
    "CONNECT",
    "QUERY",
)
_WS: Final = "websocket"

PATH_CACHE_SIZE: Final = 2048
"""Parameterised paths remembered per method, on top of the paths without parameters."""

_CACHED_PATH_MAX: Final = 256
"""Longer paths are resolved every time rather than kept."""

Scope = MutableMapping[str, Any]

# One compiled step of the routing walk. kind: "http" / "websocket" route, "mount" (a router
# below a prefix, payload: its _Level), "opaque" (a mounted application we cannot see into),
# "dynamic" (a route class with its own matching, payload: the route, asked directly).
_Entry = tuple[str, "re.Pattern[str] | None", "frozenset[str] | None", str, Any]


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


def _route_path(scope: Scope) -> str:
    # Starlette matches against the path below root_path (get_route_path).
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    if path == root:
        return ""
    if path[len(root)] == "/":
        return path[len(root) :]
    return path


class RouteTable:
    """The compiled route tree of one router; ``name(scope)`` is the request's endpoint name."""

    def __init__(self, router: Any, names: Mapping[str, str] | None = None) -> None:
        self._router = router
        self._names = dict(names or {})
        self._unmatched = self._names.get(UNMATCHED, UNMATCHED)
        self._size = -1
        self._root = _Level([])
        # Per method: the paths without parameters (fixed at compile time) and ``_known``, the
        # same plus the parameterised paths seen lately (see ``_remember``).
        self._static: dict[str, dict[str, str]] = {}
        self._known: dict[str, dict[str, str]] = {}
        self._known_limit: dict[str, int] = {}
        self.compile()

    def _display(self, template: str) -> str:
        return self._names.get(template, template)

    def compile(self) -> None:
        """(Re)build the table from the router's current routes."""
        routes = list(self._router.routes)
        self._size = len(self._router.routes)
        self._root = self._compile_level(routes, "")
        self._static = {}
        self._known = {}
        self._known_limit = {}
        if self._root.dynamic:
            return  # a route that decides by itself may claim any path: always walk
        statics: list[str] = []
        self._collect_static(self._root, "", statics)
        for method in (*_HTTP_METHODS, _WS):
            found: dict[str, str] = {}
            for path in statics:
                name = self._walk(self._root, path, method, None)
                if name is not None and name != self._unmatched:
                    found[path] = name
            self._static[method] = found
            self._known[method] = dict(found)
            self._known_limit[method] = len(found) + PATH_CACHE_SIZE

    # -- compiling ------------------------------------------------------------------------------

    def _compile_level(self, routes: Iterable[Any], prefix: str) -> _Level:
        from starlette import routing as sr

        try:
            from fastapi import routing as fr

            flatten: Callable[[Any], Iterable[Any]] | None = getattr(
                fr, "iter_route_contexts", None
            )
            own_matches: tuple[Any, ...] = (
                sr.Route.matches,
                sr.WebSocketRoute.matches,
                sr.Mount.matches,
                fr.APIRoute.matches,
                fr.APIWebSocketRoute.matches,
            )
            included: type | None = getattr(fr, "_IncludedRouter", None)
        except ImportError:  # plain Starlette
            flatten, included = None, None
            own_matches = (sr.Route.matches, sr.WebSocketRoute.matches, sr.Mount.matches)

        entries: list[_Entry] = []
        for route in routes:
            if included is not None and flatten is not None and isinstance(route, included):
                # A FastAPI router included with a prefix stays nested; its public flattened
                # view gives every effective route with the prefix applied.
                for context in flatten([route]):
                    entries.extend(
                        self._compile_one(context, context.original_route, prefix, own_matches, sr)
                    )
                continue
            entries.extend(self._compile_one(route, route, prefix, own_matches, sr))
        return _Level(entries)

    def _compile_one(
        self, route: Any, original: Any, prefix: str, own_matches: tuple[Any, ...], sr: Any
    ) -> list[_Entry]:
        matches = getattr(type(original), "matches", None)
        regex = getattr(route, "path_regex", None)
        path = getattr(route, "path", None)
        if matches not in own_matches or regex is None or not isinstance(path, str):
            label = self._display(prefix + path) if isinstance(path, str) else self._unmatched
            return [("dynamic", None, None, label, route)]
        template = prefix + path
        if isinstance(original, sr.Mount):
            sub = getattr(route, "routes", None)
            if sub:
                return [("mount", regex, None, self._unmatched, self._compile_level(sub, template))]
            return [("opaque", regex, None, self._display(template + "/{path}"), None)]
        if isinstance(original, sr.WebSocketRoute):
            return [("websocket", regex, None, self._display(template), None)]
        methods = getattr(route, "methods", None)
        return [
            ("http", regex, frozenset(methods) if methods else None, self._display(template), None)
        ]

    def _collect_static(self, level: _Level, prefix: str, out: list[str]) -> None:
        for kind, regex, _methods, _label, payload in level.entries:
            if kind in ("http", "websocket") and regex is not None:
                pattern = regex.pattern
                literal = pattern[1:-1] if pattern.startswith("^") and pattern.endswith("$") else ""
                if literal and re.escape(_unescape(literal)) == literal:
                    out.append(prefix + _unescape(literal))
            elif kind == "mount" and regex is not None:
                head = regex.pattern
                tail = "/(?P<path>.*)$"
                if head.startswith("^") and head.endswith(tail):
                    literal = head[1 : -len(tail)]
                    if re.escape(_unescape(literal)) == literal:
                        self._collect_static(payload, prefix + _unescape(literal), out)

    # -- resolving ------------------------------------------------------------------------------

    def name(self, scope: Scope) -> str:
        """The endpoint name of an ``http`` or ``websocket`` scope."""
        method = scope["method"] if scope["type"] == "http" else _WS
        path = _route_path(scope) if scope.get("root_path") else scope["path"]
        known = self._known.get(method)
        if known is not None:
            found = known.get(path)
            if found is not None:
                return found
        # The top level's combined expression answers directly for every route that is not a
        # mount: the matching branch's group number indexes its label.
        name: str | None = None
        fast = self._root.fast.get(method)
        if fast is not None:
            m = fast[0](path)
            if m is not None:
                name = fast[1][m.lastindex]  # type: ignore[index]
        if name is None:
            name = self._walk(self._root, path, method, scope)
            if name is None:
                if len(self._router.routes) != self._size:
                    self.compile()
                    name = self._walk(self._root, path, method, scope)
                if name is None:
                    return self._unmatched
        if known is not None and len(path) <= _CACHED_PATH_MAX:
            self._remember(known, method, path, name)
        return name

    def _remember(self, known: dict[str, str], method: str, path: str, name: str) -> None:
        # Paths with parameters repeat (the same model, the same user): the next request to
        # one costs a dictionary look-up instead of a match. Bounded: when the cache is full
        # it starts again from the static paths, so a scanner walking random ids cannot grow
        # it. Unmatched paths are never kept.
        if len(known) >= self._known_limit[method]:
            known.clear()
            known.update(self._static[method])
        known[path] = name

    def _walk(self, level: _Level, path: str, method: str, scope: Scope | None) -> str | None:
        """The name Starlette's router would reach, or None when nothing matched at all."""
        combined = level.by_method.get(method)
        if combined is None:
            return self._walk_linear(level, path, method, scope)
        m = combined.match(path)
        if m is not None:
            kind, regex, _methods, label, payload = level.entries[int(m.lastgroup[2:])]  # type: ignore[index]
            if kind != "mount":
                return label
            found = self._descend(regex, payload, path, method, scope)
            return found if found is not None else label
        if method == _WS:
            return None
        m = level.any_method.match(path)  # only a route with other methods: 405
        if m is None:
            return None
        return level.entries[int(m.lastgroup[2:])][3]  # type: ignore[index]

    def _descend(
        self,
        regex: re.Pattern[str] | None,
        level: _Level,
        path: str,
        method: str,
        scope: Scope | None,
    ) -> str | None:
        assert regex is not None
        m = regex.match(path)
        assert m is not None
        return self._walk(level, "/" + m.group("path"), method, scope)

    def _walk_linear(
        self, level: _Level, path: str, method: str, scope: Scope | None
    ) -> str | None:
        partial: str | None = None
        is_ws = method == _WS
        for kind, regex, methods, label, payload in level.entries:
            if kind == "dynamic":
                if scope is None:
                    continue  # cannot be precomputed: never part of the static table
                match_kind = _ask(payload, scope)
                if match_kind == 2:
                    return label
                if match_kind == 1 and partial is None:
                    partial = label
                continue
            assert regex is not None
            if kind == "http":
                if is_ws or regex.match(path) is None:
                    continue
                if methods is None or method in methods:
                    return label
                if partial is None:
                    partial = label
            elif kind == "websocket":
                if is_ws and regex.match(path) is not None:
                    return label
            elif regex.match(path) is not None:
                if kind == "opaque":
                    return label
                found = self._descend(regex, payload, path, method, scope)
                return found if found is not None else label
        return partial


class _Level:
    """The routes of one router, plus one combined expression per method.

    The combined expression of a method holds, in routing order, every route that fully
    matches that method and every mount, so its first match is exactly the route Starlette's
    loop would stop at; a separate expression of all HTTP routes finds the 405 case. Levels
    with a route that decides by itself are walked one route at a time.
    """

    def __init__(self, entries: list[_Entry]) -> None:
        self.entries = entries
        self.dynamic = any(
            kind == "dynamic" or (kind == "mount" and payload.dynamic)
            for kind, _r, _m, _l, payload in entries
        )
        self.by_method: dict[str, re.Pattern[str]] = {}
        self.fast: dict[str, tuple[Callable[[str], re.Match[str] | None], list[str | None]]] = {}
        self.any_method = re.compile("(?!)")
        if any(kind == "dynamic" for kind, *_ in entries):
            return
        for method in (*_HTTP_METHODS, _WS):
            chosen = [
                i
                for i, (kind, _r, methods, _l, _p) in enumerate(entries)
                if kind in ("mount", "opaque")
                or (kind == "websocket" and method == _WS)
                or (kind == "http" and method != _WS and (methods is None or method in methods))
            ]
            combined = self.by_method[method] = _combine((i, entries[i][1]) for i in chosen)
            # Group k of the combined expression is the k-th chosen route (inner groups are
            # made non-capturing), so match.lastindex finds its label; None for a mount.
            labels: list[str | None] = [None]
            labels.extend(None if entries[i][0] == "mount" else entries[i][3] for i in chosen)
            self.fast[method] = (combined.match, labels)
        self.any_method = _combine(
            (i, regex) for i, (kind, regex, *_rest) in enumerate(entries) if kind == "http"
        )


_NAMED_GROUP = re.compile(r"\(\?P<[A-Za-z_][A-Za-z0-9_]*>")


def _combine(items: Iterable[tuple[int, re.Pattern[str] | None]]) -> re.Pattern[str]:
    """One alternation; the matching branch's index is in ``match.lastgroup`` (``_r<i>``)."""
    branches = []
    for index, regex in items:
        assert regex is not None
        body = regex.pattern
        body = body.removeprefix("^")
        body = _NAMED_GROUP.sub("(?:", body)
        branches.append(f"(?P<_r{index}>{body})")
    return re.compile("|".join(branches) if branches else "(?!)")


def _ask(route: Any, scope: Scope) -> int:
    """Ask a route with its own matching: 0 none, 1 partial, 2 full (on a copy of the scope)."""
    match, _ = route.matches(dict(scope))
    value = int(getattr(match, "value", 0))
    return 2 if value >= 2 else value


_UNESCAPE = re.compile(r"\\(.)")


def _unescape(literal: str) -> str:
    return _UNESCAPE.sub(r"\1", literal)
