"""Drive a WSGI app in-process exactly as a server would, with control over the body."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from werkzeug.test import EnvironBuilder


class Call:
    """One WSGI call: the status the app set, the iterable it returned, the chunks read."""

    def __init__(self, app: Any, path: str, method: str = "GET", **environ: Any) -> None:
        env = EnvironBuilder(path=path, method=method).get_environ()
        env.update(environ)
        self.environ = env
        self.status: str | None = None
        self.chunks: list[bytes] = []
        self.result: Iterable[bytes] = app(env, self._start_response)

    def _start_response(self, status: str, headers: Any, exc_info: Any = None) -> Any:
        self.status = status
        return lambda data: None

    def read(self, limit: int | None = None) -> Call:
        for i, chunk in enumerate(self.result):
            self.chunks.append(chunk)
            if limit is not None and i + 1 >= limit:
                break
        return self

    def close(self) -> Call:
        close = getattr(self.result, "close", None)
        if close is not None:
            close()
        return self


def serve(app: Any, path: str, method: str = "GET") -> Call:
    """Call, read everything and close, like a well-behaved server."""
    return Call(app, path, method).read().close()
