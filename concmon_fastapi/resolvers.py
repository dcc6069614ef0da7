"""Ready-made ``name_for`` resolvers for ASGI frameworks other than Starlette: Litestar, Quart.

Each reads the route the framework's own router chose, after it chose, and never matches a
path itself: Litestar's router records the template of the route it picked in the scope
(``scope["path_template"]``); Quart keeps the matched rule on its request object, and
:func:`quart_name_for` has the app's request class copy it into the scope at the moment Quart
stores the match. Before the router has chosen they answer None, so the middleware counts the
request as routing and asks again when the response starts; a request no route took (a 404)
ends as ``<unmatched>``::

    app = ConcMonMiddleware(litestar_app, name_for=litestar_name)
    app = ConcMonMiddleware(quart_app, name_for=quart_name_for(quart_app))

docs/recipes.md shows the same for Falcon and Bottle.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, MutableMapping
from typing import Any, Final

Scope = MutableMapping[str, Any]

ROUTE_KEY: Final = "concmon.route"
"""The scope key :func:`quart_name_for` stores the matched rule under."""

_VIEW_ARGS: Final = "_concmon_view_args"


def litestar_name(scope: Scope) -> str | None:
    """The template of the route Litestar's router chose (``/items/{item_id}``), None
    before it chose or when no route matched."""
    template = scope.get("path_template")
    return template if isinstance(template, str) and template else None


def quart_name_for(app: Any) -> Callable[[Scope], str | None]:
    """A ``name_for`` naming a Quart ``app``'s requests and WebSockets by their URL rule.

    Quart stores its match as ``request.url_rule, request.view_args = ...``; the app's request
    and websocket classes are given a ``view_args`` property whose setter copies
    ``url_rule.rule`` into the ASGI scope the request was made from. Call it once per app.
    """
    for attribute in ("request_class", "websocket_class"):
        base = getattr(app, attribute)
        if not getattr(base, "_concmon_naming", False):
            setattr(app, attribute, _naming_class(base))
    return _scope_route


def _scope_route(scope: Scope) -> str | None:
    route = scope.get(ROUTE_KEY)
    return route if isinstance(route, str) else None


def _naming_class(base: type) -> type:
    def set_view_args(self: Any, view_args: dict[str, Any] | None) -> None:
        self.__dict__[_VIEW_ARGS] = view_args
        rule = self.url_rule
        if rule is not None:
            self.scope[ROUTE_KEY] = rule.rule

    namespace = {
        "view_args": property(
            operator.attrgetter(_VIEW_ARGS), set_view_args, doc="The matched rule's arguments."
        ),
        _VIEW_ARGS: None,
        "_concmon_naming": True,
        "__module__": __name__,
        "__qualname__": f"ConcMon{base.__qualname__}",
    }
    return type(f"ConcMon{base.__name__}", (base,), namespace)


__all__ = ["ROUTE_KEY", "litestar_name", "quart_name_for"]
