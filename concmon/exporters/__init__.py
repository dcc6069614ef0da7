"""Exporters: concmon's figures in the monitoring systems a service already runs.

Each exporter is a sink plugin registered through the ``concmon`` entry-point group, exactly
like a third-party sink: ``concmon.exporters.prometheus``, ``concmon.exporters.otel`` and
``concmon.exporters.dogstatsd``. Each imports its third-party library (``prometheus_client``,
``opentelemetry``, ``datadog``) when it is imported, so only the extras a deployment installs
are ever loaded; importing this package imports none of them.
"""
