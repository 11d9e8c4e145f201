"""OpenTelemetry for resilient_http: spans, metrics, redaction and exporter set-up.

Public here, for applications that run OpenTelemetry providers of their own: the exporters of
the OTLP JSON lines file that ``resilient-http analyze`` reads (the OpenTelemetry Collector's
``file`` exporter format)::

    provider.add_span_processor(BatchSpanProcessor(OTLPJsonFileSpanExporter("telemetry.jsonl")))
    MeterProvider(metric_readers=[
        PeriodicExportingMetricReader(OTLPJsonFileMetricExporter("telemetry.jsonl")),
    ])

They are also registered as the OpenTelemetry exporter entry point ``resilient_http_file``, so
``OTEL_TRACES_EXPORTER=otlp,resilient_http_file`` and ``OTEL_METRICS_EXPORTER=otlp,
resilient_http_file`` select them under ``opentelemetry-instrument``; built that way they write to
the file ``RESILIENT_HTTP_TELEMETRY_FILE`` names. The modules of this package are private.
"""

from .otlp_file import OTLPJsonFileMetricExporter, OTLPJsonFileSpanExporter

__all__ = ["OTLPJsonFileMetricExporter", "OTLPJsonFileSpanExporter"]
