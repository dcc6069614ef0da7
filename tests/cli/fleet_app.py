"""The Prometheus test app, with a request-duration histogram where concmon has none yet.

Every ``/work`` request observes 20 ms in ``concmon_request_duration_seconds`` (the name and
labels the exporter's latency histogram uses), so the fleet view's percentiles are known:
all observations fall in the (10 ms, 25 ms] bucket. Once concmon exports that histogram
itself, the app adds nothing and the real durations are read.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Histogram

from concmon.exporters.prometheus import METRIC_NAMES, registry
from tests.exporters.prom_app import app

OBSERVED_S = 0.02
BUILT_IN = any(name.startswith("concmon_request_duration_seconds") for name in METRIC_NAMES)

if not BUILT_IN:
    durations = Histogram(
        "concmon_request_duration_seconds",
        "Stand-in for the latency histogram.",
        ["endpoint"],
        registry=registry(),
    )
    work = durations.labels(endpoint="/work")  # the series exists at 0 before any request

    @app.middleware("http")
    async def observe(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        if request.url.path == "/work":
            work.observe(OBSERVED_S)
        return response


__all__ = ["app"]
