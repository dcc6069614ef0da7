"""Exporters: concmon's figures in the monitoring systems a service already runs.

Each exporter is a sink plugin registered through the ``concmon`` entry-point group, exactly
like a third-party sink, and each imports its third-party library (``prometheus_client``,
``opentelemetry``, ``datadog``) on import, so only the extras a deployment installs are ever
loaded. Importing this package imports none of them.
"""

from concmon.exporters.config import ExporterSettings, load_exporter_settings
from concmon.exporters.figures import Figures

__all__ = ["ExporterSettings", "Figures", "load_exporter_settings"]
