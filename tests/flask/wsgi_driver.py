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
        self.statuses: list[str] = []
        self.chunks: list[bytes] = []
        statuses = self.statuses

        # Like a real server's, this start_response holds no reference back to the response
        # iterable, so dropping the call really drops the body.
        def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            statuses.append(status)
            return lambda data: None

        self.result: Iterable[bytes] = app(env, start_response)

    @property
    def status(self) -> str | None:
        return self.statuses[-1] if self.statuses else None

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
