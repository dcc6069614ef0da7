"""docs/exporters.md and the Grafana dashboard stay true to the code."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from concmon.exporters.catalogue import HISTOGRAMS, otel_table, prometheus_table, statsd_table
from concmon.exporters.config import settings_table
from concmon.exporters.prometheus import METRIC_NAMES

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "exporters.md"
DASHBOARD = ROOT / "concmon" / "exporters" / "grafana-dashboard.json"


def _doc_promql() -> list[str]:
    text = DOC.read_text()
    block = re.search(r"```promql\n(.*?)```", text, re.S)
    assert block is not None
    exprs: list[str] = []
    for line in block.group(1).splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith(" ") and exprs:
            exprs[-1] += " " + line.strip()
        else:
            exprs.append(line.strip())
    return exprs


def dashboard_promql(job: str = "myapp", instance: str = ".*") -> dict[str, list[str]]:
    """Each panel's queries (by title) with the dashboard's variables filled in."""
    dashboard = json.loads(DASHBOARD.read_text())
    return {
        p["title"]: [
            t["expr"]
            .replace("$__rate_interval", "1m")
            .replace("$job", job)
            .replace("$instance", instance)
            for t in p.get("targets", [])  # a row holds no query
        ]
        for p in dashboard["panels"]
    }


def _dashboard_promql() -> list[str]:
    exprs = [e for panel in dashboard_promql().values() for e in panel]
    assert exprs
    return exprs


def test_dashboard_has_a_fleet_saturation_panel_and_a_row_per_instance() -> None:
    """Below the 'Per instance' row every query splits by instance and honours $instance."""
    dashboard = json.loads(DASHBOARD.read_text())
    panels = sorted(dashboard["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
    titles = [p["title"] for p in panels]
    assert any(t.startswith("Fleet saturation") for t in titles)
    below = panels[titles.index("Per instance") + 1 :]
    assert len(below) >= 4
    for panel in below:
        for target in panel["targets"]:
            assert "by (instance)" in target["expr"], panel["title"]
            assert 'instance=~"$instance"' in target["expr"], panel["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["instance"]["includeAll"] and variables["instance"]["allValue"] == ".*"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bconcmon_[a-z_]+", expr))


def _between(marker: str) -> str:
    text = DOC.read_text()
    return text.split(f"<!-- {marker}:start -->\n")[1].split(f"\n<!-- {marker}:end")[0]


def test_settings_table_in_the_docs_is_the_generated_one() -> None:
    """The table between the markers is exactly what ExporterSettings generates."""
    assert _between("exporter-settings") == settings_table()


@pytest.mark.parametrize(
    ("marker", "table"),
    [
        ("prometheus-metrics", prometheus_table),
        ("otel-instruments", otel_table),
        ("dogstatsd-metrics", statsd_table),
    ],
)
def test_metric_tables_in_the_docs_are_generated_from_the_catalogue(
    marker: str, table: Callable[[], str]
) -> None:
    """Each exporter's table in docs/exporters.md is exactly what the catalogue generates."""
    assert _between(marker) == table()


def test_every_metric_is_documented() -> None:
    """Each family the exporter publishes has a row in docs/exporters.md."""
    text = DOC.read_text()
    for name in METRIC_NAMES:
        assert f"`{name}`" in text, name


def test_queries_use_only_metrics_that_exist() -> None:
    """No PromQL example or dashboard panel refers to a metric the exporter does not publish."""
    parts = ("sum", "count", "bucket")
    known = set(METRIC_NAMES) | {f"{n}_{s}" for n in METRIC_NAMES for s in parts}
    for expr in _doc_promql() + _dashboard_promql():
        assert _metric_names(expr) <= known, expr


def test_dashboard_has_latency_and_ttfb_percentiles_over_the_histogram_buckets() -> None:
    """The dashboard shows p50 and p99 of the request duration and p99 of the time to first
    byte, each a histogram_quantile over a histogram family the exporter publishes."""
    histograms = {e.prometheus for e in HISTOGRAMS}
    quantiles = [e for e in _dashboard_promql() if e.startswith("histogram_quantile(")]
    wanted = {
        ("0.5", "concmon_request_duration_seconds"),
        ("0.99", "concmon_request_duration_seconds"),
        ("0.99", "concmon_time_to_first_byte_seconds"),
    }
    found = set()
    for expr in quantiles:
        match = re.match(r"histogram_quantile\((0\.\d+), sum by \(endpoint, le\) \(rate\("
                         r"(concmon_[a-z_]+)_bucket\{", expr)  # fmt: skip
        assert match is not None, expr
        assert match.group(2) in histograms, expr
        found.add((match.group(1), match.group(2)))
    assert wanted <= found


def test_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    """promtool parses every documented query and every dashboard query."""
    exprs = _doc_promql() + _dashboard_promql()
    rules = {
        "groups": [
            {
                "name": "docs",
                "rules": [{"record": f"concmon:doc_{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps(rules))  # JSON is valid YAML
    proc = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_scrape_config_in_the_docs_is_accepted_by_promtool(promtool: str, tmp_path: Path) -> None:
    """The ready-made prometheus.yml passes promtool check config."""
    block = re.search(r"```yaml\n# prometheus.yml\n(.*?)```", DOC.read_text(), re.S)
    assert block is not None
    path = tmp_path / "prometheus.yml"
    path.write_text(block.group(1))
    proc = subprocess.run(
        [promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
