"""What the benchmarks share: the apps they measure, the counts they accept, the ratios they print.

Every app is set up the way a user of concmon or of a peer would set it up, from that library's
documentation and through its public API only, so the scripts keep measuring the shipped code
whatever changes inside it. Each variant can say how many requests it recorded: a benchmark
checks that count, because an instrumentation that silently stopped measuring would look free.

The servers of bench/peers.py build their app from the environment: uvicorn with
``--factory bench.harness:fastapi_from_env``, gunicorn with ``bench.harness:flask_from_env()``
or ``bench.harness:django_from_env()``, the variant named by ``BENCH_VARIANT``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parents[1]
STREAM_CHUNKS: Final = 200
"""Chunks of the streaming endpoint's response, one server-sent event each."""
CHUNK: Final = b"data: tick\n\n"

FASTAPI_VARIANTS: Final = (
    "bare",
    "concmon",
    "starlette-exporter",
    "instrumentator",
    "opentelemetry",
)
FLASK_VARIANTS: Final = ("bare", "concmon", "prometheus-flask-exporter", "opentelemetry")
DJANGO_VARIANTS: Final = ("bare", "concmon", "django-prometheus")
VARIANTS: Final = {"fastapi": FASTAPI_VARIANTS, "flask": FLASK_VARIANTS, "django": DJANGO_VARIANTS}
PEER_MODULES: Final = {
    "starlette-exporter": "starlette_exporter",
    "instrumentator": "prometheus_fastapi_instrumentator",
    "prometheus-flask-exporter": "prometheus_flask_exporter",
    "django-prometheus": "django_prometheus",
    "opentelemetry": "opentelemetry.sdk.metrics",
}
"""The module each peer needs, for telling which peers this environment can build."""
_OTEL_MODULES: Final = {
    "fastapi": "opentelemetry.instrumentation.fastapi",
    "flask": "opentelemetry.instrumentation.flask",
}
BENCH_EXTRA_HINT: Final = "install them with: .venv/bin/pip install -e '.[bench]'"


# -- arguments ------------------------------------------------------------------------------------


