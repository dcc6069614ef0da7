"""concmon for Flask and any WSGI app: exact per-endpoint concurrency, streaming included.

``ConcMon(app)`` counts a Flask app per URL rule; ``ConcMonWSGIMiddleware(app)`` counts any
WSGI app. Both keep a request active until the server closes its response.
"""

from concmon_flask.extension import EXTENSION_KEY, ConcMon, FlaskMiddleware
from concmon_flask.options import Options
from concmon_flask.wsgi import ENVIRON_KEY, UNMATCHED_NAME, ConcMonWSGIMiddleware, path_endpoint

__all__ = [
    "ENVIRON_KEY",
    "EXTENSION_KEY",
    "UNMATCHED_NAME",
    "ConcMon",
    "ConcMonWSGIMiddleware",
    "FlaskMiddleware",
    "Options",
    "path_endpoint",
]
