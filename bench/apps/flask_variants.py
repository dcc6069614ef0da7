"""The trivial Flask app of the peer benchmark, bare or instrumented by concmon or a peer.

The same two endpoints as the FastAPI app (``/items/<id>`` at once, ``/sleep/<id>`` after a
short sleep so that requests overlap on gunicorn's threads). gunicorn serves a variant with
``bench.apps.flask_variants:from_env()`` and ``BENCH_VARIANT=<name>``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from flask import Flask

from bench.apps import EXPERIMENTS, Built, prometheus_count, uncount
from bench.common import ROOT

VARIANTS = ("bare", "concmon", "prometheus-flask-exporter", "opentelemetry")
SLEEP_SECONDS = 0.002


def _app() -> Flask:
    app = Flask("bench", root_path=str(ROOT))

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, object]:
        return {"id": item_id, "name": "item"}

    @app.get("/sleep/<int:item_id>")
    def sleep(item_id: int) -> dict[str, object]:
        time.sleep(SLEEP_SECONDS)
        return {"id": item_id, "name": "slept"}

    return app


class _PassThrough:
    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: Any, start_response: Any) -> Any:
        return self.app(environ, start_response)


def build(variant: str) -> Built:
    """The app as a user of ``variant`` would set it up, following its documentation."""
    app = _app()
    if variant == "bare":
        return Built(app, None)
    if variant == "concmon":
        from concmon import get_monitor
        from concmon_flask import ConcMon

        ConcMon(app)
        return Built(app, lambda: get_monitor().snapshot().completed)
    if variant == "uncounted":
        from concmon_flask.wsgi import Exchange

        uncount(Exchange)
        return Built(build("concmon").app, None)
    if variant == "passthrough":
        app.wsgi_app = _PassThrough(app.wsgi_app)  # type: ignore[method-assign]
        return Built(app, None)
    if variant == "prometheus-flask-exporter":
        from prometheus_client import CollectorRegistry
        from prometheus_flask_exporter import PrometheusMetrics  # type: ignore[import-untyped]

        registry = CollectorRegistry()
        PrometheusMetrics(app, registry=registry)
        return Built(app, lambda: prometheus_count(registry, "flask_http_request_total"))
    if variant == "opentelemetry":
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        from bench.apps.otel import meter_provider, recorded

        provider, exporter = meter_provider()
        FlaskInstrumentor.instrument_app(app, meter_provider=provider)  # type: ignore[no-untyped-call]
        return Built(app, lambda: recorded(provider, exporter))
    choices = ", ".join((*VARIANTS, *EXPERIMENTS))
    raise ValueError(f"unknown Flask variant {variant!r}; choose from {choices}")


def from_env() -> Flask:
    """gunicorn factory: the variant named by ``BENCH_VARIANT``."""
    app: Flask = build(os.environ.get("BENCH_VARIANT", "bare")).app
    return app