def positive_int(text: str) -> int:
    """argparse type for a count (rounds, requests, seconds, endpoints): 1 or more.

    A zero would end in an empty median or a division by zero, far from the option that caused
    it; argparse turns the error raised here into one line naming the option.
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def name_list(choices: Sequence[str]) -> Callable[[str], list[str]]:
    """argparse type for a comma-separated selection from ``choices``."""

    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown name {', '.join(unknown) or repr(text)}; choose from {', '.join(choices)}"
            )
        return names

    return parse


# -- ratios ---------------------------------------------------------------------------------------


def median_ratio(values: Sequence[float], baseline: Sequence[float]) -> float:
    """The median over rounds of each round's value against the baseline's in the same round.

    Pairing by round makes a round in which the whole machine was slow move both sides alike.
    """
    return statistics.median(v / b for v, b in zip(values, baseline, strict=True))


def ratio_columns(name: str, values: Mapping[str, Sequence[float]], baseline: str = "bare") -> str:
    """``x bare`` (or ``x`` another ``baseline``) and, for a peer, ``x concmon`` of variant
    ``name``: the end of a result line, always the same width so that the columns line up."""
    text = f"{median_ratio(values[name], values[baseline]):7.3f} x {baseline}"
    if "concmon" in values and name not in (baseline, "concmon"):
        return text + f"  {median_ratio(values[name], values['concmon']):7.2f} x concmon"
    return text + " " * 19


# -- which variants this environment can build ----------------------------------------------------


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def available(framework: str) -> tuple[list[str], list[str]]:
    """The variants of ``framework`` that can be built here, and those that cannot (all of
    them when the framework itself is not installed)."""
    variants = VARIANTS[framework]
    if not _importable(framework):
        return [], list(variants)
    found: list[str] = []
    missing: list[str] = []
    for name in variants:
        module = PEER_MODULES.get(name)
        if name == "opentelemetry":
            ok = _importable(module or "") and _importable(_OTEL_MODULES[framework])
        else:
            ok = module is None or _importable(module)
        (found if ok else missing).append(name)
    return found, missing


def missing_modules(modules: Sequence[str]) -> list[str]:
    """Those of ``modules`` that cannot be imported here."""
    return [module for module in modules if not _importable(module)]


def missing_bench_extra() -> list[str]:
    """The packages of the `bench` extra that are not installed here (empty when all are)."""
    return missing_modules(
        [
            "fastapi",
            "flask",
            "django",
            "uvicorn",
            "gunicorn",
            *PEER_MODULES.values(),
            *_OTEL_MODULES.values(),
        ]
    )


# -- the apps -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    """An app as one variant sets it up, and how many requests its instrumentation recorded
    so far (``None`` for the bare app, which records nothing)."""

    variant: str
    app: Any
    recorded: Callable[[], int] | None


def _ticks() -> Iterator[bytes]:
    for _ in range(STREAM_CHUNKS):
        yield CHUNK


async def _async_ticks() -> AsyncIterator[bytes]:
    for _ in range(STREAM_CHUNKS):
        yield CHUNK


def _prometheus_count(registry: Any, name: str) -> int:
    return int(
        sum(s.value for metric in registry.collect() for s in metric.samples if s.name == name)
    )


def _concmon_completed() -> int:
    from concmon import get_monitor

    return get_monitor().snapshot().completed


def fastapi_app(variant: str) -> Built:
    """The FastAPI app: ``GET /items/{item_id}`` answers a small JSON document, ``GET /stream``
    streams ``STREAM_CHUNKS`` server-sent events."""
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, object]:
        return {"id": item_id, "name": "item"}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        return StreamingResponse(_async_ticks(), media_type="text/event-stream")

    if variant == "bare":
        return Built(variant, app, None)
    if variant == "concmon":
        from concmon_fastapi import install

        install(app)
        return Built(variant, app, _concmon_completed)
    if variant == "starlette-exporter":
        from prometheus_client import REGISTRY
        from starlette_exporter import PrometheusMiddleware, handle_metrics

        app.add_middleware(PrometheusMiddleware)
        app.add_route("/metrics", handle_metrics)
        return Built(variant, app, lambda: _prometheus_count(REGISTRY, "starlette_requests_total"))
    if variant == "instrumentator":
        from prometheus_client import CollectorRegistry
        from prometheus_fastapi_instrumentator import Instrumentator

        registry = CollectorRegistry()
        Instrumentator(
            should_instrument_requests_inprogress=True, inprogress_labels=True, registry=registry
        ).instrument(app).expose(app)
        return Built(variant, app, lambda: _prometheus_count(registry, "http_requests_total"))
    if variant == "opentelemetry":
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        provider, recorded = _meter_provider()
        FastAPIInstrumentor.instrument_app(app, meter_provider=provider)
        return Built(variant, app, recorded)
    raise ValueError(
        f"unknown FastAPI variant {variant!r}; choose from {', '.join(FASTAPI_VARIANTS)}"
    )


def flask_app(variant: str) -> Built:
    """The Flask app, with the same two endpoints as the FastAPI one."""
    from flask import Flask, Response

    app = Flask("bench", root_path=str(ROOT))

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, object]:
        return {"id": item_id, "name": "item"}

    @app.get("/stream")
    def stream() -> Response:
        return Response(_ticks(), mimetype="text/event-stream")

    if variant == "bare":
        return Built(variant, app, None)
    if variant == "concmon":
        from concmon_flask import ConcMon

        ConcMon(app)
        return Built(variant, app, _concmon_completed)
    if variant == "prometheus-flask-exporter":
        from prometheus_client import CollectorRegistry
        from prometheus_flask_exporter import PrometheusMetrics

        registry = CollectorRegistry()
        PrometheusMetrics(app, registry=registry)
        return Built(variant, app, lambda: _prometheus_count(registry, "flask_http_request_total"))
    if variant == "opentelemetry":
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        provider, recorded = _meter_provider()
        FlaskInstrumentor.instrument_app(app, meter_provider=provider)  # type: ignore[no-untyped-call,unused-ignore]
        return Built(variant, app, recorded)
    raise ValueError(f"unknown Flask variant {variant!r}; choose from {', '.join(FLASK_VARIANTS)}")


_DJANGO_MIDDLEWARE: Final = {
    "bare": [],
    "concmon": ["concmon_django.middleware.ConcMonMiddleware"],
    "django-prometheus": [
        "django_prometheus.middleware.PrometheusBeforeMiddleware",
        "django_prometheus.middleware.PrometheusAfterMiddleware",
    ],
}


def _django_setup() -> None:
    """Django set up once per process, every variant's app installed, no middleware yet (each
    variant's handler is built with its own ``MIDDLEWARE``)."""
    import django
    from django.conf import settings

    if settings.configured:
        return
    from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
    from django.urls import path

    def item(request: HttpRequest, item_id: int) -> JsonResponse:
        return JsonResponse(
            {"id": item_id, "name": "item"}, json_dumps_params={"separators": (",", ":")}
        )

    def stream(request: HttpRequest) -> StreamingHttpResponse:
        return StreamingHttpResponse(_ticks(), content_type="text/event-stream")

    urls = type("BenchURLs", (), {})()
    urls.urlpatterns = [path("items/<int:item_id>", item), path("stream", stream)]
    apps = ["concmon_django"]
    if _importable("django_prometheus"):
        apps.append("django_prometheus")
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-only",
        ALLOWED_HOSTS=["127.0.0.1"],
        INSTALLED_APPS=apps,
        MIDDLEWARE=[],
        ROOT_URLCONF=urls,
        DATABASES={},
        PROMETHEUS_EXPORT_MIGRATIONS=False,
        LOGGING_CONFIG=None,
    )
    django.setup()


