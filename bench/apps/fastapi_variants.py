"""The trivial FastAPI app of the peer benchmark, bare or instrumented by concmon or a peer.

Two endpoints: ``/items/{item_id}`` answers a small JSON document at once, and
``/sleep/{item_id}`` awaits a short sleep first, so that requests overlap and the in-flight
tracking of each variant is exercised under real concurrency. uvicorn serves a variant with
``--factory bench.apps.fastapi_variants:from_env`` and ``BENCH_VARIANT=<name>``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from fastapi import FastAPI

from bench.apps import EXPERIMENTS, Built, prometheus_count, uncount

VARIANTS = ("bare", "concmon", "starlette-exporter", "instrumentator", "opentelemetry")
SLEEP_SECONDS = 0.002


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, object]:
        return {"id": item_id, "name": "item"}

    @app.get("/sleep/{item_id}")
    async def sleep(item_id: int) -> dict[str, object]:
        await asyncio.sleep(SLEEP_SECONDS)
        return {"id": item_id, "name": "slept"}

    return app


class _PassThrough:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def build(variant: str) -> Built:
    """The app as a user of ``variant`` would set it up, following its documentation."""
    app = _app()
    if variant == "bare":
        return Built(app, None)
    if variant == "concmon":
        from concmon import get_monitor
        from concmon_fastapi import install

        install(app)
        return Built(app, lambda: get_monitor().snapshot().completed)
    if variant == "uncounted":
        from concmon_fastapi.middleware import _Exchange

        uncount(_Exchange)
        return Built(build("concmon").app, None)
    if variant == "passthrough":
        app.add_middleware(_PassThrough)
        return Built(app, None)
    if variant == "starlette-exporter":
        from prometheus_client import REGISTRY
        from starlette_exporter import PrometheusMiddleware, handle_metrics

        app.add_middleware(PrometheusMiddleware)
        app.add_route("/metrics", handle_metrics)
        return Built(app, lambda: prometheus_count(REGISTRY, "starlette_requests_total"))
    if variant == "instrumentator":
        from prometheus_client import CollectorRegistry
        from prometheus_fastapi_instrumentator import Instrumentator

        registry = CollectorRegistry()
        Instrumentator(
            should_instrument_requests_inprogress=True, inprogress_labels=True, registry=registry
        ).instrument(app).expose(app)
        return Built(app, lambda: prometheus_count(registry, "http_requests_total"))
    if variant == "opentelemetry":
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        from bench.apps.otel import meter_provider, recorded

        provider, exporter = meter_provider()
        FastAPIInstrumentor.instrument_app(app, meter_provider=provider)
        return Built(app, lambda: recorded(provider, exporter))
    choices = ", ".join((*VARIANTS, *EXPERIMENTS))
    raise ValueError(f"unknown FastAPI variant {variant!r}; choose from {choices}")


def from_env() -> FastAPI:
    """uvicorn factory: the variant named by ``BENCH_VARIANT``."""
    app: FastAPI = build(os.environ.get("BENCH_VARIANT", "bare")).app
    return app
