"""concmon for ASGI: exact per-route concurrency for FastAPI, Starlette and any ASGI app.

``install(app)`` adds the middleware to a FastAPI or Starlette application;
``ConcMonMiddleware(app)`` wraps any ASGI application by hand. docs/fastapi.md describes the
options and how the numbers are counted.
"""

from concmon_fastapi.gate import GATE_QUEUE
from concmon_fastapi.install import install
from concmon_fastapi.middleware import SCOPE_MARK, ConcMonMiddleware, InstallOptions
from concmon_fastapi.probe import THREADPOOL_QUEUE
from concmon_fastapi.routes import CATCH_ALL, UNMATCHED

__all__ = [
    "CATCH_ALL",
    "GATE_QUEUE",
    "SCOPE_MARK",
    "THREADPOOL_QUEUE",
    "UNMATCHED",
    "ConcMonMiddleware",
    "InstallOptions",
    "install",
]