def django_app(variant: str) -> Built:
    """The Django app (WSGI), with the same two endpoints as the others; each variant is a
    handler built with the middleware its library documents."""
    if variant not in _DJANGO_MIDDLEWARE:
        raise ValueError(
            f"unknown Django variant {variant!r}; choose from {', '.join(DJANGO_VARIANTS)}"
        )
    _django_setup()
    from django.core.handlers.wsgi import WSGIHandler
    from django.test.utils import override_settings

    with override_settings(MIDDLEWARE=_DJANGO_MIDDLEWARE[variant]):
        app = WSGIHandler()
    if variant == "bare":
        return Built(variant, app, None)
    if variant == "concmon":
        return Built(variant, app, _concmon_completed)
    from prometheus_client import REGISTRY

    return Built(
        variant,
        app,
        lambda: _prometheus_count(REGISTRY, "django_http_responses_before_middlewares_total"),
    )


def build(framework: str, variant: str) -> Built:
    """``fastapi_app``, ``flask_app`` or ``django_app`` by name."""
    if framework == "fastapi":
        return fastapi_app(variant)
    return flask_app(variant) if framework == "flask" else django_app(variant)


def fastapi_from_env() -> Any:
    """uvicorn factory: the FastAPI variant named by ``BENCH_VARIANT``."""
    return fastapi_app(os.environ.get("BENCH_VARIANT", "bare")).app


def flask_from_env() -> Any:
    """gunicorn factory: the Flask variant named by ``BENCH_VARIANT``."""
    return flask_app(os.environ.get("BENCH_VARIANT", "bare")).app


def django_from_env() -> Any:
    """gunicorn factory: the Django variant named by ``BENCH_VARIANT``."""
    return django_app(os.environ.get("BENCH_VARIANT", "bare")).app


def _meter_provider() -> tuple[Any, Callable[[], int]]:
    """A real OpenTelemetry SDK MeterProvider whose periodic reader exports every 5 s (concmon's
    report interval) to an exporter that keeps only the request count of the duration
    histograms; the tracer stays the API's no-op one, so only the metrics side is paid for."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        HistogramDataPoint,
        MetricExporter,
        MetricExportResult,
        MetricsData,
        PeriodicExportingMetricReader,
    )

    class CountingExporter(MetricExporter):
        requests = 0

        def export(
            self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
        ) -> MetricExportResult:
            self.requests = sum(
                point.count
                for resource in metrics_data.resource_metrics
                for scope in resource.scope_metrics
                for metric in scope.metrics
                if metric.name.startswith("http.server") and "duration" in metric.name
                for point in metric.data.data_points
                if isinstance(point, HistogramDataPoint)
            )
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            return None

    exporter = CountingExporter()
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=5_000)
    provider = MeterProvider(metric_readers=[reader])

    def recorded() -> int:
        provider.force_flush()
        return exporter.requests

    return provider, recorded
